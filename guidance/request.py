"""A generation request as values: what to generate (`Generation`), how each scale's tokens are drawn (`Draw`) and
what an edit keeps of an image (`Edit`).

Each value checks itself once, when built (the messages name the field, its value and the expected range); the checks
that need the model (image size, mask and image batches against the batch) run once when `sample` starts.
`dataclasses.replace` makes variants (a sweep's rows, a batch sampled in parts). Plain torch, no ComfyUI.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .draw import check_sampling_args
from .editing import FITS, MASK_RULES, check_image, check_regenerate_mask, kept_scale_count


@dataclass(frozen=True)
class Draw:
    """How the tokens of each scale are drawn (official VAR/Switti sampler settings).

    top_k: keep the k most likely codes (0, or k >= V = off; 1 = greedy). top_p: the nucleus, in [0, 1] (0 or 1 =
    off). more_smooth: Gumbel-softmax code mixtures from scale `smooth_start_scale` on, as `model.smoothing`
    declares (VAR: after the draw, on the filtered logits; Switti: instead of the draw, only while guided).
    last_scale_temperature: divides the logits of the scales after the guider's window (Switti's CFG-off scales),
    in [0.001, 100]; None = off. temperature: tau, every scale's logits times 1 / tau before guidance, in
    [0.001, 100] (official Infinity `autoregressive_infer_cfg`: head(x) .mul(1 / tau) then CFG; its published 0.5 or
    1.0); 1 = off. Both are real numbers (int or float, not bool or str). The lower bound keeps the logits finite:
    1 / tau <= 1000, and float32 logits (|l| far below 1e30) times 1000 and the guiders' weights (<= 101) stay far
    below float32's 3.4e38, while tau -> 0 (1 / tau = inf for tau below ~3e-39) gives inf and NaN; tau = 0.001 is
    already a greedy draw for logits that differ by more than 0.02. The nodes' widgets start at 0.01. Raises
    ValueError naming the field for top_k not an integer >= 0, top_p outside [0, 1], a temperature that is not a
    real number in [0.001, 100]."""

    top_k: int = 0
    top_p: float = 0.0
    more_smooth: bool = False
    smooth_start_scale: int = 0
    last_scale_temperature: float | None = None
    temperature: float = 1.0

    def __post_init__(self):
        check_sampling_args(self.top_k, self.top_p)
        if self.last_scale_temperature is not None:
            _check_temperature("last_scale_temperature", self.last_scale_temperature, "None = off")
        _check_temperature("temperature", self.temperature, "1 = off")


MIN_TEMPERATURE = 0.001  # the lower bound of both temperatures: 1 / tau <= 1000 keeps float32 logits finite (`Draw`)


def _check_temperature(name: str, value, off: str) -> None:
    """ValueError naming `name` unless `value` is a real number (int or float, not bool) in [MIN_TEMPERATURE, 100]."""
    real = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not real or not MIN_TEMPERATURE <= value <= 100:  # NaN fails the comparison
        raise ValueError(f"{name} must be a number in [{MIN_TEMPERATURE:g}, 100] ({off}), got {value!r}")


@dataclass(frozen=True)
class Edit:
    """Zero-shot editing and image-to-image (rules in guidance/editing.py; official VAR `demo_zero_shot_edit.ipynb`).

    image: float [1 or B, 3, H, W] in [0, 1] (values of a resampling overshoot, `editing.RESAMPLE_RANGE`, are
    clamped; the stored image is the clamped one). mask: what to regenerate, float or bool in [0, 1], 1 = generate
    anew, 0 = keep (ComfyUI's MASK convention), in any layout `editing.as_mask_batch` accepts -> stored float
    [1 or B, h, w]; None = no mask. denoise in [0, 1]: the first round((1 - denoise) K) scales keep the image's
    tokens everywhere. mask_rule: "official" or "strict" (`editing.MASK_RULES`). fit: how an image of another size
    than the model's S x S is fitted when sampling starts, "crop" or "pad" (`editing.FITS`; pad regenerates the
    padding); None = it must already be S x S. Raises ValueError naming the input: a malformed or out-of-range
    image or mask, a denoise outside [0, 1], an unknown mask_rule or fit."""

    image: torch.Tensor = field(repr=False)
    mask: torch.Tensor | None = field(default=None, repr=False)
    denoise: float = 1.0
    mask_rule: str = "official"
    fit: str | None = None

    def __post_init__(self):
        if self.mask_rule not in MASK_RULES:
            raise ValueError(f"mask_rule must be one of {MASK_RULES}, got {self.mask_rule!r}")
        if self.fit is not None and self.fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {self.fit!r}")
        kept_scale_count(self.denoise, 1)  # the denoise range check
        object.__setattr__(self, "image", check_image(self.image))
        if self.mask is not None:
            object.__setattr__(self, "mask", check_regenerate_mask(self.mask))

    @classmethod
    def from_inputs(cls, image: torch.Tensor | None = None, mask: torch.Tensor | None = None, denoise: float = 1.0,
                    mask_rule: str = "official", fit: str | None = None) -> Edit | None:
        """The edit of optional inputs (a node's image, mask and denoise): None when there is nothing to edit (no
        image, denoise 1). Raises ValueError for a mask without an image, a denoise < 1 without an image, or what
        `Edit` refuses."""
        if image is not None:
            return cls(image, mask, denoise, mask_rule, fit)
        if mask is not None:
            raise ValueError("mask is connected but image is not: the mask marks what to regenerate in an image; "
                             "connect the image to edit")
        if kept_scale_count(denoise, 1):
            raise ValueError(f"denoise {denoise:g} < 1 needs an image to start from: connect an image, "
                             "or set denoise to 1")
        return None

    @property
    def batch(self) -> int:
        """The larger of the image and mask batches (1 = shared by every image of a generation)."""
        return max(self.image.shape[0], 1 if self.mask is None else self.mask.shape[0])

    def part(self, start: int, count: int) -> Edit:
        """Images start .. start + count of the edit's batches (a batch of 1 is shared by every image): the edit of
        one part of a generation sampled in parts."""
        return _unchecked(self, image=_part(self.image, start, count), mask=_part(self.mask, start, count))


def _part(x: torch.Tensor | None, start: int, count: int) -> torch.Tensor | None:
    return x if x is None or x.shape[0] == 1 else x[start:start + count]


def _unchecked(edit: Edit, **changes) -> Edit:
    """A copy of an already checked edit with some tensors replaced by parts of its own (no second check)."""
    copy = object.__new__(Edit)
    for name in ("image", "mask", "denoise", "mask_rule", "fit"):
        object.__setattr__(copy, name, changes.get(name, getattr(edit, name)))
    return copy


@dataclass(frozen=True)
class Generation:
    """One generation: what to generate and how.

    conditioning: whatever `model.prepare_condition` accepts (VAR: a ClassCondition or class ids; Switti: a
    TextCondition). seed: the batch's seed (taken mod 2^64). batch_size: images, None = one per conditioning entry.
    batch_index: the index of the batch's first image: image j is image batch_index + j of the seed (its random
    stream, `draw.image_seed`) and takes the conditioning's entry that `model.prepare_condition(..., first=
    batch_index)` gives it. draw: the token draw (`Draw`). edit: an optional `Edit`. Raises ValueError for a
    batch_index that is not an integer >= 0 or a draw/edit of the wrong type; the model checks the conditioning and
    batch_size when sampling starts."""

    conditioning: object
    seed: int = 0
    batch_size: int | None = None
    batch_index: int = 0
    draw: Draw = Draw()
    edit: Edit | None = None

    def __post_init__(self):
        if isinstance(self.batch_index, bool) or int(self.batch_index) != self.batch_index or self.batch_index < 0:
            raise ValueError(f"batch_index must be an integer >= 0, got {self.batch_index!r}")
        if not isinstance(self.draw, Draw):
            raise ValueError(f"draw must be a guidance.Draw, got {type(self.draw).__name__}")
        if self.edit is not None and not isinstance(self.edit, Edit):
            raise ValueError(f"edit must be a guidance.Edit or None, got {type(self.edit).__name__}")
