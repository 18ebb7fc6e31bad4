"""models/flan_t5.py: flan-t5-xl's encoder read from one file or a Hugging Face download (index + shards, the full
encoder-decoder), the T5 v1.1 layout recognised strictly, other T5s refused by name. The features themselves
(ComfyUI's T5 against Hugging Face's T5EncoderModel) are checked in tests/integration/test_infinity_text.py."""
import json

import pytest
import torch
from safetensors.torch import save_file

from scalewise.models import CheckpointError, read_state_dict
from scalewise.models.checkpoint import is_shard_name
from scalewise.models.flan_t5 import (FLAN_T5_XL, T5EncoderConfig, infer_t5_config, read_t5_encoder,
                                      size_notes)
from tiny_t5 import TINY_T5, decoder_tensors, tiny_t5_encoder, write_download


@pytest.fixture(scope="module")
def encoder():
    return tiny_t5_encoder(seed=3)


def same(a: dict, b: dict) -> bool:
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_flan_t5_xl_sizes():
    # google/flan-t5-xl config.json: d_model 2048, d_ff 5120, 24 layers, 32 heads x d_kv 64, vocab 32128
    assert FLAN_T5_XL == T5EncoderConfig(d_model=2048, d_ff=5120, num_layers=24, num_heads=32, d_kv=64,
                                         vocab_size=32128)
    per_layer = 4 * 2048 * 2048 + 3 * 2048 * 5120 + 2 * 2048
    assert FLAN_T5_XL.parameters() == 32128 * 2048 + 24 * per_layer + 32 * 32 + 2048  # 1.22 G: 2.45 GB in fp16
    assert 2.4e9 < 2 * FLAN_T5_XL.parameters() < 2.5e9


def test_encoder_only_file_reads_back(tmp_path, encoder):
    save_file(encoder, str(tmp_path / "enc.safetensors"))
    sd = read_t5_encoder(str(tmp_path / "enc.safetensors"))
    assert same(sd, encoder)
    assert infer_t5_config("enc", sd) == TINY_T5
    assert read_t5_encoder(str(tmp_path / "enc.safetensors"), torch.float16)["shared.weight"].dtype == torch.float16


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_full_single_file_keeps_the_encoder_only(tmp_path, encoder, fmt):
    full = {**encoder, **decoder_tensors()}
    path = tmp_path / f"full.{fmt}"
    if fmt == "bin":  # .bin files also store the tied table as encoder.embed_tokens.weight
        torch.save({**full, "encoder.embed_tokens.weight": encoder["shared.weight"].clone()}, path)
    else:
        save_file(full, str(path))
    assert same(read_t5_encoder(str(path)), encoder)


@pytest.mark.parametrize("fmt,tie", [("safetensors", False), ("bin", True)])
def test_sharded_download_equals_the_encoder_file(tmp_path, encoder, fmt, tie):
    index = write_download(tmp_path / "flan-t5-tiny", encoder, fmt, tie=tie)
    for path in (index, index.parent):  # the index JSON or its folder
        assert same(read_t5_encoder(str(path)), encoder)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_the_decoder_shard_is_never_opened(tmp_path, encoder, fmt):
    index = write_download(tmp_path / "d", encoder, fmt)
    decoder_shard = next(p for p in (tmp_path / "d").iterdir() if "00003-of-00003" in p.name)
    decoder_shard.write_bytes(b"not a checkpoint")
    assert same(read_t5_encoder(str(index)), encoder)


def test_bin_shards_read_without_mmap(tmp_path, encoder):
    # --disable-mmap: with `keep` the zip shard is still mapped (its decoder part never read) and the encoder's
    # tensors are copied out of it
    index = write_download(tmp_path / "b", encoder, "bin")
    assert same(read_t5_encoder(str(index), mmap=False), encoder)


def test_keep_leaves_other_tensors_unread(tmp_path, encoder):
    save_file({**encoder, **decoder_tensors()}, str(tmp_path / "f.safetensors"))
    sd = read_state_dict(str(tmp_path / "f.safetensors"), torch.float16, keep=lambda k: k.startswith("encoder."))
    assert sorted(sd) == sorted(k for k in encoder if k.startswith("encoder."))
    assert all(v.dtype == torch.float16 for v in sd.values())


def test_safetensors_index_preferred_over_bin(tmp_path, encoder):
    write_download(tmp_path / "both", encoder, "bin")
    write_download(tmp_path / "both", encoder, "safetensors")
    for p in (tmp_path / "both").glob("*.bin"):
        p.write_bytes(b"broken")  # would fail if read
    assert same(read_t5_encoder(str(tmp_path / "both")), encoder)


def test_broken_downloads_are_named(tmp_path, encoder):
    index = write_download(tmp_path / "m", encoder)
    (tmp_path / "m" / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00003.safetensors: no such file"):
        read_t5_encoder(str(index))
    bad = tmp_path / "evil.index.json"
    bad.write_text(json.dumps({"weight_map": {"shared.weight": "../../etc/passwd"}}))
    with pytest.raises(CheckpointError, match="not a file name in the index's folder"):
        read_t5_encoder(str(bad))
    (tmp_path / "junk.index.json").write_text("{")
    with pytest.raises(CheckpointError, match="not a sharded checkpoint index"):
        read_t5_encoder(str(tmp_path / "junk.index.json"))
    # a shard lacking a tensor its index places there
    index = write_download(tmp_path / "l", encoder)
    data = json.loads(index.read_text())
    data["weight_map"]["encoder.block.9.layer.0.layer_norm.weight"] = "model-00001-of-00003.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"model-00001-of-00003.safetensors: 1 tensors the index"):
        read_t5_encoder(str(index))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="expected one \\*.index.json in the folder"):
        read_t5_encoder(str(tmp_path / "empty"))


def test_a_file_without_an_encoder_says_what_it_is(tmp_path):
    save_file({"text_model.encoder.layers.0.mlp.fc1.weight": torch.zeros(2, 2)}, str(tmp_path / "clip_l.safetensors"))
    with pytest.raises(CheckpointError, match="no T5 encoder tensors.*CLIP text encoder"):
        read_t5_encoder(str(tmp_path / "clip_l.safetensors"))


def test_other_t5_layouts_are_refused(encoder):
    bias = "encoder.block.{}.layer.0.SelfAttention.relative_attention_bias.weight"
    umt5 = {**encoder, **{bias.format(i): encoder[bias.format(0)] for i in (1, 2)}}
    with pytest.raises(CheckpointError, match="umT5-style.*pile-T5-XL"):
        infer_t5_config("pile.safetensors", umt5)
    v10 = {k.replace("wi_0", "wi"): v for k, v in encoder.items() if "wi_1" not in k}
    with pytest.raises(CheckpointError, match="T5 v1.0-style"):
        infer_t5_config("t5_base.safetensors", v10)
    with pytest.raises(CheckpointError, match="fp8-scaled"):
        infer_t5_config("t5xxl_fp8_e4m3fn_scaled.safetensors", {**encoder, "scaled_fp8": torch.zeros(0)})
    with pytest.raises(CheckpointError, match="16 relative-position buckets"):
        infer_t5_config("x", {**encoder, bias.format(0): torch.zeros(16, 4)})


def test_missing_unexpected_and_misshapen_tensors_are_refused(encoder):
    key = "encoder.block.1.layer.1.DenseReluDense.wo.weight"
    with pytest.raises(CheckpointError, match=f"1 missing: {key}"):
        infer_t5_config("x", {k: v for k, v in encoder.items() if k != key})
    with pytest.raises(CheckpointError, match="1 unexpected: encoder.extra"):
        infer_t5_config("x", {**encoder, "encoder.extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"wrong shape: encoder.final_layer_norm.weight \(65,\)"):
        infer_t5_config("x", {**encoder, "encoder.final_layer_norm.weight": torch.zeros(65)})
    with pytest.raises(CheckpointError, match="missing 'shared.weight'"):
        infer_t5_config("x", {k: v for k, v in encoder.items() if k != "shared.weight"})


def test_size_notes():
    assert size_notes("flan.safetensors", FLAN_T5_XL) == []
    note, = size_notes("tiny.safetensors", TINY_T5)
    assert "d_model 64 (flan-t5-xl: 2048)" in note and "vocab_size" not in note
    xxl = T5EncoderConfig(d_model=4096, d_ff=10240, num_layers=24, num_heads=64, d_kv=64, vocab_size=32128)
    with pytest.raises(CheckpointError, match="T5-XXL.*Flux/SD3"):
        size_notes("t5xxl_fp16.safetensors", xxl)


def test_shard_names():
    assert is_shard_name("model-00001-of-00002.safetensors") and is_shard_name("pytorch_model-00002-of-00002.bin")
    assert not is_shard_name("flan_t5_xl_encoder_fp16.safetensors") and not is_shard_name("model.safetensors")
