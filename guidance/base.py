"""The guider interface between the scale-wise sampler and the guidance methods.

A `Guider` is an immutable description (safe to cache and reuse across runs); guiders stack through
their `base` field. For each generation the sampler asks every guider of the stack for a
`GuiderRuntime`, which owns all per-run state, and combines them in a fixed stage order per scale:

1. forward, with the uncond branch's attention values re-weighted (`value_weights`, SoftCFG);
2. combine: l = l_u + sum_i g_i(k) * T_i(l_c - l_u) over the active `terms` (CFG: T = identity,
   IGG: T = grounded nudge); cond-only logits when no term is active;
3. `postprocess` in stack order (SSG);
4. sample (the sampler filters a copy; guiders' tensors are never modified in place);
5. `observe` the outcome (SoftCFG confidences).

Shapes: B images, n_k = h_k w_k tokens of scale k (pn_k^2 on square maps), V codes; logits are float32 [B, n_k, V]. The combination of
step 2 is CFG (Ho & Salimans 2022, arXiv 2207.12598) written on logits as the VAR sampler does
(FoundationVision/VAR models/var.py `autoregressive_infer_cfg`), generalised to the IGG paper's mixed scheme
(Nguyen et al. 2025, arXiv 2509.23876; dnngky/infoground-guidance models/var.py).
"""
from __future__ import annotations

import math

from dataclasses import dataclass, replace
from typing import Callable, ClassVar

import torch


@dataclass(frozen=True)
class RunInfo:
    """What guiders may know about the generation they serve: the scale schedule (patch_nums, side pn_k of each
    token map; `scale_shapes`, the (h_k, w_k) of each map, which non-square schedules need), the batch size B, the
    codebook size V, the model family ("var", "switti", "infinity"), whether every scale attends to the cached
    earlier scales (`autoregressive`), the independent draws per position (`token_groups` G: the logits' V is G
    groups of V / G, each a distribution; models.base.ScalewiseModel), the cfg of no guidance in the family's
    convention (`unguided_cfg`: 0 for VAR and Switti, 1 for Infinity) and the image's (H, W) in px (`image_shape`,
    None when unknown).

    patch_nums: the sides of a square schedule, or the (h, w) pairs of a non-square one (`scale_shapes` reads
    both)."""

    patch_nums: tuple
    batch_size: int
    vocab_size: int
    family: str
    autoregressive: bool  # True when every scale attends to cached earlier scales
    token_groups: int = 1
    unguided_cfg: float = 0.0
    image_shape: tuple[int, int] | None = None

    @classmethod
    def of(cls, model, batch_size: int) -> "RunInfo":
        """The RunInfo of a generation of `batch_size` images by `model` (an object with the model contract)."""
        shapes = tuple(tuple(s) for s in model.scale_shapes)
        square = all(h == w for h, w in shapes)
        return cls(tuple(h for h, _ in shapes) if square else shapes, batch_size, model.vocab_size, model.family,
                   model.autoregressive, model.token_groups, model.unguided_cfg, tuple(model.image_shape))

    @property
    def scale_shapes(self) -> tuple[tuple[int, int], ...]:
        """(h_k, w_k) of each token map ((pn_k, pn_k) for a square schedule)."""
        return tuple(scale_shape(p) for p in self.patch_nums)

    @property
    def num_scales(self) -> int:
        """K, the number of scales."""
        return len(self.scale_shapes)


def scale_shape(entry) -> tuple[int, int]:
    """(h, w) of a schedule entry: a side pn -> (pn, pn), an (h, w) pair as given."""
    return (int(entry[0]), int(entry[1])) if isinstance(entry, (tuple, list)) else (int(entry), int(entry))


@dataclass(frozen=True)
class Term:
    """One additive nudge: weight * transform(l_c - l_u); transform None means identity (CFG).

    weight: the schedule's g(k) (a float, no unit; 1 = the cond logits alone when it is the only term).
    transform: float32 [B, n_k, V] -> float32 [B, n_k, V], must not modify its argument (IGG: the grounded nudge
    A (l_c - l_u))."""

    weight: float
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass
class ScaleRecord:
    """What happened at scale k (its token map `shape` (h, w), n = h w; `side` = h), handed to `observe` after
    sampling. Tensors are read-only: logits float32, tokens int64 in [0, V) (row-major over the h x w map)."""

    k: int
    side: int
    cond: torch.Tensor           # [B, n, V] raw conditional logits
    uncond: torch.Tensor | None  # [B, n, V] raw unconditional logits, if that branch ran
    logits: torch.Tensor         # [B, n, V] the logits the tokens were drawn from (after postprocess, temperature)
    tokens: torch.Tensor         # [B, n] sampled indices
    shape: tuple[int, int] | None = None  # (h, w) of the map; None: (side, side)


class GuiderRuntime:
    """Per-generation behaviour of one guider; every hook defaults to 'no effect'."""

    def term(self, k: int) -> Term | None:
        """This guider's additive nudge at scale k, or None (inactive: cond-only unless another term runs)."""
        return None

    def value_weights(self, k: int, cached: int) -> torch.Tensor | None:
        """Multipliers float32 [B, cached] for the uncond branch's cached attention values before scale k (cached =
        sum of n_j over scales j < k; 1 = unchanged, 0 = that position's value removed), or None for no change.
        SoftCFG's re-weighting (Xu, Tiulpin & Blaschko, arXiv 2510.00996)."""
        return None

    def postprocess(self, k: int, logits: torch.Tensor) -> torch.Tensor:
        """Transform the combined logits float32 [B, n_k, V] of scale k; must return a new tensor (never modify
        `logits` in place: the trace keeps it)."""
        return logits

    def observe(self, record: ScaleRecord) -> None:
        """Called after the tokens of scale `record.k` were drawn (read-only tensors); returns nothing."""


class Guider:
    """Base of the immutable guider descriptions; subclasses are frozen dataclasses with a `base` field (the guider
    applied before this one, or None) and check their fields in `__post_init__` (ValueError naming the field and
    its range)."""

    kind: ClassVar[str] = "guider"
    # The field that sets how hard this guider pushes, in its paper's vocabulary (see `with_strength`).
    strength_field: ClassVar[str] = ""
    # Its allowed range [low, high], the guider node's widget range (checked by __post_init__, `with_strength`).
    strength_range: ClassVar[tuple[float, float]] = (-math.inf, math.inf)
    base: "Guider | None"

    @property
    def guidance_strength(self) -> float:
        """The value of `strength_field` (CFG/IGG `scale`, SoftCFG `strength` alpha, SSG `beta`)."""
        return float(getattr(self, self.strength_field))

    def with_strength(self, value: float) -> "Guider":
        """A copy of this guider (the top of its stack; its base is shared, unchanged) with its strength set
        to `value`, checked like a new guider: raises ValueError outside the field's range.

        The strength is the scalar each method's paper sweeps: CFG `scale` w (VAR's cfg; push 1 + w s(k)),
        IGG `scale` (same convention, the paper's guidance scale), SoftCFG `strength` alpha (the exponent of
        the confidence weights), SSG `beta` (the spatial-guidance coefficient; its custom schedule has no single
        strength and is refused).
        """
        if not self.strength_field:
            raise ValueError(f"the {self.kind.upper()} guider has no single strength to vary")
        return replace(self, **{self.strength_field: float(value)})

    def stack(self) -> tuple["Guider", ...]:
        """The chain from the bottom (first applied) to this guider."""
        chain, g = [], self
        while g is not None:
            chain.append(g)
            g = g.base
        return tuple(reversed(chain))

    def label(self) -> str:
        """Short description of this guider alone, for traces and heat maps."""
        return self.kind.upper()

    def describe(self) -> str:
        """The whole stack, bottom first: e.g. "CFG 1.5 linear + IGG 1.85 linear + SSG 0.1 constant"."""
        return " + ".join(g.label() for g in self.stack())

    def runtime(self, info: RunInfo) -> GuiderRuntime:
        """A fresh runtime for one generation (all per-run state lives there, never in the description)."""
        raise NotImplementedError

    def validate(self, info: RunInfo, stack: tuple["Guider", ...]) -> None:
        """Raise ValueError when this guider cannot serve the run (wrong model, missing base, ...); `stack` is the
        whole chain, bottom first. The default accepts every run."""
