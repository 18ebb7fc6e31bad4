"""Guidance-dynamics metrics from a GuidanceTrace, after the IGG paper (Nguyen et al., arXiv 2509.23876): Pielou
evenness of the per-token guidance magnitude, E_k = -sum q_n ln q_n / ln N_k with q = m / sum m (token-weighted
mean over the scales with N_k > 1), and the JS distance between its distribution and a background-resampled
reference. The paper does not state how a token's [V] nudge becomes one magnitude; we use the official heat-map
reduction m = max_v (nudge)^+. Plain torch; computed in float64 on the CPU (traces are small)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .editing import as_mask_batch
from .trace import GuidanceTrace

_LN2 = math.log(2.0)


def _flat(m: torch.Tensor) -> torch.Tensor:
    return m.detach().to("cpu", torch.float64).flatten(1)


def _xlogy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x ln y with the convention 0 ln 0 = 0."""
    return torch.where(x > 0, x * torch.log(torch.where(x > 0, y, torch.ones_like(y))), torch.zeros_like(x))


def evenness_per_scale(m: torch.Tensor) -> torch.Tensor:
    """Pielou index of one scale's magnitudes [B, h, w] -> [B]; NaN where N == 1 or sum m == 0."""
    flat = _flat(m)
    n = flat.shape[1]
    total = flat.sum(1)
    if n <= 1:
        return torch.full((flat.shape[0],), math.nan, dtype=torch.float32)
    q = flat / total.clamp_min(1e-300)[:, None]
    pielou = (-_xlogy(q, q).sum(1) / math.log(n)).clamp(0.0, 1.0)
    return pielou.masked_fill(~(total > 0), math.nan).float()


def _token_weighted_mean(per_scale: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Mean over scales weighted by N_k, skipping NaN scales and N_k == 1: [B, K] -> [B] (NaN if none)."""
    weights = torch.tensor(sizes, dtype=torch.float64).expand_as(per_scale)
    valid = ~torch.isnan(per_scale) & (weights > 1)
    weights = weights * valid
    total = weights.sum(1)
    mean = (per_scale.double().nan_to_num() * weights).sum(1) / total.clamp_min(1.0)
    return mean.masked_fill(total == 0, math.nan).float()


def _scale_sizes(trace: GuidanceTrace) -> list[int]:
    if not trace.magnitude:
        raise ValueError("the guidance trace holds no magnitude maps")
    return [m.shape[1] * m.shape[2] for m in trace.magnitude]


def evenness(trace: GuidanceTrace) -> dict:
    """{"per_scale": [B, K], "mean": [B]} (token-weighted over scales with N_k > 1); float32 values in [0, 1] or
    NaN (1 = guidance spread evenly over the tokens). Raises ValueError when the trace holds no magnitude maps."""
    sizes = _scale_sizes(trace)
    per_scale = torch.stack([evenness_per_scale(m) for m in trace.magnitude], 1)
    return {"per_scale": per_scale, "mean": _token_weighted_mean(per_scale, sizes)}


def foreground_mask(mask: torch.Tensor, trace: GuidanceTrace) -> torch.Tensor:
    """A foreground MASK (1 = object) in any layout ComfyUI's mask nodes accept ([B, H, W], [H, W], [B, 1, H, W],
    [B, H, W, 1]: guidance.editing.as_mask_batch) checked against the trace, as float64 [B, H, W] (batch 1 is
    expanded to the trace's B). Raises ValueError for another layout, a size other than the trace's image size
    H x W (`trace.image_shape`), or a batch that is neither 1 nor B."""
    mask = as_mask_batch(torch.as_tensor(mask), "mask").detach().to("cpu", torch.float64)
    height, width = trace.image_shape
    if tuple(mask.shape[1:]) != (height, width):
        raise ValueError(f"mask size {mask.shape[1]}x{mask.shape[2]} does not match the image size "
                         f"{height}x{width} of the trace")
    batch = trace.batch_size
    if mask.shape[0] == 1:
        return mask.expand(batch, -1, -1)
    if mask.shape[0] != batch:
        raise ValueError(f"mask batch {mask.shape[0]} does not match the trace batch {batch}")
    return mask


def _js_distance(q: torch.Tensor, r: torch.Tensor) -> float:
    """sqrt(JSD) in bits between two distributions over the same tokens, in [0, 1]."""
    mid = (q + r) / 2
    jsd = 0.5 * (_xlogy(q, q / mid).sum() + _xlogy(r, r / mid).sum()) / _LN2
    return math.sqrt(min(max(float(jsd), 0.0), 1.0))


def _resampled_reference(flat: torch.Tensor, foreground: torch.Tensor, draws: int, generator: torch.Generator):
    """Average over draws of r = m~/sum m~, where m~ keeps the background magnitudes and replaces every
    foreground magnitude by one drawn with replacement from the background: guidance as it would be
    if the object were guided like its surroundings. A draw of all zeros counts as uniform."""
    background = flat[~foreground]
    picked = flat.expand(draws, -1).clone()
    fg_index = foreground.nonzero()[:, 0]
    picked[:, fg_index] = background[torch.randint(background.numel(), (draws, fg_index.numel()),
                                                   generator=generator)]
    sums = picked.sum(1, keepdim=True)
    n = flat.numel()
    r = torch.where(sums > 0, picked / sums.clamp_min(1e-300), torch.full_like(picked, 1.0 / n))
    return r.mean(0)


def divergence(trace: GuidanceTrace, mask: torch.Tensor, *, draws: int = 16, seed: int = 0) -> dict:
    """JS distance of each scale's magnitude distribution to a background-resampled reference (our
    reconstruction: the paper's algorithm text is not public; the paper masked its objects with a YOLO11
    segmenter): 0 when the object is guided like the background, larger when guidance singles it out.

    mask: float [B, H, W] or [H, W] at image resolution, 1 = foreground; batch 1 broadcasts. A scale is
    NaN when its background is empty or covers every token, or when sum m == 0. Returns
    {"per_scale": [B, K], "mean": [B]} with values in [0, 1]. Each (image, scale) pair reseeds its own
    generator, so an image's values do not depend on the rest of the batch.

    Raises ValueError for draws < 1, an empty trace or a mask that `foreground_mask` refuses.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    sizes = _scale_sizes(trace)
    mask = foreground_mask(mask, trace)
    per_scale = torch.full((trace.batch_size, len(sizes)), math.nan, dtype=torch.float32)
    generator = torch.Generator()
    for k, magnitude in enumerate(trace.magnitude):
        h, w = magnitude.shape[1:]
        foreground = F.interpolate(mask[:, None], size=(h, w), mode="area")[:, 0].flatten(1) >= 0.5
        flat = _flat(magnitude)
        for b in range(flat.shape[0]):
            n_background = int((~foreground[b]).sum())
            total = flat[b].sum()
            if n_background in (0, flat.shape[1]) or not total > 0:
                continue
            generator.manual_seed(seed * 1_000_003 + k)
            reference = _resampled_reference(flat[b], foreground[b], draws, generator)
            per_scale[b, k] = _js_distance(flat[b] / total, reference)
    return {"per_scale": per_scale, "mean": _token_weighted_mean(per_scale, sizes)}


def nanmean(values: torch.Tensor) -> float:
    """Mean of the values that are not NaN (per-image E or D of a batch, any shape and float dtype) as a Python
    float; NaN when none is left (E or D undefined for every image: an unguided row, a mask without background)."""
    kept = values[~torch.isnan(values)]
    return float(kept.mean()) if kept.numel() else math.nan


def _json_floats(values: torch.Tensor) -> list:
    """Nested lists of floats with NaN -> None."""
    return [None if math.isnan(v) else float(v) for v in values.tolist()] if values.ndim == 1 \
        else [_json_floats(row) for row in values]


def trace_scores(trace: GuidanceTrace, mask: torch.Tensor | None = None, *, draws: int = 16,
                 seed: int = 0) -> tuple[dict, dict | None]:
    """(evenness(trace), divergence(trace, mask) or None): the divergence uses `mask`, else the edit's regenerated
    region when the trace comes from an edit, else is None. Computed once and handed to `summary` and the heat
    map's `render_heatmap`. Raises ValueError as `evenness` and `divergence` do."""
    mask = trace.edit_mask if mask is None else mask
    return evenness(trace), (divergence(trace, mask, draws=draws, seed=seed) if mask is not None else None)


def summary(trace: GuidanceTrace, mask: torch.Tensor | None = None, *, draws: int = 16, seed: int = 0,
            scores: tuple[dict, dict | None] | None = None) -> dict:
    """JSON-friendly metrics: per image the aggregate and per-scale values (NaN -> None). `scores`: what
    `trace_scores(trace, mask, draws=draws, seed=seed)` returned, else computed here. Raises ValueError as
    `evenness` and `divergence` do."""
    even, div = trace_scores(trace, mask, draws=draws, seed=seed) if scores is None else scores
    result = {
        "guider": trace.guider,
        "image_size": trace.image_size if isinstance(trace.image_size, int) else list(trace.image_size),
        "patch_nums": [p if isinstance(p, int) else list(p) for p in trace.patch_nums],
        "guided": [bool(g) for g in trace.uncond_ran],
        "evenness": {"mean": _json_floats(even["mean"]), "per_scale": _json_floats(even["per_scale"])},
        "divergence": None,
    }
    if div is not None:
        result["divergence"] = {"mean": _json_floats(div["mean"]), "per_scale": _json_floats(div["per_scale"]),
                                "draws": draws, "seed": seed}
    return result
