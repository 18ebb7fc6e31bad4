"""Issue 13.6: the pack's out-of-memory check works on torch 2.4 (no torch.OutOfMemoryError) and without any
OutOfMemoryError class at all; the newer names are hidden with monkeypatch."""
import pytest
import torch

from scalewise.models.torch_compat import is_out_of_memory, out_of_memory_types

CUDA_OOM = torch.cuda.OutOfMemoryError


def test_out_of_memory_classes_are_recognised():
    assert is_out_of_memory(CUDA_OOM("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(ValueError("out of memory"))          # only RuntimeErrors by their words
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(KeyboardInterrupt())


def test_torch_2_4_without_torch_OutOfMemoryError(monkeypatch):
    monkeypatch.delattr(torch, "OutOfMemoryError", raising=False)
    assert not hasattr(torch, "OutOfMemoryError")
    assert out_of_memory_types() == (CUDA_OOM,)
    assert is_out_of_memory(CUDA_OOM("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("expected scalar type Float"))


@pytest.mark.parametrize("message", [
    "CUDA out of memory. Tried to allocate 20.00 MiB",
    "MPS backend out of memory (MPS allocated: 17.00 GB)",
    "XPU out of memory. Tried to allocate 1.00 GiB",
    "[enforce fail at alloc_cpu.cpp:114] data. DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes",
    "Could not allocate tensor with 4194304 bytes. There is not enough GPU video memory available!",
])
def test_backends_without_a_class_by_their_message(monkeypatch, message):
    monkeypatch.delattr(torch, "OutOfMemoryError", raising=False)
    monkeypatch.delattr(torch.cuda, "OutOfMemoryError")
    assert out_of_memory_types() == ()
    assert is_out_of_memory(RuntimeError(message))
    assert not is_out_of_memory(RuntimeError("Input type (float) and bias type (c10::Half) should be the same"))
