import os
import pickle

import pytest
import torch

from scalewise.guidance import CFG, Draw, Generation, sample
from scalewise.models import CheckpointError, load_var, read_state_dict, var_official_state_dict
from scalewise.models.var_loader import infer_var_config
from tiny import TINY_PN, random_vqvae, save, tiny_model, write_var_files


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=4)


@pytest.mark.parametrize("ext", [".pth", ".safetensors"])
def test_round_trip_gives_identical_samples(tmp_path, model, ext):
    var_path, vae_path = write_var_files(model, tmp_path, ext)
    loaded = load_var(var_path, vae_path)
    assert loaded.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    a = sample(model, CFG(2.0), Generation([7, 8], seed=3, draw=Draw(top_k=20)))
    b = sample(loaded, CFG(2.0), Generation([7, 8], seed=3, draw=Draw(top_k=20)))
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))
    assert torch.equal(a.images, b.images)


def test_config_inferred_from_tensors(model):
    sd = var_official_state_dict(model.transformer)
    cfg = infer_var_config(sd)
    assert (cfg.depth, cfg.width, cfg.heads, cfg.patch_nums, cfg.shared_adaln) == (2, 128, 2, TINY_PN, False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_loading(tmp_path, model, dtype):
    loaded = load_var(*write_var_files(model, tmp_path), dtype=dtype)
    assert loaded.dtype == dtype and loaded.vae.dtype == dtype
    out = sample(loaded, CFG(4.0), Generation([1], draw=Draw(top_k=1)))
    assert out.images.dtype == torch.float32 and torch.isfinite(out.images).all()


# -- bad files: every case names the file and says what it found --------------------------------

@pytest.fixture()
def files(tmp_path, model):
    return write_var_files(model, tmp_path)


def expect_error(fn, *fragments):
    with pytest.raises(CheckpointError) as info:
        fn()
    for f in fragments:
        assert f in str(info.value), str(info.value)
    return str(info.value)


def test_zero_byte_file(tmp_path, files):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    expect_error(lambda: load_var(empty, files[1]), str(empty), "empty")


def test_truncated_safetensors(tmp_path, model, files):
    path = save(var_official_state_dict(model.transformer), tmp_path / "t.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    expect_error(lambda: load_var(path, files[1]), path, "truncated")


def test_truncated_pth(tmp_path, files):
    data = open(files[0], "rb").read()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 3])
    expect_error(lambda: load_var(cut, files[1]), str(cut), "truncated or damaged")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_payload_never_runs(tmp_path, files):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    sd = read_state_dict(files[0])
    sd["__payload__"] = _Payload(marker)
    with open(evil, "wb") as f:
        pickle.dump(sd, f)
    expect_error(lambda: load_var(evil, files[1]), str(evil), "refused")
    torch.save({"w": torch.zeros(1), "x": _Payload(marker)}, tmp_path / "evil_zip.pth")
    expect_error(lambda: read_state_dict(tmp_path / "evil_zip.pth"), "refused")
    assert not marker.exists()


def test_vqvae_given_as_transformer_and_reverse(files):
    var_path, vae_path = files
    expect_error(lambda: load_var(vae_path, vae_path), vae_path, "expected a VAR transformer", "VQ-VAE")
    expect_error(lambda: load_var(var_path, var_path), var_path, "expected a multi-scale VQ-VAE",
                 "looks like a VAR transformer")


@pytest.mark.parametrize("keys,what", [
    ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, "Stable Diffusion"),
    ({"text_pooler.weight": torch.zeros(1), "head.weight": torch.zeros(1),
      "blocks.0.cross_attn.to_q.weight": torch.zeros(1)}, "Switti"),
    ({"text_model.encoder.layers.0.mlp.fc1.weight": torch.zeros(1)}, "CLIP text encoder"),
])
def test_foreign_models_are_named(tmp_path, files, keys, what):
    path = save(keys, tmp_path / "other.safetensors")
    expect_error(lambda: load_var(path, files[1]), path, what)


def test_missing_and_unexpected_keys(tmp_path, files):
    sd = read_state_dict(files[0])
    del sd["blocks.1.ffn.fc2.bias"]
    sd["blocks.1.extra.weight"] = torch.zeros(3)
    path = save(sd, tmp_path / "broken.pth")
    expect_error(lambda: load_var(path, files[1]), path, "1 missing: blocks.1.ffn.fc2.bias",
                 "1 unexpected: blocks.1.extra.weight")


def test_wrong_shape(tmp_path, files):
    sd = read_state_dict(files[0])
    sd["head.bias"] = torch.zeros(7)
    path = save(sd, tmp_path / "shape.pth")
    expect_error(lambda: load_var(path, files[1]), "head.bias (7,) (expected (4096,))")


def test_corrupted_buffer(tmp_path, files):
    sd = read_state_dict(files[0])
    sd["lvl_1L"] = sd["lvl_1L"].flip(-1)
    path = save(sd, tmp_path / "buf.pth")
    expect_error(lambda: load_var(path, files[1]), path, "lvl_1L")


def test_codebook_mismatch(tmp_path, files):
    from scalewise.models import vqvae_official_state_dict
    from scalewise.models.vqvae import VQVAE, VQVAEConfig
    small = VQVAE(VQVAEConfig(vocab_size=512, ch=32))
    path = save(vqvae_official_state_dict(small), tmp_path / "vae512.pth")
    expect_error(lambda: load_var(files[0], path), path, "512x32 codebook")


def test_vqvae_buffer_row_count_is_tolerated(tmp_path, files):
    from scalewise.models import vqvae_official_state_dict
    path = save(vqvae_official_state_dict(random_vqvae(), num_scales=14), tmp_path / "vae14.pth")
    load_var(files[0], path)


def test_renamed_files_load_by_content(tmp_path, files):
    renamed = tmp_path / "var.safetensors"
    renamed.write_bytes(open(files[0], "rb").read())  # a pickle behind a .safetensors name
    load_var(renamed, files[1])
    png = tmp_path / "image.pth"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    expect_error(lambda: load_var(png, files[1]), str(png), "PNG image")


def test_training_dump_is_explained(tmp_path, files):
    path = tmp_path / "ar-ckpt-best.pth"
    torch.save({"trainer": {"model": read_state_dict(files[0])}, "epoch": torch.tensor(1)}, path)
    expect_error(lambda: load_var(path, files[1]), "training checkpoint")


def test_a_train_py_dump_loads_its_var_wo_ddp(tmp_path, files, model):
    """VAR's train.py (as VAR-CLIP's) dumps the model under ['trainer']['var_wo_ddp'], beside the optimizer."""
    path = tmp_path / "ar-ckpt-best.pth"
    torch.save({"trainer": {"var_wo_ddp": read_state_dict(files[0]), "var_opt": {"optimizer": {"state": {}}}},
                "epoch": torch.tensor(1)}, path)
    loaded = load_var(path, files[1])
    want = model.transformer.state_dict()
    assert all(torch.equal(loaded.transformer.state_dict()[k], want[k]) for k in want)
