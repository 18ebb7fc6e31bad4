"""Names that differ between the torch versions the pack supports (torch >= 2.4, the version torch-directml pins),
and helpers for reporting the process-wide torch state other packs change.

Use these instead of attributes added after 2.4: `except torch.OutOfMemoryError` (torch 2.5+) is evaluated when any
exception reaches it, so on torch 2.4 it turns every error, Cancel included, into an AttributeError.
"""
from __future__ import annotations

import logging

import torch

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
# for everybody (README, Reliability: "Other packs' patches").

_log = logging.getLogger(__name__)
_reported: set = set()

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
