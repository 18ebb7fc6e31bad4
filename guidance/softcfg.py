"""SoftCFG: soften the unconditional branch where the conditional model was already confident.

Paper: Xu, Tiulpin, Blaschko, "SoftCFG", arXiv 2510.00996 (ICLR 2026): weights w_i = 1 - p_max(x_i) on the uncond
branch's cached values, with Step-Normalization w_i = 1 - c_i / sum_j c_j; official code: Xudangliatiger/alitok
modeling/ar.py (weights max(0.05, (1 - c_j / sum c)^alpha), confidence of the sampled token) and
Xudangliatiger/RobusTok RAR/rar.py (max confidence, the paper's). Mapped to
scale-wise models: the uncond branch's cached attention values of earlier scales are multiplied by per-position
weights derived from the confidence of the token predicted at that position. Each cached position of scale j
produced exactly one token of scale j, so confidences map one to one, without resampling; the start/class
position keeps weight 1.
Keys, queries, the cond branch and the current scale's own values are never touched, and the
stored cache is not modified: the sampler applies the weights at attention time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import Guider, GuiderRuntime, RunInfo, ScaleRecord
from .draw import token_log_probability
from .schedules import check_finite

NORMALIZATIONS = ("global", "per_scale", "none")
CONFIDENCES = ("max", "sampled")


@dataclass(frozen=True)
class SoftCFG(Guider):
    """Modifies the uncond branch of the CFG/IGG guider below it (its `base`).

    strength alpha: weights (1 - c / sum c)^alpha with Step-Normalization over all weighted cached
    positions ("global", the paper's), within each scale ("per_scale"), or plain (1 - c)^alpha
    ("none"); `floor` bounds the normalised weights from below. alpha = 0 is plain CFG.

    `confidence`: "max" (c = max_v p_c(v), the paper's) or "sampled" (p_c of the drawn token, the AliTok code's),
    with p_c = softmax(l_c / temperature) of the conditional logits; for bitwise tokens (RunInfo.token_groups G > 1,
    Infinity) c is the geometric mean over the G bits of each bit's c (draw.token_log_probability). Needs an autoregressive model (VAR,
    Switti-AR) and a CFG or IGG guider in its stack: `validate` raises ValueError otherwise; the constructor
    raises ValueError for strength outside [0, 5] (the node's widget range), floor outside [0, 1], temperature outside [0.001, 100], or an
    unknown normalization or confidence.
    """

    strength: float = 1.0
    normalization: str = "global"
    confidence: str = "max"
    floor: float = 0.05
    temperature: float = 1.0
    base: Guider | None = None
    kind = "softcfg"
    strength_field = "strength"
    strength_range = (0.0, 5.0)  # the SoftCFG node's strength widget

    def __post_init__(self):
        check_finite("softcfg strength", self.strength, *self.strength_range)
        check_finite("softcfg floor", self.floor, 0.0, 1.0)
        check_finite("softcfg temperature", self.temperature, 1e-3, 100.0)
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"SoftCFG normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.confidence not in CONFIDENCES:
            raise ValueError(f"SoftCFG confidence must be one of {CONFIDENCES}, got {self.confidence!r}")

    def validate(self, info: RunInfo, stack):
        if not info.autoregressive:
            raise ValueError(
                f"SoftCFG cannot guide this {info.family} model: it re-weights the cached attention values of "
                "earlier scales, and this (non-autoregressive) model attends to none. Use CFG or IGG instead, "
                "or the autoregressive variant of the model")
        if not any(g.kind in ("cfg", "igg") for g in stack):
            raise ValueError("SoftCFG modifies the unconditional branch of a CFG or IGG guider: connect one to "
                             "its base input")

    def weights(self, confidences: list[torch.Tensor]) -> torch.Tensor:
        """Weights float [B, sum n_j] in [0, 1] for the cached positions of scales 1..k-1 from their confidences
        (a list of float [B, n_j] in [0, 1], one per scale, coarse to fine)."""
        c = torch.cat(confidences, dim=1)
        if self.normalization == "none":
            return (1 - c).clamp(min=0) ** self.strength
        if self.normalization == "global":
            share = c / c.sum(1, keepdim=True).clamp(min=1e-12)
        else:
            share = torch.cat([s / s.sum(1, keepdim=True).clamp(min=1e-12) for s in confidences], dim=1)
        return ((1 - share).clamp(min=0) ** self.strength).clamp(min=self.floor)

    def label(self):
        return f"SoftCFG {self.strength:g} {self.normalization} {self.confidence}"

    def runtime(self, info: RunInfo) -> GuiderRuntime:
        return _SoftCFGRuntime(self, info)


class _SoftCFGRuntime(GuiderRuntime):
    def __init__(self, spec: SoftCFG, info: RunInfo):
        self.spec, self.info = spec, info
        self.confidences: list[torch.Tensor] = []  # per scale >= 1: [B, n_j]

    def observe(self, record: ScaleRecord):
        if record.k == 0:
            return  # the start/class slot keeps weight 1
        groups = self.info.token_groups
        scaled = record.cond / self.spec.temperature
        if groups > 1:  # bitwise tokens: the geometric mean over the bits of each bit's confidence
            tokens = scaled.view(*scaled.shape[:2], groups, -1).argmax(-1) if self.spec.confidence == "max" \
                else record.tokens
            c = token_log_probability(scaled, tokens, groups).exp()
        elif self.spec.confidence == "max":
            c = scaled.softmax(-1).amax(-1)
        else:
            c = scaled.softmax(-1).gather(-1, record.tokens[..., None])[..., 0]
        self.confidences.append(c)

    def value_weights(self, k, cached):
        if self.spec.strength == 0 or not self.confidences:
            return None
        first = math.prod(self.info.scale_shapes[0])
        w = self.spec.weights(self.confidences[: k - 1])
        ones = torch.ones(w.shape[0], first, device=w.device, dtype=w.dtype)
        return torch.cat((ones, w), dim=1)
