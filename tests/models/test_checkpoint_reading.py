"""Issue 13.8: tensor-by-tensor reading and casting. Whatever the format (.safetensors, PyTorch zip, legacy pickle),
the dtype asked for and mmap on or off (ComfyUI's --disable-mmap), the state dict read equals the file's tensors
cast with torch's own .to(), bit for bit, with the right dtypes; integer tensors keep theirs. (The memory figures
are printed by tools/benchmark_loading.py, never asserted.)"""
import os
import pickle

import pytest
import torch

from scalewise.models import load_var, var_official_state_dict, vqvae_official_state_dict
from scalewise.models import checkpoint
from scalewise.models.checkpoint import read_state_dict
from tiny import save, tiny_model


def reference() -> dict:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 10, generator=gen)
    return {
        "w32": torch.randn(33, 7, generator=gen),
        "w16": torch.randn(5, 3, generator=gen).half(),
        "wbf": torch.randn(4, 9, generator=gen).bfloat16(),
        "ids": torch.arange(12).view(3, 4),
        "flag": torch.tensor([True, False]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "base": base,
        "transposed": base.t(),                 # a strided view sharing base's storage (PyTorch formats only)
        "tail": base[2:, 3:7],
    }


def write(tmp_path, fmt):
    sd = reference()
    path = tmp_path / f"sd.{fmt}"
    if fmt == "safetensors":
        sd = {k: v.contiguous().clone() for k, v in sd.items()}
        save(sd, path)
    elif fmt == "zip":
        torch.save(sd, path)
    else:
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    return str(path), sd


@pytest.mark.parametrize("fmt", ["safetensors", "zip", "legacy"])
@pytest.mark.parametrize("dtype", [None, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mmap", [True, False])
def test_read_equals_the_files_cast_values(tmp_path, fmt, dtype, mmap):
    path, sd = write(tmp_path, fmt)
    got = read_state_dict(path, dtype, mmap=mmap, skip=("scalar",))
    assert set(got) == set(sd) - {"scalar"}
    for k, v in got.items():
        want = sd[k].to(dtype) if dtype is not None and sd[k].is_floating_point() else sd[k]
        assert v.dtype == want.dtype, k
        assert v.shape == want.shape and torch.equal(v, want), k


def test_zip_cast_reads_the_file_not_the_mapping(tmp_path):
    """The cast path of a mapped zip checkpoint finds every storage's record (views and shared storages
    included) instead of falling back to casting from the mapping."""
    path, sd = write(tmp_path, "zip")
    mapped = torch.load(path, mmap=True, weights_only=True)
    cast = checkpoint._cast_from_zip(path, mapped, torch.bfloat16)
    assert cast is not None
    assert all(torch.equal(cast[k], v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in sd.items())


def test_zip_cast_with_skipped_keys_still_reads_the_file(tmp_path, monkeypatch):
    """Skipping a key (the VQ-VAE's training statistic) must not send the cast back to the mapping."""
    path, sd = write(tmp_path, "zip")

    def refuse(*args):
        raise AssertionError("cast from the mapping")
    monkeypatch.setattr(checkpoint, "_cast_each", refuse)
    got = read_state_dict(path, torch.float16, mmap=True, skip=("w32", "tail"))
    assert set(got) == set(sd) - {"w32", "tail"}
    assert torch.equal(got["transposed"], sd["transposed"].half())


def mapped_file(ptr: int) -> str | None:
    """The file mapped at address `ptr` of this process (/proc/self/maps), or None."""
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= ptr < end:
                return fields[5].strip() if len(fields) == 6 else None
    return None


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux's /proc/self/maps")
@pytest.mark.parametrize("fmt", ["safetensors", "zip"])
def test_uncast_tensors_are_the_files_mapping_unless_mmap_is_off(tmp_path, fmt):
    path, _ = write(tmp_path, fmt)
    assert mapped_file(read_state_dict(path, mmap=True)["w32"].data_ptr()) == path
    assert mapped_file(read_state_dict(path, mmap=False)["w32"].data_ptr()) != path
    assert mapped_file(read_state_dict(path, torch.bfloat16, mmap=True)["w32"].data_ptr()) != path


@pytest.mark.parametrize("ext", ["pth", "safetensors"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("mmap", [True, False])
def test_loaded_model_holds_the_cast_weights(tmp_path, ext, dtype, mmap):
    model = tiny_model(seed=4)
    var = save(var_official_state_dict(model.transformer), tmp_path / f"var.{ext}")
    vae = save(vqvae_official_state_dict(model.vae), tmp_path / f"vae.{ext}")
    loaded = load_var(var, vae, dtype=dtype, mmap=mmap)
    for part, ref in ((loaded.transformer, model.transformer), (loaded.vae, model.vae)):
        want = ref.state_dict()
        for k, v in part.state_dict().items():
            expected = want[k].to(dtype) if want[k].is_floating_point() else want[k]
            assert v.dtype == expected.dtype and torch.equal(v, expected), k


def test_truncated_data_is_named(tmp_path):
    path, _ = write(tmp_path, "safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-10])
    with pytest.raises(checkpoint.CheckpointError, match="truncated"):
        read_state_dict(path, torch.bfloat16)


def test_pickle_payload_is_refused_on_every_path(tmp_path):
    class Payload:
        def __reduce__(self):
            return exec, ("raise SystemExit('payload ran')",)
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "evil": Payload()}, path)
    for mmap in (True, False):
        with pytest.raises(checkpoint.CheckpointError, match="refused to load"):
            read_state_dict(str(path), torch.bfloat16, mmap=mmap)
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps({"evil": Payload()}, protocol=2))
    with pytest.raises(checkpoint.CheckpointError, match="refused to load"):
        read_state_dict(str(legacy), torch.bfloat16)


@pytest.mark.parametrize("fmt", ["safetensors", "zip"])
def test_casting_through_a_small_buffer(tmp_path, monkeypatch, fmt):
    """Tensors larger than the cast buffer are cast chunk by chunk (a 12-byte buffer: several chunks each)."""
    monkeypatch.setattr(checkpoint, "CAST_CHUNK_BYTES", 12)
    path, sd = write(tmp_path, fmt)
    got = read_state_dict(path, torch.float16)
    assert all(torch.equal(got[k], v.half() if v.is_floating_point() else v) for k, v in sd.items())


def test_safetensors_whose_header_length_starts_with_the_pickle_opcode(tmp_path):
    """A .safetensors file begins with its header length (8 bytes, little-endian); when that length's low byte is
    0x80 (the scenes-128 VAR's header is 5760 = 0x1680 bytes) the file starts like a legacy pickle. It is read as
    safetensors, tensors exact."""
    from safetensors.torch import save_file
    tensors = {"w": torch.arange(6, dtype=torch.float32).view(2, 3)}
    for pad in range(300):  # the header grows with the metadata; find a length with low byte 0x80
        path = tmp_path / f"sd{pad}.safetensors"
        save_file(tensors, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        raise AssertionError("no padding gave a header length with low byte 0x80")
    assert read_state_dict(str(path), None)["w"].equal(tensors["w"])
