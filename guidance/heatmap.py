"""Render a GuidanceTrace as a ComfyUI IMAGE: one colour-mapped panel per scale, labelled with its
evenness (and divergence with a mask), plus an optional overlay of the last scale on the generated
image. Pure function of its inputs; text is drawn with PIL's default font."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .metrics import foreground_mask, trace_scores
from .trace import GuidanceTrace

# 9 anchors at 0, 1/8, ..., 1 of matplotlib's magma and viridis (CC0), linearly interpolated.
_COLORMAPS = {
    "magma": ["000004", "1d1147", "51127c", "822681", "b73779", "e75263", "fc8961", "fec488", "fcfdbf"],
    "viridis": ["440154", "472c7a", "3b518b", "2c718e", "21908d", "27ad81", "5cc863", "aadc32", "fde725"],
}
BACKGROUND, TEXT, DIM_TEXT, _MASK_EDGE = (24, 24, 27), (236, 236, 236), (150, 150, 155), (80, 220, 255)
COLORMAPS = tuple(_COLORMAPS)  # ("magma", "viridis")
NORMALIZE_MODES = ("scale", "global")  # per-scale maximum, or the image's maximum over all scales
MAX_COLUMNS = 7


def apply_colormap(values: torch.Tensor, name: str = "magma") -> torch.Tensor:
    """Values in [0, 1] of any shape -> RGB float32 [..., 3] in [0, 1] (values are clamped to [0, 1], NaN -> 0;
    linear interpolation between the colormap's anchor colours). Raises ValueError for an unknown `name`."""
    if name not in _COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; expected one of {sorted(_COLORMAPS)}")
    anchors = torch.tensor([[int(c[i:i + 2], 16) / 255 for i in (0, 2, 4)] for c in _COLORMAPS[name]])
    position = values.float().clamp(0, 1).nan_to_num(0.0) * (len(anchors) - 1)
    low = position.floor().long().clamp(max=len(anchors) - 2)
    frac = (position - low)[..., None]
    return anchors[low] * (1 - frac) + anchors[low + 1] * frac


def ui_font(size: int) -> ImageFont.ImageFont:
    """PIL's default font at `size` px (shared by the heat map, the comparison grid and the sweep plot)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font only
        return ImageFont.load_default()


def _check_image(image: torch.Tensor, trace: GuidanceTrace) -> torch.Tensor:
    height, width = trace.image_shape
    expected = f"[{trace.batch_size} or 1, {height}, {width}, 3]"
    if image.ndim != 4 or image.shape[-1] != 3 or tuple(image.shape[1:3]) != (height, width) \
            or image.shape[0] not in (1, trace.batch_size):
        raise ValueError(f"image shape {list(image.shape)} does not match the trace: expected {expected}")
    return image.expand(trace.batch_size, -1, -1, -1)


def _upsample(x: torch.Tensor, tile, mode: str = "nearest") -> torch.Tensor:
    """[B, h, w] -> [B, tile, tile] (tile: a side, or the panel's (height, width))."""
    size = tuple(tile) if isinstance(tile, tuple) else (tile, tile)
    return F.interpolate(x[:, None].float(), size=size, mode=mode)[:, 0]


def _normalized_maps(trace: GuidanceTrace, normalize: str) -> list[torch.Tensor]:
    """Each scale's magnitude divided by its own per-image maximum ("scale") or by the image's maximum
    over all scales ("global"), so that the brightest token is 1."""
    maps = [m.detach().to("cpu", torch.float32).clamp_min(0) for m in trace.magnitude]
    peaks = [m.flatten(1).amax(1) for m in maps]
    if normalize == "global":
        peaks = [torch.stack(peaks, 1).amax(1)] * len(maps)
    elif normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be 'scale' or 'global', got {normalize!r}")
    return [m / p.clamp_min(1e-12)[:, None, None] for m, p in zip(maps, peaks)]


def _mask_edge(mask: torch.Tensor, tile) -> torch.Tensor:
    """Boundary pixels of the foreground (mask >= 0.5) at tile resolution: [B, H, W] -> bool [B, th, tw] (tile: a
    side, or the panel's (th, tw))."""
    inside = _upsample(mask, tile, "area") >= 0.5
    padded = F.pad(inside[:, None].float(), (1, 1, 1, 1), mode="replicate")[:, 0] > 0.5
    neighbours_out = ~padded[:, :-2, 1:-1] | ~padded[:, 2:, 1:-1] | ~padded[:, 1:-1, :-2] | ~padded[:, 1:-1, 2:]
    edge = (inside & neighbours_out)[:, None].float()
    radius = (max(tile) if isinstance(tile, tuple) else tile) // 160  # thicker outline on bigger tiles: visible
    return F.max_pool2d(edge, 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


def _draw_fitted(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int, width: int, fill) -> None:
    """Draw text, shrinking the font (down to 9 px) until it fits in `width`."""
    while size > 9 and draw.textlength(text, font=ui_font(size)) > width:
        size -= 1
    draw.text(xy, text, font=ui_font(size), fill=fill)


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def wrap_text(text: str, font, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """Split text at spaces into lines no wider than `width` px in `font` (a longer single word stays whole)."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > width:
            lines.append(line)
            candidate = word
        line = candidate
    return lines + [line] if line else lines or [""]


def render_heatmap(trace: GuidanceTrace, image: torch.Tensor | None = None, mask: torch.Tensor | None = None, *,
                   tile: int | None = None, normalize: str = "scale", overlay_alpha: float = 0.5,
                   colormap: str = "magma", labels: bool = True,
                   scores: tuple[dict, dict | None] | None = None) -> torch.Tensor:
    """Grid of per-scale guidance-magnitude panels per image: float32 [B, H, W, 3] in [0, 1].

    image: the generated IMAGE [B or 1, H, W, 3] ((H, W) = trace.image_shape) for a last panel with the
    last scale's map overlaid at `overlay_alpha`; mask: MASK [B or 1, H, W] or [H, W], adds D values
    and the foreground outline on the overlay; None = the edit's regenerated region when the trace
    comes from an edit (`trace.edit_mask`); scores: `metrics.trace_scores(trace, mask)` when already computed.
    The grid size depends on `tile` and the scale count, not on the image size: `tile` is each panel's longer side,
    panels keep the image's aspect (H x W images: tile x round(tile W / H) for H >= W).

    Panels show the magnitude m = max_v (nudge)^+ (logit units) normalised per scale ("scale") or over all scales
    ("global"), in the IGG paper's heat-map style (arXiv 2509.23876; official dnngky/infoground-guidance), with
    evenness and, given a mask, divergence values (guidance/metrics.py). Raises ValueError for an empty trace,
    overlay_alpha outside [0, 1], tile < 16 px, an unknown normalize or colormap, or an image or mask that does
    not match the trace.
    """
    if not trace.magnitude:
        raise ValueError("the guidance trace holds no magnitude maps")
    if not 0.0 <= overlay_alpha <= 1.0:
        raise ValueError(f"overlay_alpha must be in [0, 1], got {overlay_alpha}")
    img_h, img_w = trace.image_shape
    tile = int(tile) if tile else min(max(max(img_h, img_w) // 2, 96), 256)
    if tile < 16:
        raise ValueError(f"tile must be at least 16 px, got {tile}")
    # panel (height, width): tile x tile for square images, else the longer side is tile, the aspect the image's
    panel_hw = (tile, tile) if img_h == img_w else \
        (tile, max(1, round(tile * img_w / img_h))) if img_h > img_w else (max(1, round(tile * img_h / img_w)), tile)
    tile_h, tile_w = panel_hw
    batch, scales = trace.batch_size, len(trace.magnitude)
    maps = _normalized_maps(trace, normalize)
    image = _check_image(image.detach().to("cpu", torch.float32), trace) if image is not None else None
    mask = trace.edit_mask if mask is None else mask
    even, div = trace_scores(trace, mask) if scores is None else scores

    photo = edge = None
    if image is not None:  # resized once for the whole batch: the overlay panel's background
        photo = F.interpolate(image.permute(0, 3, 1, 2), size=panel_hw, mode="bilinear",
                              antialias=True, align_corners=False).permute(0, 2, 3, 1).clamp(0, 1)
        edge = _mask_edge(foreground_mask(mask, trace).float(), panel_hw) if mask is not None else None
    panel_count = scales + (photo is not None)

    font_size = max(12, round(tile / 9))
    font = ui_font(font_size)
    gap, line = max(4, tile // 24), round(font_size * 1.3)
    label_h = (2 * line + gap // 2) if labels else 0
    rows = math.ceil(panel_count / MAX_COLUMNS)
    columns = math.ceil(panel_count / rows)
    width = columns * tile_w + (columns + 1) * gap
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    guider_lines = wrap_text(trace.guider or "guidance", font, width - 2 * gap, measure) if labels else []
    header_h = (len(guider_lines) + 1) * line + gap if labels else 0
    height = header_h + rows * (tile_h + label_h + gap) + gap

    out = []
    for b in range(batch):
        canvas = Image.new("RGB", (width, height), BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        panels = [apply_colormap(_upsample(m[b:b + 1], panel_hw)[0], colormap) for m in maps]  # K x [th, tw, 3]
        if photo is not None:
            overlay = (1 - overlay_alpha) * photo[b] + overlay_alpha * panels[-1]
            if edge is not None:
                overlay[edge[b]] = torch.tensor(_MASK_EDGE) / 255
            panels.append(overlay)
        for index, panel in enumerate(panels):
            row, column = divmod(index, columns)
            x, y = gap + column * (tile_w + gap), header_h + gap + row * (tile_h + label_h + gap)
            canvas.paste(Image.fromarray((panel.numpy() * 255).round().astype(np.uint8)), (x, y))
            if not labels:
                continue
            if index < scales:
                h, w = trace.magnitude[index].shape[1:]
                guided = index >= len(trace.uncond_ran) or trace.uncond_ran[index]
                title = f"k{index}  {h}x{w}" + ("" if guided else "  unguided")
                stats = f"E {_fmt(float(even['per_scale'][b, index]))}"
                if div is not None:
                    stats += f"  D {_fmt(float(div['per_scale'][b, index]))}"
                color = TEXT if guided else DIM_TEXT
            else:
                title, stats, color = f"overlay k{scales - 1}", f"alpha {overlay_alpha:g}", TEXT
            _draw_fitted(draw, (x, y + tile_h + gap // 2), title, font_size, tile_w, color)
            _draw_fitted(draw, (x, y + tile_h + gap // 2 + line), stats, font_size, tile_w, color)
        if labels:
            totals = f"mean E {_fmt(float(even['mean'][b]))}"
            if div is not None:
                totals += f"   mean D {_fmt(float(div['mean'][b]))}"
            header = guider_lines + [f"{totals}   ({normalize} normalisation, {colormap})"]
            for i, text in enumerate(header):
                draw.text((gap, gap + i * line), text, font=font, fill=TEXT)
        out.append(torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255))
    return torch.stack(out)
