"""SSG (Scaled Spatial Guidance): push each scale's logits away from what the previous scale
already implied, l + beta_k (l - l_prior), with the prior built by DSE in the DCT domain.

Paper: Shin, Hur, Kim, "Scaled Spatial Guidance", arXiv 2602.05534 (ICLR 2026): the update
l_k + beta_k (l_k - l_prior) and DSE (its Alg. 1: interpolate the previous scale's logits, then put the coarse
map's DCT spectrum back into the low-frequency block). Its official code is unreleased, so two details are our
reconstructions, exposed as options: the DCT rescale factor sqrt(HW / hw) (with orthonormal DCTs of different
sizes it keeps a constant map constant; without it the prior's mean shrinks to sqrt(hw / HW)) and the beta
schedule (the paper reports neither).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from .base import Guider, GuiderRuntime, RunInfo, ScaleRecord
from .schedules import check_finite, ramp

BETA_SCHEDULES = ("constant", "linear_decay", "linear_increase", "custom")
PRIOR_SOURCES = ("guided_pre_ssg", "guided_post_ssg", "cond")
INTERPOLATIONS = ("bilinear", "bicubic")  # how the previous scale's logits are resized to this one


@functools.lru_cache(maxsize=64)
def _dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix D [n, n] (float64 on the CPU): X = D x, x = D^T X."""
    i = torch.arange(n, dtype=torch.float64)
    d = torch.cos(math.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


def dct_matrix(n: int, device, dtype=torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II matrix D [n, n] (X = D x, x = D^T X) in `dtype` on `device`, cached per (n, device,
    dtype)."""
    return _device_dct_matrix(n, torch.device(device), dtype)


@functools.lru_cache(maxsize=64)
def _device_dct_matrix(n: int, device: torch.device, dtype) -> torch.Tensor:
    # Kept on the device: a host-to-device copy of four matrices per scale would stall the GPU queue.
    return _dct_matrix(n).to(device=device, dtype=dtype)


def dse_prior(prev: torch.Tensor, size: tuple[int, int], rescale: bool = True,
              interpolation: str = "bilinear") -> torch.Tensor:
    """Discrete Spatial Enhancement: prev [B, V, h, w] -> prior [B, V, H, W]. The interpolated map's
    low-frequency DCT block is replaced by the coarse map's spectrum (times sqrt(HW/hw), which keeps
    a constant map constant); its high frequencies are kept.

    prev: the previous scale's logits as a float32 map (h, w <= H, W); interpolation "bilinear" or "bicubic"
    (align_corners False); rescale False drops the sqrt(HW/hw) factor. The SSG paper's Alg. 1 (DSE), with the
    rescale factor our reconstruction (module docstring)."""
    h, w = prev.shape[-2:]
    H, W = size
    up = F.interpolate(prev, size=size, mode=interpolation, align_corners=False)
    dh, dw = dct_matrix(h, prev.device), dct_matrix(w, prev.device)
    dH, dW = dct_matrix(H, prev.device), dct_matrix(W, prev.device)
    coarse = dh @ prev @ dw.T
    spectrum = dH @ up @ dW.T
    rho = math.sqrt(H * W / (h * w)) if rescale else 1.0
    spectrum[..., :h, :w] = rho * coarse
    return dH.T @ spectrum @ dW


@dataclass(frozen=True)
class SSG(Guider):
    """l_k + beta_k (l_k - DSE(l_{k-1})) on top of the base guider's logits; off at scale 0.

    beta_k = beta * s(k): "constant", "linear_decay" (1 - r_k), "linear_increase" (r_k), or
    "custom" (`custom_betas[k]`, missing entries 0).

    Logits float32 [B, n_k, V]; the prior DSE(l_{k-1}) is built from the previous scale's logits taken per
    `prior_source`: the guided logits before SSG ("guided_pre_ssg"), after it ("guided_post_ssg") or the raw
    conditional logits ("cond"). Raises ValueError for beta or a custom beta outside [0, 2] (the node's widget range) or non-finite, or
    an unknown schedule, interpolation or prior_source; `with_strength` refuses the custom schedule.
    """

    beta: float = 0.1
    schedule: str = "constant"
    custom_betas: tuple[float, ...] = ()
    dse_rescale: bool = True
    interpolation: str = "bilinear"
    prior_source: str = "guided_pre_ssg"
    base: Guider | None = None
    kind = "ssg"
    strength_field = "beta"
    strength_range = (0.0, 2.0)  # the SSG node's beta widget; custom betas too

    def __post_init__(self):
        check_finite("ssg beta", self.beta, *self.strength_range)
        for b in self.custom_betas:
            check_finite("ssg custom beta", b, *self.strength_range)
        for name, value, allowed in (("schedule", self.schedule, BETA_SCHEDULES),
                                     ("interpolation", self.interpolation, INTERPOLATIONS),
                                     ("prior_source", self.prior_source, PRIOR_SOURCES)):
            if value not in allowed:
                raise ValueError(f"SSG {name} must be one of {allowed}, got {value!r}")

    def beta_at(self, k: int, num_scales: int) -> float:
        """beta_k: 0 at k = 0 (no previous scale); else beta times 1 (constant), 1 - r_k (linear_decay) or r_k
        (linear_increase), r_k = k / (K - 1); `custom_betas[k]` (0 past its end) for the custom schedule."""
        if k == 0:
            return 0.0
        r = ramp(k, num_scales)
        if self.schedule == "custom":
            return self.custom_betas[k] if k < len(self.custom_betas) else 0.0
        return self.beta * {"constant": 1.0, "linear_decay": 1.0 - r, "linear_increase": r}[self.schedule]

    def with_strength(self, value: float) -> "SSG":
        if self.schedule == "custom":
            raise ValueError("an SSG guider with the custom beta schedule has no single strength to vary: "
                             "use the constant, linear_decay or linear_increase schedule")
        return super().with_strength(value)

    def label(self):
        if self.schedule == "custom":
            return "SSG custom " + ",".join(f"{b:g}" for b in self.custom_betas)
        return f"SSG {self.beta:g} {self.schedule}"

    def runtime(self, info: RunInfo) -> GuiderRuntime:
        return _SSGRuntime(self, info)


class _SSGRuntime(GuiderRuntime):
    def __init__(self, spec: SSG, info: RunInfo):
        self.spec, self.info = spec, info
        self.prev: torch.Tensor | None = None  # [B, n_{k-1}, V] of the previous scale

    def postprocess(self, k, logits):
        spec = self.spec
        beta = spec.beta_at(k, self.info.num_scales)
        out = logits
        if beta != 0 and self.prev is not None:
            out = logits + beta * (logits - self._prior(k))
        if spec.prior_source != "cond":
            self.prev = logits if spec.prior_source == "guided_pre_ssg" else out
        return out

    def _prior(self, k):
        shape, prev_shape = self.info.scale_shapes[k], self.info.scale_shapes[k - 1]
        grid = rearrange(self.prev, "b (h w) v -> b v h w", h=prev_shape[0])
        prior = dse_prior(grid, shape, self.spec.dse_rescale, self.spec.interpolation)
        return rearrange(prior, "b v h w -> b (h w) v")

    def observe(self, record: ScaleRecord):
        if self.spec.prior_source == "cond":
            self.prev = record.cond
