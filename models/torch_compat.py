"""Names that differ between the torch versions the pack supports (torch >= 2.4, the version torch-directml pins).

Use these instead of attributes added after 2.4: `except torch.OutOfMemoryError` (torch 2.5+) is evaluated when any
exception reaches it, so on torch 2.4 it turns every error, Cancel included, into an AttributeError.
"""
from __future__ import annotations

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
