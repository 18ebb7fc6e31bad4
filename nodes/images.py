"""IMAGE and MASK inputs as core nodes and other packs really make them, read the way core reads them."""
from __future__ import annotations

import torch

from ..guidance.editing import check_image


def rgb_image(image, name: str = "image") -> torch.Tensor:
    """A ComfyUI IMAGE float [B, H, W, C] (a single [H, W, C] gets a batch of 1) -> RGB float [B, H, W, 3] in
    [0, 1], as core's VAE Encode reads it: C = 3 as it is, C = 4 (RGBA: Join Image with Alpha, many packs) its first
    three channels, C = 1 (grey) repeated, C = 2 (grey and alpha) the grey channel repeated. Values of a resampling
    overshoot (core Upscale Image with bicubic) are clamped (guidance.editing.check_image). Raises ValueError naming
    `name` and describing the input in ComfyUI's own layout [B, H, W, C]."""
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{name}: expected an IMAGE tensor [B, H, W, C], got {type(image).__name__}")
    if image.ndim == 3 and image.shape[-1] <= 4:
        image = image[None]
    if image.ndim != 4 or not 1 <= image.shape[-1] <= 4:
        raise ValueError(f"{name}: expected an IMAGE [batch, height, width, channels] with 1 to 4 channels (RGB, "
                         f"RGBA, grey), got a tensor of shape {list(image.shape)}")
    if image.numel() == 0:
        raise ValueError(f"{name}: the IMAGE is empty (shape [batch, height, width, channels] = {list(image.shape)})")
    channels = image.shape[-1]
    if channels == 4:
        image = image[..., :3]
    elif channels < 3:
        image = image[..., :1].expand(*image.shape[:-1], 3)
    return check_image(image.movedim(-1, 1), name).movedim(1, -1)
