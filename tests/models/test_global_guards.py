"""Issue 25 §2, the library side of "Other packs' patches": what the pack does when torch's process-wide state has
been changed by another pack (models/torch_compat.py, models/checkpoint.py). The ComfyUI side, the same patches
installed in a real server by tests/test_packs/scalewise_global_patches, is tests/integration/test_global_patches.py.
"""
import logging
import math
import os

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from scalewise.guidance import CFG, Draw, Generation, sample
from scalewise.models import torch_compat
from scalewise.models.checkpoint import read_state_dict
from scalewise.models.torch_compat import BUILTIN_SDPA, attention, torch_defaults
from tiny import LogitRecorder, random_text, save, tiny_model, tiny_switti


def sage_like(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, return_lse=False, **kwargs):
    """The signature of SageAttention's sageattn (sageattention/core.py), which ComfyUI-3D-Pack's TRELLIS backend
    probe installs as F.scaled_dot_product_attention at import: attn_mask and scale fall into **kwargs, unused.
    (The real kernel needs CUDA and fp16/bf16; this stand-in computes the same maths on the CPU.)"""
    scale = sm_scale if sm_scale is not None else 1 / math.sqrt(q.shape[-1])
    return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v


def test_the_stand_in_really_differs_where_the_models_need_mask_and_scale():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 8, generator=gen) for _ in range(3))
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    want = BUILTIN_SDPA(q, k, v, attn_mask=mask, scale=1.0)
    assert not torch.allclose(sage_like(q, k, v, attn_mask=mask, scale=1.0), want, atol=1e-3)
    assert torch.equal(attention(q, k, v, attn_mask=mask, scale=1.0), want)


@pytest.mark.parametrize("family", ["var", "switti"])
def test_models_ignore_a_replaced_sdpa(monkeypatch, caplog, family):
    model = tiny_model(seed=3) if family == "var" else tiny_switti(seed=3, autoregressive=True)
    cond = [5, 17] if family == "var" else random_text(batch=2)

    def logits():
        rec = LogitRecorder()
        out = sample(model, rec, Generation(cond, seed=1, draw=Draw(top_k=50, top_p=0.9)))
        return out.tokens, rec.logits
    tokens, before = logits()

    def replacement(*args, **kwargs):   # a function of its own per test: each is reported once
        return sage_like(*args, **kwargs)
    monkeypatch.setattr(F, "scaled_dot_product_attention", replacement)
    with caplog.at_level(logging.WARNING):
        tokens_after, after = logits()
    assert all(torch.equal(a, b) for a, b in zip(tokens, tokens_after))
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert f"[scalewise] torch.nn.functional.scaled_dot_product_attention is replaced by {__name__} ({__file__})" \
        in caplog.text


def test_torch_defaults_restores_torch_and_then_the_other_packs_settings(monkeypatch, caplog):
    matmul = torch.backends.cuda.matmul
    if not _has_fp16_accumulation():
        pytest.skip("torch < 2.7.1: no allow_fp16_accumulation")
    monkeypatch.setattr(F, "scaled_dot_product_attention", sage_like)
    torch.set_default_dtype(torch.float16)
    matmul.allow_fp16_accumulation = True
    try:
        with torch.device("meta"), caplog.at_level(logging.WARNING):
            with torch_defaults():
                assert torch.get_default_dtype() == torch.float32
                assert torch.zeros(1).device == torch.device("cpu") and torch.zeros(1).dtype == torch.float32
                assert matmul.allow_fp16_accumulation is False
                assert F.scaled_dot_product_attention is BUILTIN_SDPA
            assert torch.get_default_dtype() == torch.float16 and torch.zeros(1).device.type == "meta"
            assert matmul.allow_fp16_accumulation is True and F.scaled_dot_product_attention is sage_like
            with torch_defaults():
                pass
    finally:
        torch.set_default_dtype(torch.float32)
        matmul.allow_fp16_accumulation = False
    lines = [r.getMessage() for r in caplog.records if "process-wide settings" in r.getMessage()]
    assert lines == ["[scalewise] another pack changed torch's process-wide settings (default dtype float16, "
                     "default device meta, allow_fp16_accumulation on): the pack's nodes run with torch's defaults "
                     "(float32, cpu, no fp16 accumulation) and leave the setting as they found it"]


def _has_fp16_accumulation() -> bool:
    try:
        torch.backends.cuda.matmul.allow_fp16_accumulation
    except AttributeError:
        return False
    return True


def test_torch_defaults_changes_nothing_where_nothing_was_changed(caplog):
    with caplog.at_level(logging.WARNING), torch_defaults():
        assert torch.get_default_dtype() == torch.float32
    assert "process-wide settings" not in caplog.text


def test_sampling_neither_reads_nor_moves_the_global_rng():
    """The draws use per-image torch.Generators (guidance/draw.py): ComfyUI's own KSampler reseeds the global RNG
    (comfy.sample.prepare_noise) and packs call torch.manual_seed at will, and neither changes an image."""
    model = tiny_model(seed=2)
    torch.manual_seed(123)
    first = sample(model, CFG(3.0), Generation([1, 2], seed=7, draw=Draw(top_k=100, top_p=0.9))).images
    torch.manual_seed(456)
    state = torch.get_rng_state()
    second = sample(model, CFG(3.0), Generation([1, 2], seed=7, draw=Draw(top_k=100, top_p=0.9))).images
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_replaced_safetensors_load_file_is_not_used(tmp_path, monkeypatch):
    """comfyui-faster-loading replaces safetensors.torch.load_file process-wide with one that reads the whole file
    into memory; the pack opens the file with safe_open and keeps its tensors mapped."""
    calls = []

    def whole_file(filename, device="cpu", *args, **kwargs):
        calls.append(filename)
        with open(filename, "rb") as f:
            return safetensors.torch.load(f.read())
    monkeypatch.setattr(safetensors.torch, "load_file", whole_file)
    path = save({"w": torch.arange(12.0).view(3, 4)}, tmp_path / "w.safetensors")
    got = read_state_dict(path, mmap=True)
    assert torch.equal(got["w"], torch.arange(12.0).view(3, 4)) and calls == []
    if os.path.exists("/proc/self/maps"):
        ptr = got["w"].data_ptr()
        with open("/proc/self/maps") as f:
            mapped = [ln.split(maxsplit=5)[-1].strip() for ln in f
                      if int(ln.split("-")[0], 16) <= ptr < int(ln.split()[0].split("-")[1], 16)]
        assert mapped == [path]


def test_the_report_names_a_replacement_once():
    key = object()
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger(torch_compat.__name__)
    logger.addHandler(handler)
    try:
        for _ in range(3):
            torch_compat.report_once(("test", key), "replaced by %s", "x")
    finally:
        logger.removeHandler(handler)
    assert seen == ["replaced by x"]


def test_fp16_accumulation_the_user_asked_for_is_kept():
    """ComfyUI's --fast fp16_accumulation is the user's choice (nodes/common.py passes it): kept during the nodes."""
    matmul = torch.backends.cuda.matmul
    if not _has_fp16_accumulation():
        pytest.skip("torch < 2.7.1: no allow_fp16_accumulation")
    matmul.allow_fp16_accumulation = True
    try:
        with torch_defaults(keep_fp16_accumulation=True):
            assert matmul.allow_fp16_accumulation is True
        assert matmul.allow_fp16_accumulation is True
    finally:
        matmul.allow_fp16_accumulation = False
