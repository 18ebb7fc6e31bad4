"""Cached token pruning (FastVAR) for every scale-wise family: the selection and restore logic in one place.

FastVAR (Guo et al., "FastVAR: Linear Visual Autoregressive Modeling via Cached Token Pruning", ICCV 2025,
arXiv 2503.23367; code csguoh/FastVAR, `fastvar_utils.py` `masked_previous_scale_cache` and `fastvar_basic.py`
of its HART and Infinity ports) forwards only the *pivotal tokens* of the large scales through each residual
branch of each block: the tokens whose stream vector is farthest (squared L2) from the mean over the scale's
tokens, selected afresh before every branch. The branch output of every pruned position is taken from the cache:
the same branch's output at the last unpruned scale (the *cache scale*, 36x36 in its HART code), area-resized
(F.interpolate mode "area") to the current side. The residual stream itself stays full size, so the head gives
logits for every position: guiders, token draws and editing see full-size logits. Attention keys and values
exist for the kept tokens only (FastVAR caches the merged tokens' k/v), so later scales attend to those.

A family's block calls `PrunedScale.branch` around each residual branch (`models/var.py`, `models/switti.py`,
`models/infinity.py`, whose cross-attention to the text is a third branch):

    x = x + prune.branch(layer, "attn", x, lambda y, idx: attention_branch(y, idx), cached=True)
    x = x + prune.branch(layer, "ffn", x, lambda y, idx: ffn_branch(y))

`idx` is int64 [R, m] (the kept positions, ascending) or None (all positions, in the order of x). The family
gathers what is per position itself (Switti's RoPE rotations; `value_weights` for SoftCFG through
`PrunedScale.value_weights`). A family that does not call it is simply never pruned.

Where the pack differs from FastVAR's code, and why:
- Scales are named from the end of the schedule (`TokenPruning.keep`, `skip_last`), not by side (48, 64), so one
  policy fits every schedule; on Switti 1024 (HART's schedule) the preset "fastvar" is HART's setting exactly.
- Every block is pruned, as in its HART code; its Infinity code spares blocks 0-2 and 28-31 (of 32).
- Its Infinity code skips the last two scales outright (no tokens, nothing added to the latent). Here a skipped
  scale is pruned to 0 kept tokens: every branch output comes from the cache, so the head still gives logits,
  tokens are drawn and added, and guiders and editing work on it; its cost is the head's, not the blocks'.
- The selection is per row: cond and uncond rows of an image may keep different tokens (FastVAR selects per row
  as well). Kept positions are sorted ascending (FastVAR keeps them in score order: the same set).
- With editing, the regenerated tokens rank before all others (`prefer`), so the kept budget goes to the edit
  region first; FastVAR has no editing.
- A non-autoregressive Switti run that guides a pruned scale but not the cache scale has no unconditional cache:
  its uncond rows restore from the conditional rows' cache.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .resize import area_resize


@dataclass(frozen=True)
class TokenPruning:
    """A pruning policy (immutable): keep ratios for the last scales, coarse to fine.

    keep: ratios in (0, 1] of the `len(keep)` scales before the skipped ones (e.g. (0.5, 0.25): the second-to-last
    scale keeps half of its tokens, the last a quarter); skip_last: the last n scales keep none (all restored from
    the cache). Ratio r keeps m = n - floor(n (1 - r)) of a scale's n tokens (FastVAR's `n - int(n * ratio)`), at
    least 1. Raises ValueError for a ratio that is not a number in (0, 1] (a keep that is not a sequence of
    numbers included) or a skip_last that is not an integer >= 0 (bool, NaN and strings refused)."""

    keep: tuple[float, ...] = ()
    skip_last: int = 0

    def __post_init__(self):
        if isinstance(self.keep, (str, bytes)) or not hasattr(self.keep, "__iter__"):
            raise ValueError(f"keep must be a sequence of ratios in (0, 1], got {self.keep!r}")
        for r in self.keep:
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not (math.isfinite(r) and 0.0 < r <= 1.0):
                raise ValueError(f"keep ratio {r!r} is not a number in (0, 1] (1 = no pruning; skip a scale with "
                                 "skip_last)")
        object.__setattr__(self, "keep", tuple(float(r) for r in self.keep))
        n = self.skip_last
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or int(n) != n or n < 0:
            raise ValueError(f"skip_last must be a whole number >= 0 (the last scales to skip), got {n!r}")

    def ratios(self, num_scales: int) -> tuple[float, ...]:
        """Keep ratio of every scale (1.0 = exact, 0.0 = skipped). Raises ValueError when the policy leaves no
        unpruned scale to cache from (the pruned and skipped scales must be fewer than `num_scales`)."""
        tail = (*self.keep, *(0.0,) * int(self.skip_last))
        if len(tail) >= num_scales:
            raise ValueError(f"token pruning: {len(self.keep)} keep ratios + skip_last {self.skip_last} leave no "
                             f"unpruned scale of the {num_scales} to cache from: prune fewer scales")
        return (1.0,) * (num_scales - len(tail)) + tail

    def label(self) -> str:
        """Short description, e.g. 'keep 0.5, 0.25' or 'keep 0.6, 0.5, skip 2'."""
        parts = [f"keep {', '.join(f'{r:g}' for r in self.keep)}"] if self.keep else []
        return ", ".join(parts + ([f"skip {self.skip_last}"] if self.skip_last else [])) or "exact"


# FastVAR's settings (csguoh/FastVAR): HART `compute_merge` prunes 50 % of 48x48 and 75 % of 64x64 (keep 0.5,
# 0.25); Infinity prunes 40 % of 32x32 and 50 % of 40x40 and skips 48x48 and 64x64.
PRESETS = {
    "fastvar": TokenPruning((0.5, 0.25)),
    "fastvar-infinity": TokenPruning((0.6, 0.5), skip_last=2),
}


def kept_count(n: int, ratio: float) -> int:
    """Tokens kept of n at keep ratio `ratio`: n for 1, 0 for 0, else n - floor(n (1 - ratio)) and at least 1."""
    if ratio >= 1.0:
        return n
    if ratio <= 0.0:
        return 0
    return max(1, n - int(n * (1.0 - ratio) + 1e-9))


def pivotal_tokens(x: torch.Tensor, m: int, prefer: torch.Tensor | None = None) -> torch.Tensor:
    """The m pivotal positions of each row: x [R, n, C] -> int64 [R, m], ascending. Score = ||x_i - mean_j x_j||^2
    in float32 (FastVAR's `mse_difference`), highest kept; `prefer` (bool [R, n]) ranks its positions first."""
    xf = x.float()
    score = (xf - xf.mean(dim=1, keepdim=True)).pow(2).sum(-1)
    if prefer is not None:
        score = torch.where(prefer, score + score.amax(dim=1, keepdim=True) + 1.0, score)
    return score.topk(m, dim=1).indices.sort(dim=1).values


def _rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """The first `rows` rows of t (cond rows come first), repeated when t has fewer (see the module notes)."""
    if t.shape[0] >= rows:
        return t[:rows]
    return torch.cat([t] * (rows // t.shape[0] + 1))[:rows]


class PruningRun:
    """One generation's pruning state: the ratio of each scale, the cache scale's branch outputs and, per layer,
    the positions each scale left in the attention cache. grids: (h, w) token grid of every scale, coarse to fine;
    offsets: first flattened position of every scale (L at the end is not needed)."""

    def __init__(self, policy: TokenPruning, grids, offsets):
        self.grids, self.offsets = [tuple(g) for g in grids], list(offsets)
        self.ratios = policy.ratios(len(self.grids))
        pruned = len(policy.keep) + int(policy.skip_last)  # the scales the policy names (ratio 1 included)
        self.cache_scale = len(self.grids) - pruned - 1 if pruned else None
        self.store: dict[tuple[int, str], torch.Tensor] = {}
        self.kept: dict[int, dict[int, torch.Tensor]] = {}  # scale -> layer -> kept positions [R, m]
        self.preferred: dict[int, torch.Tensor] = {}

    @classmethod
    def for_model(cls, policy: TokenPruning, model) -> "PruningRun":
        """The run for a model: the token grids (h, w) and offsets of its config's schedule (`config.schedule`,
        models/schedule.py: every family's)."""
        schedule = model.config.schedule
        return cls(policy, list(schedule.shapes), schedule.offsets)

    def prefer(self, k: int, positions: torch.Tensor) -> None:
        """Positions bool [B, n_k] kept before all others at scale k (an edit's regenerated tokens)."""
        self.preferred[k] = positions.flatten(1).to(torch.bool)

    def scale(self, k: int) -> "PrunedScale | None":
        """The hooks of scale k from the cache scale on (the last scale before those the policy names), None
        before it (exact, no hooks)."""
        if self.cache_scale is None or k < self.cache_scale:
            return None
        return PrunedScale(self, k)

    def memory_estimate(self, rows: int, width: int, depth: int, branches: int, itemsize: int) -> int:
        """Bytes of the cache scale's branch outputs: depth x branches x rows x n_c x width x itemsize."""
        if self.cache_scale is None:
            return 0
        h, w = self.grids[self.cache_scale]
        return depth * branches * rows * h * w * width * itemsize


class PrunedScale:
    """The pruning hooks of one scale (from `PruningRun.scale`): `branch` around each residual branch, `count`
    (positions this scale adds to the attention cache) and `value_weights` (SoftCFG's multipliers gathered to the
    cached positions)."""

    def __init__(self, run: PruningRun, k: int):
        self.run, self.k = run, k
        h, w = run.grids[k]
        self.n = h * w
        self.recording = k == run.cache_scale
        self.count = self.n if self.recording else kept_count(self.n, run.ratios[k])

    def branch(self, layer: int, name: str, x: torch.Tensor,
               fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], cached: bool = False):
        """The branch output [R, n, C] for the stream x [R, n, C]: fn(x_kept [R, m, C], idx [R, m] or None) on the
        pivotal tokens, the cache elsewhere. On the cache scale (and where m = n) fn runs on x unchanged (same
        arithmetic as without pruning); the cache scale's output is stored. `cached`: this branch writes the
        attention cache (its kept positions are recorded for `value_weights`)."""
        run, rows = self.run, x.shape[0]
        if self.recording or self.count == self.n:
            out = fn(x, None)
            if self.recording:
                run.store[(layer, name)] = out
            return out
        idx = None
        if self.count:
            prefer = run.preferred.get(self.k)
            idx = pivotal_tokens(x, self.count, None if prefer is None else _rows(prefer, rows))
        if cached:
            run.kept.setdefault(self.k, {})[layer] = idx if idx is not None else x.new_zeros(rows, 0, dtype=torch.long)
        cache = _rows(run.store[(layer, name)], rows)
        (ch, cw), (h, w) = run.grids[run.cache_scale], run.grids[self.k]
        full = area_resize(cache.transpose(1, 2).reshape(rows, -1, ch, cw), (h, w)).flatten(2).transpose(1, 2)
        if idx is None:
            return full.contiguous()
        index = idx[..., None].expand(-1, -1, x.shape[-1])
        kept = fn(torch.gather(x, 1, index), idx)
        return full.scatter(1, index, kept.to(full.dtype))

    def value_weights(self, layer: int, weights: torch.Tensor | None, idx: torch.Tensor | None):
        """SoftCFG's per-position multipliers [R, cached + n_k] (full positions, `ScalewiseModel.forward_scale`)
        gathered to what layer `layer`'s attention cache holds: [R, cached' + m]; None stays None."""
        if weights is None:
            return None
        run, rows = self.run, weights.shape[0]
        if idx is None and not any(j in run.kept for j in range(self.k)):
            return weights  # nothing pruned so far: the cache holds every position
        parts = []
        for j in range(self.k + 1):
            start = run.offsets[j]
            kept = idx if j == self.k else run.kept.get(j, {}).get(layer)
            if kept is None:
                h, w = run.grids[j]
                parts.append(torch.arange(start, start + h * w, device=weights.device).expand(rows, -1))
            else:
                parts.append(_rows(kept, rows) + start)
        return torch.gather(weights, 1, torch.cat(parts, dim=1))


class PrunedModel:
    """A scale-wise model with a pruning policy attached: every contract member is the model's, except `start`,
    whose state carries a `PruningRun` that the family's `forward_scale` hands to its blocks. The model itself is
    unchanged (ComfyUI shares it between the patched and the unpatched MODEL output)."""

    def __init__(self, model, policy: TokenPruning):
        policy.ratios(len(model.scale_shapes))  # refuse a policy that leaves no scale to cache from, now
        self.model, self.policy = model, policy

    def __getattr__(self, name):
        return getattr(self.model, name)

    def start(self, prepared, with_uncond: bool):
        """The model's `start`, with `state.pruning` set to a fresh `PruningRun`."""
        state = self.model.start(prepared, with_uncond)
        state.pruning = PruningRun.for_model(self.policy, self.model)
        return state

    def memory_estimate(self, batch: int, guided: bool = True) -> int:
        """The model's estimate plus the cache scale's branch outputs (3 branches per block counted)."""
        cfg = self.model.config
        extra = PruningRun.for_model(self.policy, self.model).memory_estimate(
            batch * (2 if guided else 1), cfg.width, cfg.depth, 3, torch.finfo(self.model.dtype).bits // 8)
        return self.model.memory_estimate(batch, guided) + extra


def with_pruning(model, policy: TokenPruning | None):
    """`model` driven with `policy` (a `PrunedModel`), or the model itself for None or a policy naming no scale.
    `policy` may be a `TokenPruning` or the name of a preset (`PRESETS`); TypeError for anything else, ValueError for
    an unknown preset name (the presets named)."""
    if isinstance(policy, str):
        if policy not in PRESETS:
            raise ValueError(f"token pruning: no preset named {policy!r}; the presets are "
                             f"{', '.join(repr(p) for p in PRESETS)} (or pass a TokenPruning)")
        policy = PRESETS[policy]
    if policy is not None and not isinstance(policy, TokenPruning):
        raise TypeError(f"token pruning: the policy must be a TokenPruning, a preset name or None, got "
                        f"{type(policy).__name__}")
    if policy is None or not (policy.keep or policy.skip_last):
        return model
    return PrunedModel(model, policy)
