"""Labelled image grids for comparisons: a row per guider (or strength) with its description on the left, a
column per seed with its label on top. Plain torch + PIL; text is drawn with PIL's default font."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .heatmap import BACKGROUND, TEXT, apply_colormap, ui_font, wrap_text
from .trace import GuidanceTrace

MAX_IMAGES = 64         # per comparison (rows x columns): the sampler node's largest batch
MIN_TILE, MAX_TILE = 128, 512


def tile_size(image_size: int) -> int:
    """Side of a grid cell: small images are enlarged by a whole factor (nearest, crisp tokens) to >= 128 px,
    large ones shrunk to 512 px, so a 64-image grid of 1024 px images stays about 8k x 2k pixels."""
    if image_size < MIN_TILE:
        return image_size * math.ceil(MIN_TILE / image_size)
    return min(image_size, MAX_TILE)


def cell_shape(height: int, width: int) -> tuple[int, int]:
    """(height, width) of a grid cell for H x W images: square images a `tile_size(S)` square; others keep their
    aspect with the longer side `tile_size` of it."""
    tile = tile_size(max(height, width))
    if height == width:
        return tile, tile
    if height > width:
        return tile, max(1, round(tile * width / height))
    return max(1, round(tile * height / width)), tile


@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of a rows x columns grid with a label column on the left and a header row on top. `tile` is
    the cells' longer side (label column, fonts and gaps follow it); cells are tile x tile, or `cell_hw` (height,
    width) for images of another aspect."""

    rows: int
    columns: int
    tile: int
    label_width: int
    header_height: int
    gap: int
    cell_hw: tuple[int, int] | None = None  # (height, width) of a cell; None: (tile, tile)

    @classmethod
    def for_grid(cls, rows: int, columns: int, tile: int, cell: tuple[int, int] | None = None) -> "GridLayout":
        """The layout of a rows x columns grid of tile-pixel images (label column and header sized from the tile;
        `cell` (height, width) for non-square cells); ValueError for fewer than one row or column."""
        if rows < 1 or columns < 1:
            raise ValueError(f"a grid needs at least one row and one column, got {rows} x {columns}")
        gap = max(4, tile // 24)
        return cls(rows, columns, tile, label_width=max(160, min(round(tile * 1.4), 360)),
                   header_height=round(_font_size(tile) * 1.6) + gap, gap=gap,
                   cell_hw=None if cell is None or tuple(cell) == (tile, tile) else tuple(cell))

    @property
    def cell_height(self) -> int:
        """A cell's height in pixels."""
        return self.tile if self.cell_hw is None else self.cell_hw[0]

    @property
    def cell_width(self) -> int:
        """A cell's width in pixels."""
        return self.tile if self.cell_hw is None else self.cell_hw[1]

    @property
    def width(self) -> int:
        """Total width in pixels."""
        return self.label_width + self.columns * (self.cell_width + self.gap) + self.gap

    @property
    def height(self) -> int:
        """Total height in pixels."""
        return self.header_height + self.rows * (self.cell_height + self.gap) + self.gap

    def cell(self, row: int, column: int) -> tuple[int, int]:
        """Top-left corner (x, y) of the image at (row, column)."""
        if not (0 <= row < self.rows and 0 <= column < self.columns):
            raise IndexError(f"cell ({row}, {column}) outside a {self.rows} x {self.columns} grid")
        return (self.label_width + self.gap + column * (self.cell_width + self.gap),
                self.header_height + self.gap + row * (self.cell_height + self.gap))


def _font_size(tile: int) -> int:
    return min(max(12, round(tile / 10)), 28)


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N, H, W, 3] -> [N, h, w, 3] (size (h, w)): nearest when enlarging, antialiased area when shrinking."""
    x = images.permute(0, 3, 1, 2).float()
    if size[1] >= x.shape[-1]:
        x = F.interpolate(x, size=size, mode="nearest")
    else:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1).permute(0, 2, 3, 1)


def render_grid(images: torch.Tensor, row_labels: list[str], column_labels: list[str],
                title: str = "") -> torch.Tensor:
    """images float [rows * columns, h, w, 3] in [0, 1], row-major (row r, column c at r * columns + c)
    -> one labelled grid IMAGE float32 [1, H, W, 3] in [0, 1]. H and W follow `GridLayout` with cells of
    `cell_shape(h, w)` (`tile_size(S)` squares for S x S images). Raises ValueError unless images is
    [rows * columns, h, w, 3]."""
    rows, columns = len(row_labels), len(column_labels)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] != rows * columns:
        raise ValueError(f"grid images must be [{rows} x {columns}, S, S, 3], got {list(images.shape)}")
    cell = cell_shape(images.shape[1], images.shape[2])
    layout = GridLayout.for_grid(rows, columns, max(cell), cell)
    canvas = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    size = _font_size(layout.tile)
    font = ui_font(size)
    if title:  # in the label column's header corner, wrapped to its width
        small = ui_font(max(10, size - 3))
        for i, piece in enumerate(wrap_text(title, small, layout.label_width - 2 * layout.gap, draw)[:2]):
            draw.text((layout.gap, layout.gap // 2 + i * (size - 1)), piece, font=small, fill=TEXT)
    tiles = (_resize(images.detach().cpu(), cell).numpy() * 255).round().astype(np.uint8)
    for c, text in enumerate(column_labels):
        x, _ = layout.cell(0, c)
        draw.text((x, layout.header_height - size - layout.gap // 2 - 2), text, font=font, fill=TEXT)
    line = round(size * 1.25)
    for r, text in enumerate(row_labels):
        x, y = layout.gap, layout.cell(r, 0)[1]
        lines = wrap_text(text, font, layout.label_width - 2 * layout.gap, draw)
        max_lines = max(1, layout.cell_height // line)
        if len(lines) > max_lines:
            lines = lines[:max_lines - 1] + [lines[max_lines - 1] + " ..."]
        for i, piece in enumerate(lines):
            draw.text((x, y + i * line), piece, font=font, fill=TEXT)
        for c in range(columns):
            canvas.paste(Image.fromarray(tiles[r * columns + c]), layout.cell(r, c))
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255)[None]


def heatmap_cells(trace: GuidanceTrace, images: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Per image the guidance magnitude of the finest guided scale (normalised to its own maximum, magma),
    nearest-upsampled and laid over the image at `alpha`: [B, H, W, 3] from a trace of batch B and
    images [B, H, W, 3]. The cells of a heat-map grid aligned with the image grid. images: float in [0, 1]
    (ComfyUI IMAGE, channels last); returns float32 [B, H, W, 3] in [0, 1] for alpha in [0, 1]."""
    guided = [k for k, g in enumerate(trace.uncond_ran) if g]
    k = guided[-1] if guided else len(trace.magnitude) - 1
    m = trace.magnitude[k].detach().to("cpu", torch.float32).clamp_min(0)
    m = m / m.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    up = F.interpolate(m[:, None], size=tuple(images.shape[1:3]), mode="nearest")[:, 0]
    return (1 - alpha) * images.detach().cpu().float() + alpha * apply_colormap(up)
