"""Guidance trace: per image and scale, how strongly guidance pushed each token, and how sure the
sampler was of the token it drew. Small by design: Σ h_k·w_k floats per image and quantity."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import scale_shape
from .draw import token_log_probability


@dataclass
class GuidanceTrace:
    """What the sampler recorded (`sample(..., trace=True)`), on the CPU: per scale k the guidance magnitude
    m = max_v (applied nudge)^+ and the drawn token's probability, float32 [B, h_k, w_k] each."""

    patch_nums: tuple  # sides pn_k of square maps, or (h_k, w_k) pairs (RunInfo.patch_nums)
    image_size: int | tuple[int, int]  # S px of square images, or (H, W)
    guider: str = ""                                          # human-readable description of the stack
    magnitude: list[torch.Tensor] = field(default_factory=list)   # K x float32 [B, h_k, w_k], m_n >= 0
    confidence: list[torch.Tensor] = field(default_factory=list)  # K x float32 [B, h_k, w_k] in [0, 1]
    # K: did the uncond rows run at scale k (then the magnitude is measured against l_u; the heat map and
    # metrics.summary's "guided" list show these scales as guided, the others as unguided)
    uncond_ran: list[bool] = field(default_factory=list)
    edit_mask: torch.Tensor | None = None  # float32 [B, H, W]: pixels of the regenerated tokens of an edit

    @property
    def scale_shapes(self) -> tuple[tuple[int, int], ...]:
        """(h_k, w_k) of each scale's map."""
        return tuple(scale_shape(p) for p in self.patch_nums)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the images in px."""
        return scale_shape(self.image_size)

    @property
    def batch_size(self) -> int:
        """B, the number of images recorded (0 when empty)."""
        return self.magnitude[0].shape[0] if self.magnitude else 0

    def select(self, index: int) -> "GuidanceTrace":
        """The trace of one image of the batch."""
        return GuidanceTrace(self.patch_nums, self.image_size, self.guider,
                             [m[index:index + 1] for m in self.magnitude],
                             [c[index:index + 1] for c in self.confidence], list(self.uncond_ran),
                             None if self.edit_mask is None else self.edit_mask[index:index + 1])


def concat_traces(traces: list[GuidanceTrace]) -> GuidanceTrace:
    """The traces of consecutive parts of one batch (the same model, guider and scales, e.g. a long batch
    sampled in chunks) as one trace of all their images, in order. Raises ValueError for an empty list or traces
    of other schedules or scales guided differently."""
    if not traces:
        raise ValueError("no traces to join")
    first = traces[0]
    for t in traces[1:]:
        if (t.patch_nums, t.image_size, t.uncond_ran) != (first.patch_nums, first.image_size, first.uncond_ran):
            raise ValueError("traces of different schedules or guidance cannot be joined")
    masks = [t.edit_mask for t in traces]
    edit_mask = None if any(m is None for m in masks) else torch.cat(masks)
    return GuidanceTrace(first.patch_nums, first.image_size, first.guider,
                         [torch.cat(ms) for ms in zip(*(t.magnitude for t in traces))],
                         [torch.cat(cs) for cs in zip(*(t.confidence for t in traces))], list(first.uncond_ran),
                         edit_mask)


def guidance_magnitude(guided: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """m_n = max_v (guided - reference)^+ per token: float logits [B, n, V] -> [B, n] >= 0, in logit units (the
    reduction of the official IGG heat maps, dnngky/infoground-guidance)."""
    return (guided - reference).amax(-1).clamp(min=0)


def sampled_confidence(guided: torch.Tensor, tokens: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Probability of the drawn token under softmax(guided): logits float [B, n, V], token ids int64 [B, n] (or
    [B, n, G] for G = `groups` > 1: the geometric mean over the groups, draw.token_log_probability) ->
    probabilities [B, n] in [0, 1] (computed via log_softmax, so a filtered-out -inf logit gives 0)."""
    return token_log_probability(guided, tokens, groups).exp()
