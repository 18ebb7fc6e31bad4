"""Names that differ between the torch versions the pack supports (torch >= 2.4, the version torch-directml pins),
and guards against the process-wide torch state other packs change (the attention function, default dtype and
device, fp16 accumulation).

Use these instead of attributes added after 2.4: `except torch.OutOfMemoryError` (torch 2.5+) is evaluated when any
exception reaches it, so on torch 2.4 it turns every error, Cancel included, into an AttributeError.
"""
from __future__ import annotations

import contextlib
import logging

import torch
import torch.nn.functional as F

MIN_TORCH = (2, 4)
# Words of the RuntimeErrors that backends without a dedicated class raise when memory runs out: CPU allocator
# ("DefaultCPUAllocator: not enough memory"), MPS ("MPS backend out of memory"), XPU ("XPU out of memory"),
# DirectML ("not enough GPU video memory"), CUDA/ROCm before torch.cuda.OutOfMemoryError existed.
OOM_WORDS = ("out of memory", "not enough memory", "not enough gpu video memory")


def out_of_memory_types() -> tuple[type[BaseException], ...]:
    """The exception classes this torch raises for an exhausted device: torch.OutOfMemoryError (torch >= 2.5) and
    torch.cuda.OutOfMemoryError (torch >= 1.13; the same class from 2.5 on), whichever exist."""
    found = []
    for owner in (torch, getattr(torch, "cuda", None)):
        cls = getattr(owner, "OutOfMemoryError", None)
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device (or host) running out of memory, on any backend and torch >= 2.4."""
    if isinstance(error, out_of_memory_types()):
        return True
    return isinstance(error, RuntimeError) and any(w in str(error).lower() for w in OOM_WORDS)


# --- Process-wide state that other packs change -----------------------------------------------------------------
# ComfyUI loads every installed pack into one process, and some replace torch functions or change torch's defaults
# for everybody (README, Reliability: "Other packs' patches"). The pack relies on none of them.

_log = logging.getLogger(__name__)
_reported: set = set()

# The kernel behind torch.nn.functional.scaled_dot_product_attention (torch >= 2.0 binds that name to this
# builtin). Packs rebind the Python name, e.g. to SageAttention's sageattn, which takes no attn_mask or scale: VAR
# and Switti need both (block-causal masks, VAR's softmax scale of 1), so the pack calls the kernel itself.
BUILTIN_SDPA = torch._C._nn.scaled_dot_product_attention


def origin(fn) -> str:
    """Where a replacement function comes from, for the log: the module that defined it and its file."""
    module = getattr(fn, "__globals__", {}).get("__name__") or getattr(type(fn), "__module__", "?")
    code = getattr(fn, "__code__", None)
    return f"{module} ({code.co_filename})" if code is not None else str(module)


def report_once(key, message: str, *args) -> None:
    """Log `message` as a warning the first time `key` is seen (keys hold the replacement itself, not its id, which
    a later function could reuse)."""
    try:
        hash(key)
    except TypeError:
        key = repr(key)
    if key not in _reported:
        _reported.add(key)
        _log.warning(message, *args)


def _check_sdpa() -> None:
    current = F.scaled_dot_product_attention
    if current is not BUILTIN_SDPA:
        report_once(("sdpa", current), "[scalewise] torch.nn.functional.scaled_dot_product_attention is replaced "
                    "by %s: the pack's models call torch's built-in kernel instead (a replacement may ignore the "
                    "attention mask and softmax scale they need)", origin(current))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
              scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v with torch's built-in scaled_dot_product_attention, whatever
    torch.nn.functional.scaled_dot_product_attention has been rebound to. q [..., L, D], k and v [..., S, D],
    attn_mask broadcastable to [..., L, S] (bool: True = attend; float: added), scale None = 1/sqrt(D);
    returns [..., L, D] in q's dtype."""
    _check_sdpa()
    return BUILTIN_SDPA(q, k, v, attn_mask=attn_mask, scale=scale)


def _default_device() -> torch.device:
    return torch.get_default_device()


@contextlib.contextmanager
def torch_defaults(keep_fp16_accumulation: bool = False):
    """Run the block with torch's own process-wide defaults where another pack changed them, and give the pack's
    settings back afterwards: default dtype float32 (torch.set_default_dtype), default device cpu
    (torch.set_default_device), no fp16 accumulation in cuBLAS matmuls (torch >= 2.7.1:
    torch.backends.cuda.matmul.allow_fp16_accumulation; left on with `keep_fp16_accumulation`, when the user asked
    for it: ComfyUI's --fast fp16_accumulation) and torch's own scaled_dot_product_attention under its usual name
    (for ComfyUI's text encoders the Switti nodes call). Each change found is logged once, naming it. The pack's
    nodes run inside it (nodes/common.py, checked_inputs)."""
    dtype, device = torch.get_default_dtype(), _default_device()
    matmul = torch.backends.cuda.matmul
    fp16_accumulation = bool(getattr(matmul, "allow_fp16_accumulation", False)) and not keep_fp16_accumulation
    sdpa = F.scaled_dot_product_attention
    found = []
    if dtype != torch.float32:
        found.append(f"default dtype {str(dtype).replace('torch.', '')}")
    if device.type != "cpu":
        found.append(f"default device {device}")
    if fp16_accumulation:
        found.append("allow_fp16_accumulation on")
    if found:
        report_once(("defaults", *found), "[scalewise] another pack changed torch's process-wide settings (%s): the "
                    "pack's nodes run with torch's defaults (float32, cpu, no fp16 accumulation) and leave the "
                    "setting as they found it", ", ".join(found))
    if sdpa is not BUILTIN_SDPA:
        _check_sdpa()
        F.scaled_dot_product_attention = BUILTIN_SDPA
    if fp16_accumulation:
        matmul.allow_fp16_accumulation = False
    torch.set_default_dtype(torch.float32)
    try:
        with torch.device("cpu") if device.type != "cpu" else contextlib.nullcontext():
            yield
    finally:
        torch.set_default_dtype(dtype)
        if fp16_accumulation:
            matmul.allow_fp16_accumulation = True
        if sdpa is not BUILTIN_SDPA and F.scaled_dot_product_attention is BUILTIN_SDPA:
            F.scaled_dot_product_attention = sdpa
