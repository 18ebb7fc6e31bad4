"""IGG (Information-Grounding Guidance): each token's nudge l_c - l_u is replaced by an attention-
weighted average of the nudges of the scale, A = softmax(D D^T / sqrt(V)), on raw logits in fp32.

Paper: Nguyen et al., "Not All Tokens are Guided Equal: Improving Guidance in Visual Autoregressive Models",
arXiv 2509.23876; official code: dnngky/infoground-guidance, models/var.py (the mixed scheme
l_u + a_k D + b_k A D when stacked over CFG).

Per scale k and image: D = l_c - l_u float32 [N, V] (N = n_k tokens, V codes), A = softmax_rows(D D^T / sqrt(V))
[N, N], grounded nudge G = A D [N, V]; the guided logits are l_u + b_k G, b_k = 1 + w r_k (the paper's
p~ = p_u + gamma_k f_k p->, with f_k = A, p-> = D; the official code feeds D as query, key and value of one
single-head scaled-dot-product attention). At k = 0 (N = 1) A = [1] and IGG equals CFG."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache, partial

import torch

from .base import Guider, GuiderRuntime, RunInfo, Term, scale_shape
from .schedules import SCHEDULE_NAMES, ScaleWindow, check_finite, schedule_value

OPERANDS = ("raw_logits", "centered")
WINDOWS = ("global", "auto")  # the named windows; an int side is the third kind


def window_side(window, side) -> int | None:
    """Side of the square neighbourhood, or None for global attention over the scale. window: "global", "auto"
    (ceil(sqrt(h w)): a square neighbourhood of as many tokens as the map; the map's side pn_k when square) or an
    int side >= 1; side: pn_k, or the map's (h, w)."""
    if window == "global":
        return None
    if window == "auto":
        h, w = scale_shape(side)
        return math.ceil(math.sqrt(h * w))
    return int(window)


def local_mask(side, window: int, device) -> torch.Tensor:
    """bool [n, n] for a map of side x side (n = side^2) or (h, w) (n = h w) tokens, row-major: token j lies within
    the window (Chebyshev radius window // 2) around token i; cached per (shape, window, device)."""
    return _local_mask(scale_shape(side), window, torch.device(device))


@lru_cache(maxsize=16)  # built once per shape and device, not once per image and scale
def _local_mask(shape: tuple[int, int], window: int, device: torch.device) -> torch.Tensor:
    """[N, N] bool: token j lies within the window (Chebyshev radius window // 2) around token i."""
    height, width = shape
    n = height * width
    r, c = torch.div(torch.arange(n, device=device), width, rounding_mode="floor"), \
        torch.arange(n, device=device) % width
    radius = window // 2
    return ((r[:, None] - r[None, :]).abs() <= radius) & ((c[:, None] - c[None, :]).abs() <= radius)


def grounded_nudge(delta: torch.Tensor, side, window: int | None = None,
                   operand: str = "raw_logits") -> torch.Tensor:
    """A @ delta for delta [B, N, V]; one image at a time so memory stays at one [N, N] matrix.

    delta: l_c - l_u, float [B, N, V] with N = side^2 (side: pn_k; or side = the map's (h, w), N = h w; row-major
    token map); computed in float32, returned float32
    [B, N, V]. A = softmax_rows(K K^T / sqrt(V)) with K = delta ("raw_logits", the official choice) or delta minus
    its per-token mean over V ("centered"); with a `window` side below 2 max(h, w) - 1 the scores outside the
    Chebyshev neighbourhood of radius window // 2 are -inf. Formula: IGG paper (arXiv 2509.23876), official
    dnngky/infoground-guidance models/var.py."""
    delta = delta.float()
    keys = delta - delta.mean(-1, keepdim=True) if operand == "centered" else delta
    reach = max(scale_shape(side)) * 2 - 1  # a window this wide covers the whole map from every token
    mask = local_mask(side, window, delta.device) if window is not None and window < reach else None
    out = torch.empty_like(delta)
    for i in range(delta.shape[0]):
        scores = keys[i] @ keys[i].T / math.sqrt(delta.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out[i] = scores.softmax(-1) @ delta[i]
    return out


@dataclass(frozen=True)
class IGG(Guider):
    """Adds (1 + scale * s(k)) * A (l_c - l_u) to l_u. Stacked over a CFG guider both terms add
    (the official mixed scheme l_u + a_k D + b_k A D). `window`: "global" (paper default), "auto"
    (square window of side ceil(sqrt(h_k w_k))) or an integer side; side 1 is exactly CFG.

    `operand`: "raw_logits" (official) or "centered" (keys/queries centred per token over V, an option of ours).
    The window is `start_scale` <= k < `end_scale` (0 = to the last scale; as CFG's). Raises ValueError for a non-finite `scale` or one outside [0, 30] (the node's widget range), `power` outside [0.01, 100], or an
    unknown `schedule`, `operand` or `window`."""

    scale: float = 1.85
    schedule: str = "linear"
    window: str | int = "global"
    operand: str = "raw_logits"
    start_scale: int = 0
    end_scale: int = 0
    power: float = 1.0
    base: Guider | None = None
    kind = "igg"
    strength_field = "scale"
    strength_range = (0.0, 30.0)  # the IGG node's scale widget, as CFG's cfg

    def __post_init__(self):
        check_finite("igg scale", self.scale, *self.strength_range)
        check_finite("igg power", self.power, 0.01, 100.0)
        if self.schedule not in SCHEDULE_NAMES:
            raise ValueError(f"schedule must be one of {SCHEDULE_NAMES}, got {self.schedule!r}")
        if self.operand not in OPERANDS:
            raise ValueError(f"IGG operand must be one of {OPERANDS}, got {self.operand!r}")
        if not (self.window in WINDOWS or (isinstance(self.window, int) and self.window >= 1)):
            raise ValueError(f"IGG window must be 'global', 'auto' or a side >= 1, got {self.window!r}")

    def label(self):
        extra = "" if self.window == "global" else f" window {self.window}"
        return f"IGG {self.scale:g} {self.schedule}{extra}" + ScaleWindow(self.start_scale, self.end_scale).label()

    def runtime(self, info: RunInfo) -> GuiderRuntime:
        return _IGGRuntime(self, info)


class _IGGRuntime(GuiderRuntime):
    def __init__(self, spec: IGG, info: RunInfo):
        self.spec, self.info = spec, info

    def term(self, k):
        spec, K = self.spec, self.info.num_scales
        if not ScaleWindow(spec.start_scale, spec.end_scale).contains(k, K):
            return None
        weight = 1.0 + spec.scale * schedule_value(spec.schedule, k, K, spec.power)
        shape = self.info.scale_shapes[k]
        side = shape[0] if shape[0] == shape[1] else shape
        window = window_side(spec.window, side)
        if shape == (1, 1) or window == 1:  # A is the identity: plain CFG arithmetic
            return Term(weight)
        return Term(weight, partial(grounded_nudge, side=side, window=window, operand=spec.operand))
