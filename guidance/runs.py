"""Comparisons and strength sweeps: one generation sampled with several guiders, a row each, on the same seeds, and
scored by the IGG paper's evenness E and divergence D (guidance/metrics.py; Nguyen et al. 2025, arXiv 2509.23876);
a sweep adds the E/D balance point (guidance/balance.py). What Compare Guiders, Guidance Sweep and
tools/guidance_sweep.py run. Plain torch, no ComfyUI."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .balance import Balance, balance_point
from .base import Guider, RunInfo
from .editing import check_object_mask, square_mask
from .metrics import divergence, evenness, nanmean
from .request import Generation
from .sampler import SampleOutput, ScaleProgress, sample
from .stack import GuidanceRun
from .trace import GuidanceTrace

# Foreground masks for D (1 = object): a MASK tensor (1, one per column or one per image), or a function of all the
# comparison's images float [R*C, 3, S, S] giving masks [R*C, S, S] or None (e.g. a judge's segmentation).
Masks = torch.Tensor | Callable[[torch.Tensor], torch.Tensor | None] | None


@dataclass
class Row:
    """One guider's row: its images float32 [C, 3, S, S] in [0, 1] (C = the generation's batch), the trace, each
    image's token-weighted mean evenness E float32 [C] and, with masks, its mean divergence D float32 [C] (NaN where
    undefined: an unguided scale set, a mask without background or object)."""

    guider: Guider | None
    images: torch.Tensor = field(repr=False)
    trace: GuidanceTrace = field(repr=False)
    evenness: torch.Tensor = field(repr=False)
    divergence: torch.Tensor | None = field(default=None, repr=False)

    @property
    def mean_evenness(self) -> float:
        """E over the row's images, NaN ignored (NaN when none is defined)."""
        return nanmean(self.evenness)

    @property
    def mean_divergence(self) -> float | None:
        """D over the row's images, NaN ignored; None without masks."""
        return None if self.divergence is None else nanmean(self.divergence)


@dataclass
class Comparison:
    """What `compare` returns: the rows in guider order and the foreground masks D used (float [R*C, S, S], None
    without)."""

    rows: list[Row]
    masks: torch.Tensor | None = field(default=None, repr=False)

    @property
    def images(self) -> torch.Tensor:
        """Every image, row by row: float32 [R*C, 3, S, S]."""
        return torch.cat([row.images for row in self.rows])

    @property
    def traces(self) -> list[GuidanceTrace]:
        """Each row's guidance trace."""
        return [row.trace for row in self.rows]

    @property
    def evenness(self) -> list[float]:
        """Each row's mean E (NaN where undefined)."""
        return [row.mean_evenness for row in self.rows]

    @property
    def divergence(self) -> list[float] | None:
        """Each row's mean D (NaN where undefined); None without masks."""
        return None if self.masks is None else [row.mean_divergence for row in self.rows]


@dataclass
class Sweep(Comparison):
    """What `sweep` returns: a comparison whose row i is the guider at `strengths[i]`, and the E/D balance point
    (None without masks, or when D is undefined everywhere)."""

    strengths: tuple[float, ...] = ()
    balance: Balance | None = None


def check_guiders(model, guiders: Sequence[Guider | None], batch: int, names: Sequence[str]) -> None:
    """Validate every guider stack against the model before any row is sampled (what `sample` checks when it
    starts, guidance/stack.py). Raises ValueError '<name> (<description>): <reason>'."""
    info = RunInfo.of(model, batch)
    for name, guider in zip(names, guiders):
        try:
            GuidanceRun(guider, info)
        except ValueError as e:
            raise ValueError(f"{name} ({guider.describe()}): {e}") from None


def row_masks(mask: torch.Tensor, rows: int, columns: int, size) -> torch.Tensor:
    """A foreground MASK (1 = object; any layout core's mask nodes give, resampling overshoot clamped: `editing.
    check_object_mask`) for R rows of C images of S x S px (size: S, or the images' (H, W)) -> float [R*C, H, W]:
    one mask for every image, one per column (the same seed in every row) or one per image, row by row. A mask of
    the images' aspect at another size is resized (`editing.square_mask`). Raises ValueError naming `mask` for
    another shape or count."""
    mask = square_mask(check_object_mask(mask), size)
    count = mask.shape[0]
    if count == 1:
        return mask.expand(rows * columns, -1, -1)
    if count == columns:
        return mask.repeat(rows, 1, 1)
    if count == rows * columns:
        return mask
    raise ValueError(f"mask: {count} masks; give 1, one per column ({columns}) or one per image ({rows * columns})")


def compare(model, guiders: Sequence[Guider | None], generation: Generation, *, masks: Masks = None,
            names: Sequence[str] | None = None, sampler: Callable[..., SampleOutput] = sample,
            callback: Callable[[int, ScaleProgress], None] | None = None,
            ready: Callable[[], None] | None = None) -> Comparison:
    """Sample `generation` once per guider (None = unguided), every row with the same seeds, so column i is image i
    of the seed in every row; score each row by E and, with `masks`, by D (guidance/metrics.py).

    model: a ScalewiseModel. masks: see `Masks`; a function receives every image once, after the last row; None with
    an edit that has a mask (`generation.edit`): the region each row regenerated (`GuidanceTrace.edit_mask`, as
    `metrics.trace_scores` and the heat map take it). names:
    how errors name the guiders (default 'guiders[i]'). sampler: what samples one row, called as
    `sampler(model, guider, generation, trace=True, callback=...)` (default `guidance.sample`; the nodes pass
    theirs, which names their batch input on out of memory). callback(row, progress) after each scale of each row.
    ready(): called once when every guider has passed its check, before the first row (the nodes load the model).
    Raises ValueError naming the guider when a stack cannot serve the model (before any sampling), what `sample`
    raises, and what `row_masks` raises for a bad mask (after sampling)."""
    names = list(names) if names is not None else [f"guiders[{i}]" for i in range(len(guiders))]
    batch = generation.batch_size
    if batch is None:  # one image per conditioning entry
        batch = model.batch_size(model.prepare_condition(generation.conditioning, None, first=generation.batch_index))
    check_guiders(model, guiders, batch, names)
    if ready is not None:
        ready()
    outputs = []
    for row, guider in enumerate(guiders):
        on_scale = None if callback is None else (lambda progress, row=row: callback(row, progress))
        outputs.append(sampler(model, guider, generation, trace=True, callback=on_scale))
    images = [out.images.cpu() for out in outputs]
    columns, size = images[0].shape[0], tuple(images[0].shape[-2:])
    found = masks(torch.cat(images)) if callable(masks) else \
        None if masks is None else row_masks(masks, len(guiders), columns, size)
    if masks is None and all(out.trace.edit_mask is not None for out in outputs):
        found = torch.cat([out.trace.edit_mask for out in outputs])  # an edit's regenerated region, as trace_scores
    rows = []
    for i, (guider, out, image) in enumerate(zip(guiders, outputs, images)):
        div = None if found is None else divergence(out.trace, found[i * columns:(i + 1) * columns])["mean"]
        rows.append(Row(guider, image, out.trace, evenness(out.trace)["mean"], div))
    return Comparison(rows, found)


def sweep(model, guider: Guider, strengths: Sequence[float], generation: Generation, *, masks: Masks = None,
          sampler: Callable[..., SampleOutput] = sample, callback: Callable[[int, ScaleProgress], None] | None = None,
          ready: Callable[[], None] | None = None) -> Sweep:
    """`compare` of `guider.with_strength(s)` for each strength s (the top guider's strength: CFG cfg, IGG scale,
    SoftCFG strength, SSG beta), rows in the order given, and the E/D balance point (`balance.balance_point`) when masks
    give D. Raises ValueError 'strengths: <s> for <guider>: <reason>' for a strength the guider refuses, and what
    `compare` raises (errors name the guider 'guider')."""
    guiders = []
    for value in strengths:
        try:
            guiders.append(guider.with_strength(value))
        except ValueError as e:
            raise ValueError(f"strengths: {value:g} for {guider.label()}: {e}") from None
    result = compare(model, guiders, generation, masks=masks, names=["guider"] * len(guiders), sampler=sampler,
                     callback=callback, ready=ready)
    div = result.divergence
    balance = balance_point(strengths, result.evenness, div) if div is not None else None
    return Sweep(result.rows, result.masks, tuple(float(s) for s in strengths), balance)
