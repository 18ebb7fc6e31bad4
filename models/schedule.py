"""The scale schedule of a next-scale prediction model and everything that follows from it, written once for both
families (VAR, Switti) and their loaders.

The schedule is the side pn_k of each scale's token map, coarse to fine. The flattened token pyramid puts the
n_k = pn_k^2 tokens of scale k (row-major) after those of scales 0..k-1, so scale k holds the positions
offsets[k] .. offsets[k + 1] - 1 and the sequence length is L = sum_k pn_k^2. Attention over the pyramid is
block-causal (a scale sees itself and the coarser scales: VAR, Switti-AR) or block-diagonal (a scale sees only
itself: Switti). Sources: Tian et al., "Visual Autoregressive Modeling", NeurIPS 2024 (arXiv 2404.02905), Sec. 3.2;
the official FoundationVision/VAR models/var.py (`patch_nums`, `L`, `lvl_1L`, `attn_bias_for_masking`) and
yandex-research/switti models/switti.py (the same buffers; block-diagonal unless `use_ar`).
"""
from __future__ import annotations

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
    """The token pyramid of `patch_nums` (pn_0..pn_{K-1}, coarse to fine). Raises ValueError naming patch_nums when
    it is empty or a side is not a positive integer."""

    patch_nums: tuple[int, ...]

    def __post_init__(self):
        sides = tuple(self.patch_nums)
        if not sides or any(isinstance(p, bool) or int(p) != p or p < 1 for p in sides):
            raise ValueError(f"patch_nums: expected one or more token-map sides >= 1, got {self.patch_nums!r}")
        object.__setattr__(self, "patch_nums", tuple(int(p) for p in sides))

    @property
    def num_scales(self) -> int:
        """K, the number of scales."""
        return len(self.patch_nums)

    @cached_property
    def lengths(self) -> tuple[int, ...]:
        """n_k = pn_k^2, the tokens of each scale."""
        return tuple(p * p for p in self.patch_nums)

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
        """L = sum_k pn_k^2, the positions of the whole pyramid (680 for the 256 px schedule)."""
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
        official VQ-VAE and for the resolutions in the official file names)."""
        return self.patch_nums[-1] * downsample

    @classmethod
    def from_levels(cls, levels: torch.Tensor) -> Schedule | None:
        """The schedule whose scale k has as many positions as `levels` (an integer tensor, any shape: a stored
        `lvl_1L`) holds the value k: pn_k = round(sqrt(count)), k = 0..max. None when a level 0..max has no
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


__all__ = ["SCHEDULES", "TOKEN_PX", "Schedule", "ScheduledConfig"]
