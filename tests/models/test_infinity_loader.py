"""Infinity's files (models/infinity_loader.py, models/checkpoint.py): the BSQ VAE nested under "vae" in either key
spelling, flat .pth and .safetensors, the 8B's Hugging Face sharded layout (index JSON + .bin or .safetensors
shards), a VAE that does not belong to the transformer, and files of other families given to the wrong loader. The
files are written here from tiny random models; the expected tensors are the models' own."""
import json

import pytest
import torch
from safetensors.torch import save_file

from scalewise.models.bsq_vae import BSQVAE, BSQVAEConfig
from scalewise.models.checkpoint import CheckpointError, checkpoint_kind, read_sharded_state_dict
from scalewise.models.infinity_loader import (load_bsq_vae, load_infinity,
                                              load_infinity_transformer, read_bsq_vae_state_dict)
from scalewise.models.var_loader import load_var_transformer
from scalewise.models.vqvae_loader import load_vqvae
from scalewise.tools.tiny_weights import random_var, random_vqvae, randomise_infinity, tiny_infinity, var_config

PN = "0.06M"


@pytest.fixture(scope="module")
def model():
    return tiny_infinity()


def flat(module):
    return {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}


def plain_spelling(sd):
    """The spelling the official load_cnn also accepts: `x.conv.weight` -> `x.weight`, `x.norm.bias` -> `x.bias`."""
    return {k.replace(".conv.weight", ".weight").replace(".conv.bias", ".bias")
            .replace(".norm.weight", ".weight").replace(".norm.bias", ".bias"): v for k, v in sd.items()}


def same_tensors(module, sd):
    own = module.state_dict()
    return set(own) == set(sd) and all(torch.equal(own[k], sd[k]) for k in sd)


# -- BSQ VAE ------------------------------------------------------------------------------------------------------

def test_official_vae_file_nests_the_weights_under_vae(tmp_path, model):
    sd = flat(model.vae)
    path = tmp_path / "infinity_vae_d8.pth"
    # the official file: {"vae": state dict, ...}; other entries (an optimizer state here) are never read
    torch.save({"vae": sd, "optimizer": {"state": {0: {"exp_avg": torch.ones(3)}}}, "epoch": torch.tensor(3)}, path)
    vae = load_bsq_vae(path)
    assert same_tensors(vae, sd)
    z = torch.randn(1, 8, 2, 2)
    torch.testing.assert_close(vae.decode(z), model.vae.decode(z), rtol=0, atol=0)
    assert same_tensors(load_bsq_vae(path, mmap=False), sd)


@pytest.mark.parametrize("mmap", [True, False])
def test_the_vae_loads_in_half_precision_as_torch_casts_its_tensors(tmp_path, model, mmap):
    sd = flat(model.vae)
    torch.save({"vae": sd}, tmp_path / "vae.pth")
    vae = load_bsq_vae(tmp_path / "vae.pth", dtype=torch.bfloat16, mmap=mmap)
    own = vae.state_dict()
    for k, v in sd.items():
        want = v.to(torch.bfloat16) if v.is_floating_point() else v
        assert own[k].dtype == want.dtype and torch.equal(own[k], want), k


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "nested-pth"])
def test_vae_plain_key_spelling_is_renamed_as_the_official_loader_does(tmp_path, model, fmt):
    sd = flat(model.vae)
    plain = plain_spelling(sd)
    assert "encoder.conv_in.weight" in plain and "encoder.down.0.block.0.norm1.weight" in plain
    assert "encoder.down.0.downsample.conv.weight" in plain and "decoder.up.1.upsample.conv.weight" in plain
    assert len(plain) == len(sd) and checkpoint_kind(plain) == checkpoint_kind(sd) == "bsq-vae"
    path = tmp_path / f"vae.{fmt.split('-')[-1]}"
    if fmt == "safetensors":
        save_file(plain, str(path))
    else:
        torch.save({"vae": plain} if fmt == "nested-pth" else plain, path)
    assert same_tensors(load_bsq_vae(path), sd)


def test_vae_masks_may_be_absent_or_under_one_name(tmp_path, model):
    sd = flat(model.vae)
    for keep in ((), ("quantize.lfq.mask",), ("quantizer.lfq.mask",)):
        part = {k: v for k, v in sd.items() if "lfq.mask" not in k or k in keep}
        save_file(part, str(tmp_path / "vae.safetensors"))
        vae = load_bsq_vae(tmp_path / "vae.safetensors")
        assert torch.equal(vae.quantizer.lfq.mask, torch.tensor([128, 64, 32, 16, 8, 4, 2, 1]))


def test_vae_with_both_spellings_of_one_tensor_is_refused(tmp_path, model):
    sd = flat(model.vae)
    sd["encoder.conv_in.weight"] = sd["encoder.conv_in.conv.weight"].clone()
    save_file(sd, str(tmp_path / "vae.safetensors"))
    with pytest.raises(CheckpointError, match="two spellings"):
        read_bsq_vae_state_dict(tmp_path / "vae.safetensors")


def test_vae_missing_a_weight_is_refused_by_name(tmp_path, model):
    sd = flat(model.vae)
    sd.pop("decoder.up.2.block.1.conv2.conv.bias")
    torch.save({"vae": sd}, tmp_path / "vae.pth")
    with pytest.raises(CheckpointError, match=r"vae\.pth.*1 missing: decoder\.up\.2\.block\.1\.conv2\.conv\.bias"):
        load_bsq_vae(tmp_path / "vae.pth")


# -- the transformer: flat and sharded ----------------------------------------------------------------------------

def shard(sd, folder, kind, parts=3):
    """A Hugging Face sharded checkpoint of `sd` in `folder`: `parts` shards of consecutive keys and the index."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(sd)
    ext, index = (("safetensors", "model.safetensors.index.json") if kind == "safetensors"
                  else ("bin", "pytorch_model.bin.index.json"))
    weight_map = {}
    for i in range(parts):
        name = f"model-{i + 1:05d}-of-{parts:05d}.{ext}"
        part = {k: sd[k] for k in keys[i::parts]}
        save_file(part, str(folder / name)) if kind == "safetensors" else torch.save(part, folder / name)
        weight_map.update(dict.fromkeys(part, name))
    (folder / index).write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return folder / index


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
@pytest.mark.parametrize("via", ["index", "folder"])
def test_sharded_transformer_loads_from_its_index_or_folder(tmp_path, model, kind, via):
    sd = flat(model.transformer)
    index = shard(sd, tmp_path / "infinity_8b_weights", kind)
    path = index if via == "index" else index.parent
    loaded = load_infinity_transformer(path, pn=PN)
    assert same_tensors(loaded, sd)
    half = read_sharded_state_dict(path, torch.float16)
    assert all(half[k].dtype == (torch.float16 if v.is_floating_point() else v.dtype) for k, v in sd.items())


def test_sharded_checkpoint_refusals(tmp_path, model):
    sd = flat(model.transformer)
    index = shard(sd, tmp_path / "w", "safetensors")
    meta = json.loads(index.read_text())
    # a tensor the index lists but its shard lacks
    name = next(iter(meta["weight_map"]))
    shard_file = index.parent / meta["weight_map"][name]
    from safetensors.torch import load_file
    part = load_file(str(shard_file))
    part.pop(name)
    save_file(part, str(shard_file))
    with pytest.raises(CheckpointError, match=rf"{shard_file.name}.*missing: {name}"):
        load_infinity_transformer(index, pn=PN)
    # a shard name that leaves the folder
    bad = tmp_path / "bad.index.json"
    bad.write_text(json.dumps({"weight_map": {"head.weight": "../elsewhere.safetensors"}}))
    with pytest.raises(CheckpointError, match="not a file name in the index's folder"):
        read_sharded_state_dict(bad)
    # a missing shard, a damaged index
    gone = tmp_path / "gone.index.json"
    gone.write_text(json.dumps({"weight_map": {"head.weight": "nowhere.safetensors"}}))
    with pytest.raises(CheckpointError, match="nowhere.safetensors: no such file"):
        read_sharded_state_dict(gone)
    (tmp_path / "broken.index.json").write_text("{")
    with pytest.raises(CheckpointError, match="not a sharded checkpoint index"):
        read_sharded_state_dict(tmp_path / "broken.index.json")


def test_transformer_flat_pth_and_safetensors(tmp_path, model):
    sd = flat(model.transformer)
    torch.save(sd, tmp_path / "infinity_2b_reg.pth")
    save_file(sd, str(tmp_path / "infinity_2b_reg.safetensors"))
    for name in ("infinity_2b_reg.pth", "infinity_2b_reg.safetensors"):
        assert same_tensors(load_infinity_transformer(tmp_path / name, pn=PN), sd)


# -- pairs ------------------------------------------------------------------------------------------------------

def test_pair_loads_and_samples_like_the_models_it_was_written_from(tmp_path, model):
    torch.save(flat(model.transformer), tmp_path / "t.pth")
    torch.save({"vae": flat(model.vae)}, tmp_path / "v.pth")
    loaded = load_infinity(tmp_path / "t.pth", tmp_path / "v.pth", pn=PN)
    assert loaded.token_groups == 8
    assert same_tensors(loaded.transformer, flat(model.transformer)) and same_tensors(loaded.vae, flat(model.vae))


def test_vae_of_other_bits_is_refused_naming_both_files(tmp_path, model):
    torch.save(flat(model.transformer), tmp_path / "infinity_2b_reg.pth")  # 8 bits per token
    other = randomise_infinity(BSQVAE(BSQVAEConfig(ch=32, ch_mult=(1, 2, 2, 2, 2), bits=6)), 5)
    torch.save({"vae": flat(other)}, tmp_path / "infinity_vae_d6.pth")
    with pytest.raises(CheckpointError, match=r"infinity_2b_reg\.pth takes 8 bits per token, but .*"
                                              r"infinity_vae_d6\.pth is a 6-bit BSQ VAE"):
        load_infinity(tmp_path / "infinity_2b_reg.pth", tmp_path / "infinity_vae_d6.pth", pn=PN)


def test_patchify_pair_is_detected_from_the_shapes(tmp_path, model):
    """The 8B layout: 4 d bits per token (2 x 2 patches) with a stride-8 d-bit VAE (here d = 2, 8 bits per token);
    the file names say nothing."""
    torch.save(flat(model.transformer), tmp_path / "t.pth")
    vae8 = randomise_infinity(BSQVAE(BSQVAEConfig(ch=32, ch_mult=(1, 2, 2, 2), bits=2, downsample=8)), 5)
    save_file(flat(vae8), str(tmp_path / "v.safetensors"))
    loaded = load_infinity(tmp_path / "t.pth", tmp_path / "v.safetensors", pn=PN)
    assert loaded.patchify and loaded.token_groups == 8 and loaded.image_size == 16 * 2 * 8
    assert not load_infinity(tmp_path / "t.pth", _vae_file(tmp_path, model), pn=PN).patchify
    # stride 16 with 4 d bits is no official pair
    vae16 = randomise_infinity(BSQVAE(BSQVAEConfig(ch=32, ch_mult=(1, 2, 2, 2, 2), bits=2)), 5)
    save_file(flat(vae16), str(tmp_path / "v16.safetensors"))
    with pytest.raises(CheckpointError, match="do not belong together"):
        load_infinity(tmp_path / "t.pth", tmp_path / "v16.safetensors", pn=PN)


def _vae_file(tmp_path, model):
    save_file(flat(model.vae), str(tmp_path / "vae8.safetensors"))
    return tmp_path / "vae8.safetensors"


# -- files of other families --------------------------------------------------------------------------------------

def test_var_files_given_as_infinity_are_named(tmp_path):
    var = random_var(var_config())
    save_file(flat(var), str(tmp_path / "var_d2.safetensors"))
    with pytest.raises(CheckpointError, match=r"var_d2\.safetensors: expected an Infinity text-to-image transformer.*"
                                              r"looks like a VAR transformer"):
        load_infinity_transformer(tmp_path / "var_d2.safetensors", pn=PN)
    torch.save(flat(random_vqvae()), tmp_path / "vae_ch32.pth")
    with pytest.raises(CheckpointError, match=r"expected an Infinity BSQ VAE.*looks like a multi-scale VQ-VAE"):
        load_bsq_vae(tmp_path / "vae_ch32.pth")


def test_infinity_files_given_to_var_loaders_are_named(tmp_path, model):
    save_file(flat(model.transformer), str(tmp_path / "infinity.safetensors"))
    with pytest.raises(CheckpointError, match="looks like an Infinity text-to-image transformer"):
        load_var_transformer(tmp_path / "infinity.safetensors")
    save_file(plain_spelling(flat(model.vae)), str(tmp_path / "bsq.safetensors"))
    with pytest.raises(CheckpointError, match="looks like an Infinity BSQ VAE"):
        load_vqvae(tmp_path / "bsq.safetensors")
    torch.save({"vae": flat(model.vae)}, tmp_path / "infinity_vae_d32reg.pth")
    # picked as VAR's vae_name or as infinity_name: named, with where it goes
    where = "this is Infinity's BSQ VAE, .*: pick it in vae_name of Load Infinity Model"
    with pytest.raises(CheckpointError, match=where):
        load_vqvae(tmp_path / "infinity_vae_d32reg.pth")
    with pytest.raises(CheckpointError, match=where):
        load_infinity_transformer(tmp_path / "infinity_vae_d32reg.pth", pn=PN)
    with pytest.raises(CheckpointError, match="looks like an Infinity BSQ VAE"):
        load_infinity_transformer(tmp_path / "bsq.safetensors", pn=PN)


def test_an_unknown_pn_is_named_with_the_legal_values_before_any_file_is_read(tmp_path):
    missing = tmp_path / "absent.safetensors"  # never opened: the pn is refused first
    with pytest.raises(ValueError, match=r"pn must be one of '0.06M', '0.25M', '0.60M', '1M' .*, got '2M'"):
        load_infinity(missing, missing, pn="2M")
    with pytest.raises(ValueError, match=r"pn must be one of .*, got 1$"):
        load_infinity_transformer(missing, pn=1)


@pytest.mark.parametrize("change,fragment", [
    (lambda w: w.t().contiguous(), r"head.weight is \[128, 16\], expected \[16, 128\] \(2 logits per bit of the "
                                   r"8-bit tokens"),
    (lambda w: w.round().to(torch.int32), "head.weight is int32, expected a floating-point tensor"),
], ids=["transposed", "integer"])
def test_a_malformed_head_weight_is_named_with_the_file_and_the_expected_shape(tmp_path, model, change, fragment):
    sd = flat(model.transformer)
    sd["head.weight"] = change(sd["head.weight"])
    path = tmp_path / "bad_head.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError, match=f"bad_head.safetensors: {fragment}"):
        load_infinity_transformer(path, pn=PN)


def test_the_vae_may_load_in_its_own_precision_and_an_fp16_transformer_samples_without_a_second_decode(tmp_path,
                                                                                                      model):
    """load_infinity(vae_dtype=float32) under an fp16 transformer (what Load Infinity Model does for fp16): the VAE's
    weights are float32, the transformer's float16, and sampling decodes once (no float16 overflow warning)."""
    import warnings

    from scalewise.guidance import CFG, Draw, Generation, sample
    from scalewise.models.infinity import InfinityText
    torch.save(flat(model.transformer), tmp_path / "t.pth")
    torch.save({"vae": flat(model.vae)}, tmp_path / "v.pth")
    loaded = load_infinity(tmp_path / "t.pth", tmp_path / "v.pth", pn=PN, dtype=torch.float16,
                           vae_dtype=torch.float32)
    assert {p.dtype for p in loaded.vae.parameters()} == {torch.float32}
    assert torch.float16 in {p.dtype for p in loaded.transformer.parameters()}
    text = InfinityText((torch.randn(5, model.transformer.config.text_channels, generator=torch.Generator().manual_seed(0)),))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = sample(loaded, CFG(3.0, schedule="constant"), Generation(text, seed=0, draw=Draw(top_k=1)))
    assert torch.isfinite(out.images).all()
