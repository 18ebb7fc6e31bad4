"""Area resizing (VAR's F.interpolate(mode="area"), i.e. adaptive average pooling) on every backend.

MPS refuses adaptive_avg_pool2d when the output size does not divide the input size (4 -> 3, 16 -> 13, 32 -> 9:
pytorch/pytorch#143864, open for the torch versions ComfyUI ships with), and VAR resizes its latent that way at
every scale. `area_resize` computes the same average as two matrix products with the overlap weights of
adaptive average pooling (output cell i averages input cells floor(i*n/m) .. ceil((i+1)*n/m) - 1, torch's
definition in aten/src/ATen/native/AdaptiveAveragePooling.cpp), exact up to floating-point summation order. It is
used where the backend lacks the native op (MPS with non-dividing sizes); elsewhere the native op runs, so CPU and
CUDA stay bit for bit equal to the official code.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=64)
def _weights_cpu(n_in: int, n_out: int) -> torch.Tensor:
    rows = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        rows[i, start:end] = 1.0 / (end - start)
    return rows


def area_weights(n_in: int, n_out: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[n_out, n_in] averaging matrix of 1-D adaptive average pooling from n_in to n_out cells (row i averages
    input cells floor(i n_in / n_out) .. ceil((i + 1) n_in / n_out) - 1; each row sums to 1), in `dtype` on
    `device`; built in float64 and cached on the CPU."""
    return _weights_cpu(int(n_in), int(n_out)).to(device=device, dtype=dtype)


def native_area_supported(x: torch.Tensor, size: tuple[int, int]) -> bool:
    """Whether torch's own area interpolation runs for this input on its device."""
    if x.device.type != "mps":
        return True
    (h, w), (oh, ow) = x.shape[-2:], size
    return all(a % b == 0 if a >= b else b % a == 0 for a, b in ((h, oh), (w, ow)))


def area_resize(x: torch.Tensor, size, matrix: bool | None = None) -> torch.Tensor:
    """F.interpolate(x, size, mode="area") for x [B, C, H, W] -> [B, C, h, w], same dtype and device.

    matrix: None = the native op where the backend has it, else the matrix form; True/False force one (tests,
    parity checks). The matrix form accumulates in x's dtype (float32 at least on the way) as a matmul does."""
    size = (int(size[0]), int(size[1])) if not isinstance(size, int) else (int(size), int(size))
    if matrix is None:
        matrix = not native_area_supported(x, size)
    if not matrix:
        return F.interpolate(x, size=size, mode="area")
    compute = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    a_h = area_weights(x.shape[-2], size[0], x.device, compute)
    a_w = area_weights(x.shape[-1], size[1], x.device, compute)
    return (a_h @ x.to(compute) @ a_w.T).to(x.dtype)
