"""Zero-shot editing: in-painting, out-painting, class/text editing and image-to-image.

The scale-wise counterpart of the official VAR demo (FoundationVision/VAR `demo_zero_shot_edit.ipynb`,
`autoregressive_infer_cfg_with_mask` and `replace_embedding`; VAR paper, Tian et al. 2024, zero-shot task
generalisation, arXiv 2404.02905): the image
is encoded into its own token maps by the multi-scale VQ-VAE, and while sampling, every token the edit
keeps is replaced, right after its draw, by the image's token at that position. The model therefore
regenerates only the rest, conditioned on the kept tokens of the same and all earlier scales.

Rules (README "Editing"):

- Pixel mask: ComfyUI's MASK convention, 1 = generate anew, 0 = keep. A pixel asks for generation when its
  value is >= 0.5; a token of the finest scale is regenerated when ANY pixel of its patch (16x16 px for the
  official VQ-VAE) asks for it, so every marked pixel is regenerated and the kept tokens cover unmarked
  pixels only.
- Coarser scales, `mask_rule` "official" (the demo's, the default): the finest scale's keep-mask (1 = keep)
  resized to pn x pn bilinearly (align_corners False, no antialias), kept where > 0.5; a token map of at most
  3 tokens (the 1x1 scale) is kept whole whenever a mask is given. "strict": a coarse token is kept only when
  every finest token under it (the quantiser's area-pooling window) is kept, and no map is kept whole, so no
  kept coarse token reaches into the regenerated region (with a full mask: plain generation).
- Image-to-image: `denoise` in [0, 1] as in ComfyUI's KSampler: the first round((1 - denoise) * K) scales
  (halves up) keep the image's tokens everywhere; denoise 1 keeps none, 0 keeps all (the reconstruction).
  With a mask, both apply: a token is kept if either rule keeps it.

Everything here is plain torch; nothing reads ComfyUI.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FITS = ("crop", "pad")
MASK_RULES = ("official", "strict")
PAD_VALUE = 0.5  # grey, as ComfyUI's "Pad Image for Outpainting"
KEEP_WHOLE_MAX_TOKENS = 3  # official demo: token maps with ph * pw <= 3 are always the image's


# Values an ordinary resample of an image in [0, 1] can take: bicubic interpolation (Keys' a = -0.75, torch's and
# so ComfyUI's `common_upscale`, used by core Upscale Image) overshoots at edges, at most by the sum of its negative
# lobes: 2 * 1.1875 * 0.1875 = 0.4453 per side in 2-D (pytorch/vision#8216; measured -0.009 .. 1.015 on a photo).
# Anything in this range is clamped to [0, 1]; values beyond it are not a resampled image (0..255, or -1..1).
RESAMPLE_RANGE = (-0.5, 1.5)


class InputNotice(UserWarning):
    """An input that is legal but probably not what the user meant (e.g. a mask that marks nothing); the message
    says what happened and what to do. The nodes show it on the node and in the log."""


def _check_values(x: torch.Tensor, name: str, convention: str) -> torch.Tensor:
    if x.dtype == torch.bool:
        x = x.float()
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a float tensor ({convention}), got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {list(x.shape)})")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinity; expected values in [0, 1] ({convention})")
    low, high = float(x.min()), float(x.max())
    if low < RESAMPLE_RANGE[0] or high > RESAMPLE_RANGE[1]:
        hint = (" (this looks like 0..255: divide by 255)" if high > 2 else
                " (this looks like -1..1: map it with (x + 1) / 2)" if low < -0.5 else "")
        raise ValueError(f"{name} values must be in [0, 1] ({convention}), got {low:g} to {high:g}{hint}; "
                         f"{RESAMPLE_RANGE[0]:g} to {RESAMPLE_RANGE[1]:g} (the overshoot of bicubic resampling) "
                         "is accepted and clamped")
    return x.clamp(0, 1) if low < 0 or high > 1 else x


def check_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Check an image float [B, 3, H, W] (channels first) in [0, 1] and return it, values of a resampling overshoot
    (`RESAMPLE_RANGE`) clamped to [0, 1]. Raises ValueError naming `name` when it is not a 4-D tensor with 3
    channels, not floating point, empty, non-finite or outside `RESAMPLE_RANGE`."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != 3:
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{name} must be an RGB image tensor [B, 3, H, W], got {shape}")
    return _check_values(image, name, "RGB, as ComfyUI's IMAGE")


def as_mask_batch(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """A MASK in any layout ComfyUI's own mask nodes accept -> [B, H, W] (a view): [H, W], [B, H, W], [B, 1, H, W]
    (segmenters' outputs; core reshapes masks to (-1, H, W)) or [B, H, W, 1]. Raises ValueError naming `name` for
    another shape, with the accepted ones."""
    if isinstance(mask, torch.Tensor):
        if mask.ndim == 2:
            return mask[None]
        if mask.ndim == 3:
            return mask
        if mask.ndim == 4 and mask.shape[1] == 1:
            return mask[:, 0]
        if mask.ndim == 4 and mask.shape[-1] == 1:
            return mask[..., 0]
    shape = list(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
    raise ValueError(f"{name} must be a mask [B, H, W], [H, W], [B, 1, H, W] or [B, H, W, 1], got {shape}")


def check_regenerate_mask(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """An edit's mask of what to regenerate (1 = generate anew, 0 = keep: ComfyUI's MASK convention) in [0, 1], in
    any layout `as_mask_batch` accepts, float or bool -> float [B, H, W], overshoot of resampling clamped as for
    images. Raises ValueError naming `name` when its layout is not a mask's, it is not float or bool, empty,
    non-finite or outside `RESAMPLE_RANGE`."""
    return _check_values(as_mask_batch(mask, name), name, "1 = generate anew, 0 = keep")


def check_object_mask(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """A foreground mask (1 = object, 0 = background: the divergence metric's) checked as `check_regenerate_mask`
    checks an edit's: float [B, H, W] in [0, 1]; the same ValueErrors, with this convention in the message."""
    return _check_values(as_mask_batch(mask, name), name, "1 = object")


def square_mask(mask: torch.Tensor, size, name: str = "mask") -> torch.Tensor:
    """A foreground mask float [B, h, w] for size x size images (size: S, or the images' (H, W)) -> [B, H, W]: a
    mask of the images' aspect at another resolution is resized (bilinear, antialiased when shrinking, as
    `fit_mask` resizes); one of another aspect cannot be placed on the images (the sampler cropped or padded the
    picture they come from), so it raises ValueError naming `name` and its width x height."""
    height, width = mask.shape[-2:]
    out_h, out_w = _pair(size)
    if (height, width) == (out_h, out_w):
        return mask
    if height * out_w != width * out_h:
        shape = "a square mask" if out_h == out_w else f"a mask of their aspect ({out_w}:{out_h})"
        raise ValueError(f"{name} is {width}x{height} (width x height) but the images are {out_w}x{out_h}: a mask of "
                         "another shape cannot be placed on them (the sampler cropped or padded the picture); give "
                         f"{shape}, or after an edit leave it unconnected to use the region the sampler "
                         "regenerated")
    return _resize(mask[:, None], out_h, out_w, "bilinear")[:, 0].clamp(0, 1)


def _pair(size) -> tuple[int, int]:
    """(H, W) of a size: S -> (S, S), an (H, W) pair as given."""
    return (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) else (int(size), int(size))


def unmarked_entries(mask: torch.Tensor) -> list[int]:
    """Indices of the masks of a batch float [B, H, W] that mark no pixel (every value < 0.5, the threshold of
    `finest_keep_mask`): such a mask regenerates nothing, so its image is the input's reconstruction."""
    return [i for i, peak in enumerate(mask.flatten(1).amax(1).tolist()) if peak < 0.5]


def unmarked_subject(mask: torch.Tensor, empty: list[int], first: int = 0) -> str:
    """The start of a message about the `empty` entries (from `unmarked_entries`) of a mask batch [B, H, W]: "the mask
    marks", "the mask of image 3 marks" or "the masks of images 3, 5 mark", numbering images from `first` (the
    sampler's batch_index) as the user does."""
    listed = ", ".join(str(first + i) for i in empty[:8]) + (" ..." if len(empty) > 8 else "")
    return ("the mask marks" if mask.shape[0] == 1 else f"the mask of image {listed} marks" if len(empty) == 1
            else f"the masks of images {listed} mark")


def warn_unmarked(mask: torch.Tensor, first: int = 0) -> None:
    """InputNotice when masks of the batch mark nothing; `first` is the index of the batch's first image (the
    sampler's batch_index), so the message numbers images as the user does."""
    empty = unmarked_entries(mask)
    if not empty:
        return
    result = ("the image is" if mask.shape[0] == 1 else "that image is" if len(empty) == 1 else "those images are")
    warnings.warn(f"{unmarked_subject(mask, empty, first)} nothing (every pixel below 0.5: e.g. Load Image of a picture without alpha, or nothing painted), "
                  f"so nothing is regenerated: {result} the input's reconstruction, the same for every seed. To "
                  "in-paint, paint the region to regenerate in Load Image's mask editor (right-click the image, Open "
                  "in MaskEditor, then Save); to change the whole picture, disconnect the mask and use "
                  "denoise.", InputNotice, stacklevel=3)


def fit_image(image: torch.Tensor, size, fit: str = "crop") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fit an image float [B, 3, h, w] in [0, 1] to size x size (size: S, or the target (H, W) px).

    "crop": scale so that the image covers H x W (its short side relative to the target's aspect fits), cut the
    centre; "pad": scale so that it fits inside H x W, centre it on grey (0.5). Resampling is bicubic,
    antialiased when shrinking, clamped to [0, 1]. Returns the fitted image and, for "pad" of another aspect, the
    padding float [1, H, W] (1 = padded: to be generated, i.e. out-painting), else None. Raises ValueError for an
    unknown `fit`.
    """
    return _fit(image, size, fit, "bicubic", PAD_VALUE)


def fit_mask(mask: torch.Tensor, image_hw: tuple[int, int], size: int, fit: str = "crop") -> torch.Tensor:
    """A mask float [B, h, w] for an image of size image_hw, fitted as `fit_image` fits that image: first
    stretched to image_hw if its own size differs, then cropped or padded, bilinearly; padding is 1
    (generated). Returns float32 [B, H, W] in [0, 1] (size: S or (H, W)). Raises ValueError for an unknown
    `fit`."""
    if tuple(mask.shape[-2:]) != tuple(image_hw):
        mask = _resize(mask[:, None], *image_hw, "bilinear")[:, 0].clamp(0, 1)
    return _fit(mask[:, None], size, fit, "bilinear", 1.0)[0][:, 0]


def _fit(x: torch.Tensor, size: int, fit: str, mode: str, pad_value: float):
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    height, width = x.shape[-2:]
    out_h, out_w = _pair(size)
    if (height, width) == (out_h, out_w):
        return x, None
    if out_h == out_w:  # the square rule, as it always was (bit for bit)
        scale_h = scale_w = out_h / (min if fit == "crop" else max)(height, width)
    else:  # crop: cover the target (the larger factor); pad: fit inside it (the smaller)
        scale_h = scale_w = (max if fit == "crop" else min)(out_h / height, out_w / width)
    bound = max if fit == "crop" else min  # crop: both sides >= the target's; pad: both <=
    new_h = bound(out_h, max(1, round(height * scale_h)))
    new_w = bound(out_w, max(1, round(width * scale_w)))
    resized = _resize(x, new_h, new_w, mode).clamp(0, 1)
    if fit == "crop":
        top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
        return resized[..., top:top + out_h, left:left + out_w], None
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    out = resized.new_full((*x.shape[:-2], out_h, out_w), pad_value)
    out[..., top:top + new_h, left:left + new_w] = resized
    padding = resized.new_ones(1, out_h, out_w)
    padding[:, top:top + new_h, left:left + new_w] = 0
    return out, (padding if bool(padding.any()) else None)


def edit_batch(batch_size: int, image: torch.Tensor | None, mask: torch.Tensor | None) -> int:
    """The batch of an edit: the largest of batch_size and the image and mask batches, each of which must be
    1 (shared by every image) or that batch. Raises ValueError naming the mismatching input."""
    sizes = {"batch_size": int(batch_size)}
    sizes.update((name, x.shape[0]) for name, x in (("image", image), ("mask", mask)) if x is not None)
    batch = max(sizes.values())
    for name, size in sizes.items():
        if size not in (1, batch):
            other = ", ".join(f"{n} {v}" for n, v in sizes.items() if n != name)
            fix = (" (set batch_size to 1: the image or mask batch then sets the number of images)"
                   if name == "batch_size" else "")
            raise ValueError(f"{name} {size} does not fit the batch of {batch} ({other}): each of batch_size, "
                             f"the image batch and the mask batch must be 1 or the same number{fix}")
    return batch


def _resize(x: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    if (height, width) == tuple(x.shape[-2:]):
        return x.float()
    antialias = height < x.shape[-2] or width < x.shape[-1]
    return F.interpolate(x.float(), size=(height, width), mode=mode, align_corners=False, antialias=antialias)


def finest_keep_mask(mask: torch.Tensor, side) -> torch.Tensor:
    """Pixel mask float [B, H, W] (1 = generate) -> keep-mask float [B, h, w] of the finest token map (side: its
    side pn, or its (h, w)): 1 where no pixel of the token's patch (H / h = W / w pixels square, 16 for the
    official VQ-VAE) is >= 0.5. Raises ValueError unless the mask's sides are one multiple of the map's."""
    if not isinstance(side, (tuple, list)):
        size = mask.shape[-1]
        if mask.shape[-2] != size or size % side:
            raise ValueError(f"the mask must be square with a side that is a multiple of {side}, got "
                             f"{list(mask.shape)}")
        generate = (mask >= 0.5).float()[:, None]
        return 1 - F.max_pool2d(generate, size // side)[:, 0]
    h, w = _pair(side)
    height, width = mask.shape[-2:]
    if height % h or width % w or height // h != width // w:
        raise ValueError(f"the mask must be {h}x{w} patches of one square size (h x w), got {list(mask.shape)}")
    generate = (mask >= 0.5).float()[:, None]
    return 1 - F.max_pool2d(generate, height // h)[:, 0]


def scale_keep_masks(finest_keep: torch.Tensor, patch_nums) -> list[torch.Tensor]:
    """The official per-scale rule: keep-mask float [B, h_K, w_K] (1 = keep; the last map) -> K bool maps
    [B, h_k, w_k] (patch_nums: sides pn_k or (h_k, w_k) pairs): bilinear resize (align_corners False, no
    antialias) then > 0.5; maps of <= 3 tokens all True (the official demo's `replace_embedding`, which keeps
    maps with ph * pw <= 3 whole)."""
    out = []
    for entry in patch_nums:
        h, w = _pair(entry)
        if h * w <= KEEP_WHOLE_MAX_TOKENS:
            keep = torch.ones(finest_keep.shape[0], h, w, dtype=torch.bool, device=finest_keep.device)
        else:
            keep = F.interpolate(finest_keep[:, None].float(), size=(h, w), mode="bilinear",
                                 align_corners=False)[:, 0] > 0.5
        out.append(keep)
    return out


def strict_keep_masks(finest_keep: torch.Tensor, patch_nums) -> list[torch.Tensor]:
    """The strict per-scale rule: keep-mask float [B, h_K, w_K] (1 = keep) -> K bool maps [B, h_k, w_k], True
    where every finest token of the adaptive-pooling window (floor(i h_K / h_k) .. ceil((i + 1) h_K / h_k) - 1,
    the same along w) is kept."""
    generate = 1 - finest_keep[:, None].float()
    return [F.adaptive_max_pool2d(generate, _pair(entry))[:, 0] < 0.5 for entry in patch_nums]


def kept_scale_count(denoise: float, num_scales: int) -> int:
    """Scales whose tokens all stay the image's for a given `denoise` in [0, 1]: round((1 - denoise) * K),
    halves rounded up (K = 10: denoise 0.5 keeps 5 scales, 0.95 keeps 1). Raises ValueError for a denoise that
    is not a finite number in [0, 1]."""
    denoise = float(denoise)
    if not (math.isfinite(denoise) and 0.0 <= denoise <= 1.0):
        raise ValueError(f"denoise must be in [0, 1] (1 = generate every scale anew), got {denoise}")
    return min(num_scales, math.floor((1.0 - denoise) * num_scales + 0.5 + 1e-9))


@dataclass
class EditPlan:
    """Which tokens of each scale are the image's own.

    tokens: K int64 maps [B, h_k, w_k] (the image's encoding; [B, h_k, w_k, G] for bitwise tokens); keep: K bool
    maps [B, h_k, w_k], True = forced;
    regenerated: float32 [B, H, W] in {0, 1}, 1 = a pixel of the finest scale's regenerated tokens (None without
    a mask); the heat map takes it as the foreground of its divergence.
    """

    tokens: list[torch.Tensor]
    keep: list[torch.Tensor]
    regenerated: torch.Tensor | None = None

    def force(self, k: int, idx: torch.Tensor, h: torch.Tensor, embed):
        """Scale k's drawn indices [B, n] (or [B, n, G], model.token_groups) and embeddings [B, n, C] with the kept
        tokens replaced; `embed` maps token ids to their codebook vectors [B, n, C] (the model's `embed_tokens`).
        Returns (idx int64 like the input, h [B, n, C] in h's dtype), new tensors; the inputs are not modified
        (official demo: `replace_embedding`, applied after each draw)."""
        keep = self.keep[k].flatten(1)
        image_idx = self.tokens[k].flatten(1, 2)
        idx = torch.where(keep.view(*keep.shape, *(1,) * (idx.ndim - 2)), image_idx, idx)
        h = torch.where(keep[..., None], embed(image_idx).to(h.dtype), h)
        return idx, h


def _check_batches(batch: int, image: torch.Tensor, mask: torch.Tensor | None) -> None:
    """ValueError unless the image batch and the mask batch are each 1 or `batch`; the message gives both sizes."""
    sizes = [("image", image.shape[0])] + ([] if mask is None else [("mask", mask.shape[0])])
    wrong = [(name, size) for name, size in sizes if size not in (1, batch)]
    if wrong:
        named = " and ".join(f"{name} batch {size}" for name, size in wrong)
        others = [f"{name} batch {size}" for name, size in sizes if (name, size) not in wrong]
        raise ValueError(f"{named} {'do' if len(wrong) > 1 else 'does'} not match the batch of {batch} images"
                         f"{f' ({others[0]})' if others else ''}: give 1 (used for every image) or {batch} for "
                         f"{'each' if mask is not None else 'the image'}")


def fit_edit(model, edit, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The edit's image and regenerate-mask (an `Edit`'s, already checked) at the model's size (H, W) =
    `model.image_shape` and the batch: (image float [1 or B, 3, H, W], mask float [1 or B, H, W] or None). With
    `edit.fit` "crop"/"pad" an image of another size is fitted (`fit_image`, `fit_mask`; with "pad" and no mask the
    padding becomes the mask: out-painting); with None it must be H x W already. Raises ValueError naming the
    input: a wrong size or batch."""
    height, width = model.image_shape
    size = height if height == width else (height, width)
    image, mask = edit.image, edit.mask
    if edit.fit is not None:
        fitted, padding = fit_image(image, size, edit.fit)
        mask = padding if mask is None else fit_mask(mask, tuple(image.shape[-2:]), size, edit.fit)
        image = fitted
    if tuple(image.shape[-2:]) != (height, width):
        raise ValueError(f"image is {image.shape[-1]}x{image.shape[-2]} px but this model makes {width}x{height}: "
                         "fit it first (fit_image: crop or pad)")
    if mask is not None and tuple(mask.shape[-2:]) != (height, width):
        raise ValueError(f"mask is {mask.shape[-1]}x{mask.shape[-2]} px but the image is {width}x{height}: "
                         "fit it first (fit_mask)")
    _check_batches(batch, image, mask)
    return image, mask


def plan_edit(model, edit, batch: int, first: int = 0) -> EditPlan | None:
    """Encode the edit's image and build the keep-maps for `sample`, or None without an edit or when nothing is kept.

    edit: a `guidance.Edit` (its image, mask, denoise and mask_rule checked when it was built), fitted to the model
    by `fit_edit`; batch: B, the generation's images; first: the index of the batch's first image, for messages. A
    mask that marks nothing keeps its whole image (as ComfyUI's masks: nothing to regenerate) and warns
    (InputNotice). Raises ValueError naming the input for a wrong size or batch (`fit_edit`).
    """
    if edit is None:
        return None
    shapes = tuple(tuple(s) for s in model.scale_shapes)
    square = all(h == w for h, w in shapes)
    patch_nums = tuple(h for h, _ in shapes) if square else shapes  # sides (the square rules, bit for bit) or pairs
    kept = kept_scale_count(edit.denoise, len(patch_nums))
    image, mask = fit_edit(model, edit, batch)
    if mask is not None:
        warn_unmarked(mask, first)
        mask = mask.expand(batch, *mask.shape[1:])
    if mask is None and kept == 0:
        return None
    device = model.weight_device
    # a batch-1 image is encoded once and shared by every image of the batch
    tokens = [t.expand(batch, *t.shape[1:]) for t in model.encode_image(image.to(device))]
    if mask is None:
        keep = [torch.zeros(batch, h, w, dtype=torch.bool, device=device) for h, w in shapes]
        regenerated = None
    else:
        finest = finest_keep_mask(mask.to(device), patch_nums[-1])
        keep = (scale_keep_masks if edit.mask_rule == "official" else strict_keep_masks)(finest, patch_nums)
        factor = model.image_shape[0] // shapes[-1][0]
        regenerated = (1 - finest).repeat_interleave(factor, -1).repeat_interleave(factor, -2).float()
    for k in range(kept):
        keep[k] = torch.ones_like(keep[k])
    return EditPlan(tokens, keep, regenerated)
