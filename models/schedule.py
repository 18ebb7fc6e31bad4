"""The scale schedule of a next-scale prediction model and everything that follows from it, written once for both
families (VAR, Switti) and their loaders.

The schedule is the side pn_k of each scale's token map, coarse to fine, or its (h_k, w_k) for a non-square map
(Infinity's aspect-ratio templates, models/infinity.py). The flattened token pyramid puts the n_k = h_k w_k
(pn_k^2) tokens of scale k (row-major) after those of scales 0..k-1, so scale k holds the positions
offsets[k] .. offsets[k + 1] - 1 and the sequence length is L = sum_k n_k. Attention over the pyramid is
block-causal (a scale sees itself and the coarser scales: VAR, Switti-AR) or block-diagonal (a scale sees only
itself: Switti). Sources: Tian et al., "Visual Autoregressive Modeling", NeurIPS 2024 (arXiv 2404.02905), Sec. 3.2;
the official FoundationVision/VAR models/var.py (`patch_nums`, `L`, `lvl_1L`, `attn_bias_for_masking`) and
yandex-research/switti models/switti.py (the same buffers; block-diagonal unless `use_ar`).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import cached_property

import torch

# The trained schedules by image side in px (the official `patch_nums`): VAR 256 and 512 px, Switti 512 px (the
# same as VAR's) and 1024 px.
SCHEDULES = {
    256: (1, 2, 3, 4, 5, 6, 8, 10, 13, 16),
    512: (1, 2, 3, 4, 6, 9, 13, 18, 24, 32),
    1024: (1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64),
}
TOKEN_PX = 16  # pixels per token side of the official multi-scale VQ-VAE (4 downsamplings by 2)


@dataclass(frozen=True)
class Schedule:
    """The token pyramid of `patch_nums`, coarse to fine: each entry the side pn_k of a square token map, or an
    (h_k, w_k) pair for a map of h_k rows and w_k columns (Infinity's aspect-ratio templates). A schedule whose pairs
    are all square is stored as sides, so `Schedule(((1, 1), (2, 2))) == Schedule((1, 2))`. Raises ValueError
    naming patch_nums when it is empty or a size is not a positive integer."""

    patch_nums: tuple

    def __post_init__(self):
        entries = tuple(self.patch_nums) if isinstance(self.patch_nums, (tuple, list)) else ()
        shapes = tuple(_shape(p) for p in entries)
        if not shapes or any(s is None for s in shapes):
            raise ValueError(f"patch_nums: expected one or more token-map sides >= 1 (or (h, w) pairs), got "
                             f"{self.patch_nums!r}")
        square = all(h == w for h, w in shapes)
        object.__setattr__(self, "patch_nums", tuple(h for h, _ in shapes) if square else shapes)

    @property
    def num_scales(self) -> int:
        """K, the number of scales."""
        return len(self.patch_nums)

    @cached_property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """(h_k, w_k) of each token map ((pn_k, pn_k) for a square schedule)."""
        return tuple(_shape(p) for p in self.patch_nums)

    @property
    def square(self) -> bool:
        """True when every token map is square (then `patch_nums` holds the sides)."""
        return all(h == w for h, w in self.shapes)

    @cached_property
    def lengths(self) -> tuple[int, ...]:
        """n_k = h_k w_k (pn_k^2 for square maps), the tokens of each scale."""
        return tuple(h * w for h, w in self.shapes)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """K + 1 positions: offsets[k] is the first position of scale k, offsets[K] = L (cumulative sums of n_k;
        (1, 2, 3) -> (0, 1, 5, 14))."""
        out = [0]
        for n in self.lengths:
            out.append(out[-1] + n)
        return tuple(out)

    @property
    def seq_len(self) -> int:
        """L = sum_k n_k, the positions of the whole pyramid (680 for the 256 px schedule)."""
        return self.offsets[-1]

    def bounds(self, k: int) -> tuple[int, int]:
        """(start, end) of scale k's positions. Raises IndexError for k outside 0..K-1."""
        if not 0 <= k < self.num_scales:
            raise IndexError(f"scale {k} is out of range for a schedule of {self.num_scales} scales (0.."
                             f"{self.num_scales - 1})")
        return self.offsets[k], self.offsets[k + 1]

    def levels(self, device=None) -> torch.Tensor:
        """The scale of each position: int64 [L] on `device` (the official `lvl_1L` without its batch axis)."""
        return torch.cat([torch.full((n,), k, dtype=torch.int64, device=device) for k, n in enumerate(self.lengths)])

    def attention_mask(self, causal: bool, device=None) -> torch.Tensor:
        """Additive attention mask of the whole pyramid, float32 [L, L] (query, key) on `device`: 0 where the query
        may attend to the key, -inf elsewhere. causal: the key's scale <= the query's (block-causal: VAR, Switti-AR);
        else the same scale only (block-diagonal: Switti). The official `attn_bias_for_masking` without its
        two leading axes."""
        lv = self.levels(device)
        allowed = lv[None, :] <= lv[:, None] if causal else lv[None, :] == lv[:, None]
        return torch.full(allowed.shape, float("-inf"), dtype=torch.float32, device=device).masked_fill(allowed, 0.0)

    def image_size(self, downsample: int = TOKEN_PX) -> int:
        """Side of the decoded image in px: pn_{K-1} times the VQ-VAE's pixels per token (`downsample`, 16 for the
        official VQ-VAE and for the resolutions in the official file names). Raises ValueError for a schedule
        whose last map is not square (use `image_shape`)."""
        h, w = self.shapes[-1]
        if h != w:
            raise ValueError(f"patch_nums: the last token map is {h}x{w} (h x w), not square: use image_shape")
        return h * downsample

    def image_shape(self, downsample: int = TOKEN_PX) -> tuple[int, int]:
        """(H, W) of the decoded image in px: the last map's (h, w) times the pixels per token (`downsample`)."""
        h, w = self.shapes[-1]
        return h * downsample, w * downsample

    @classmethod
    def from_levels(cls, levels: torch.Tensor) -> Schedule | None:
        """The schedule whose scale k has as many positions as `levels` (an integer tensor, any shape: a stored
        `lvl_1L`) holds the value k, as square maps (VAR, Switti): pn_k = round(sqrt(count)), k = 0..max. None when a level 0..max has no
        position or a value is negative. The order of the positions is not checked: compare `levels()` with the
        tensor for that."""
        flat = levels.flatten()
        if flat.numel() == 0 or int(flat.min()) < 0:
            return None
        counts = torch.bincount(flat.long())
        if not bool((counts > 0).all()):
            return None
        return cls(tuple(round(float(c) ** 0.5) for c in counts))


class ScheduledConfig:
    """Mixin of the transformers' frozen configuration dataclasses (a `patch_nums` field): their `Schedule`."""

    @cached_property
    def schedule(self) -> Schedule:
        """The token pyramid of `patch_nums`."""
        return Schedule(self.patch_nums)

    @property
    def seq_len(self) -> int:
        """L = sum of pn_k^2: the positions of the whole token pyramid (680 for the 256 px schedule)."""
        return self.schedule.seq_len


def _shape(entry) -> tuple[int, int] | None:
    """(h, w) of a schedule entry: a side p -> (p, p), an (h, w) pair as given; None unless positive integers."""
    pair = tuple(entry) if isinstance(entry, (tuple, list)) else (entry, entry)
    if len(pair) != 2 or any(isinstance(p, bool) or not isinstance(p, numbers.Real) or int(p) != p or p < 1
                             for p in pair):
        return None
    return int(pair[0]), int(pair[1])


__all__ = ["SCHEDULES", "TOKEN_PX", "Schedule", "ScheduledConfig"]
