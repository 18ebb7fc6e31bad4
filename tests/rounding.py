"""Float tolerances derived from the dtype and the operation, never from one machine's result.

Model (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.1 and §3.6): a length-n
dot product computed in *any* summation order satisfies |fl(x·y) − x·y| ≤ γ_n |x|·|y|, with
γ_n = n·u / (1 − n·u) and u = eps/2 the unit roundoff of the dtype. Kernels pick their blocking (the
summation order) from the shapes, the batch size and the CPU's vector width, so two results of the same
maths may differ by up to twice that bound; they are bitwise equal only when the same kernel runs on the
same shapes.
"""
from __future__ import annotations

import torch
from torch import nn


def unit_roundoff(dtype: torch.dtype = torch.float32) -> float:
    return torch.finfo(dtype).eps / 2


def gamma(n: int, dtype: torch.dtype = torch.float32) -> float:
    """γ_n: relative error bound of a length-n reduction against the sum of the absolute terms."""
    nu = n * unit_roundoff(dtype)
    assert nu < 1, n
    return nu / (1 - nu)


def reduction_lengths(module: nn.Module):
    """Length of each output element's reduction for every Linear/Conv layer (weights + bias)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            yield m.weight[0].numel() + (m.bias is not None)


def stack_bound(*modules: nn.Module, extra: tuple[int, ...] = (), dtype=torch.float32) -> float:
    """First-order relative error of a normalised stack of layers: Σ_l γ_{n_l}, relative to the scale
    of the activations. Each layer adds at most γ_n of Σ|w||x|; for the uncorrelated terms of these
    stacks Σ|w||x| ≈ √n·|Σwx|, while rounding errors of random sign grow like √n·u, not n·u (§3.6), so
    n·u·|Σwx| is the per-layer size either way. Normalisations (GroupNorm, LayerNorm, AdaLN) keep each
    layer's gain near 1, so to first order the layers' errors add. Summing over *every* layer of the
    modules (not only one path) and counting `extra` reductions (attention: head dim, sequence length)
    makes it an over-estimate, never an under-estimate, of the path's length."""
    return sum(gamma(n, dtype) for n in (*reduction_lengths(torch.nn.ModuleList(modules)), *extra))
