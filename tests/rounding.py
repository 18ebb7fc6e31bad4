"""Float tolerances derived from the dtype and the operation, never from one machine's result.

Model (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.1 and §3.6): a length-n
dot product computed in *any* summation order satisfies |fl(x·y) − x·y| ≤ γ_n |x|·|y|, with
γ_n = n·u / (1 − n·u) and u = eps/2 the unit roundoff of the dtype. Kernels pick their blocking (the
summation order) from the shapes, the batch size and the CPU's vector width, so two results of the same
maths may differ by up to twice that bound; they are bitwise equal only when the same kernel runs on the
same shapes.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def unit_roundoff(dtype: torch.dtype = torch.float32) -> float:
    return torch.finfo(dtype).eps / 2


U = unit_roundoff()  # float32: 2^-24


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


def transformer_bound(transformer: nn.Module, context_tokens: int = 0) -> float:
    """`stack_bound` of a VAR/Switti transformer: every linear layer, plus per block the attention's
    reductions over the head dimension (q·k) and over the sequence (softmax · v: all tokens of the
    schedule), and over the text tokens where the block cross-attends."""
    cfg = transformer.config
    seq = sum(p * p for p in cfg.patch_nums)
    per_block = (cfg.width // cfg.heads, seq) + ((cfg.width // cfg.heads, context_tokens) if context_tokens else ())
    return stack_bound(transformer, extra=per_block * cfg.depth)


def gamma_rms(n: int, dtype: torch.dtype = torch.float32) -> float:
    """3√n·u: three standard deviations of n roundings of random sign (Higham §3.6), the realistic size of
    a long reduction's error where the worst case γ_n (n·u) is never approached and too loose to test."""
    return 3 * math.sqrt(n) * unit_roundoff(dtype)


def attention_bound(keys: torch.Tensor, values: torch.Tensor, scale: float, dtype=torch.float32,
                    probabilistic: bool = False) -> float:
    """Absolute bound on one evaluation of softmax(keys keysᵀ · scale) @ values ([N, V] each) against the
    exact result: the scores are off by at most e = γ_V · max(|K||K|ᵀ) · scale (γ_V → `gamma_rms` when
    `probabilistic`); shifting a softmax's arguments by at most e changes each weight by a factor within
    exp(±2e), so the mixture moves by at most (exp(2e) − 1) · max|values|; the weighted sum itself adds
    γ_N · max|values| (weights sum to 1)."""
    k = keys.double().abs()
    g = (gamma_rms if probabilistic else gamma)(keys.shape[-1], dtype)
    e = g * (k @ k.transpose(-1, -2)).max().item() * scale
    return (math.expm1(2 * e) + gamma(keys.shape[-2] + 2, dtype)) * values.abs().max().item()
