"""Strength sweeps: the strength list, the evenness/divergence balance point and its plot.

The IGG paper (Nguyen et al. 2025, arXiv 2509.23876, its evenness/divergence analysis)
reports that the best FID sat where evenness and divergence *balance*, not where either is optimised. The balance
point here is where E - D changes sign between two swept strengths (linear interpolation), or, when it never
does, the swept strength where |E - D| is smallest (the closest approach). Plain Python + PIL.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from .heatmap import BACKGROUND, DIM_TEXT, TEXT, ui_font
from .schedules import parse_number_list

EVENNESS_COLOR, DIVERGENCE_COLOR, BALANCE_COLOR = (252, 137, 97), (92, 200, 99), (80, 220, 255)


def parse_strengths(text: str, name: str = "strengths") -> tuple[float, ...]:
    """"1, 2, 3, 4, 6" -> (1.0, 2.0, 3.0, 4.0, 6.0), sorted ascending. Separators: commas, semicolons, line breaks
    or spaces (schedules.parse_number_list; an empty entry such as '1,,2' is refused). Raises ValueError naming
    `name` for an empty list, an empty entry, one that is not a finite plain decimal number, or a duplicate. The
    range is the swept guider's (its node's widget range, Guider.strength_range), checked by runs.sweep."""
    parts = parse_number_list(text, name, -math.inf, math.inf, spaces=True,
                              allowed="finite numbers in the swept guider's range")
    if not parts:
        raise ValueError(f"{name}: the list is empty; write the strengths separated by commas, e.g. '1, 2, 3, 4, 6'")
    values = []
    for value in parts:
        if value in values:
            raise ValueError(f"{name}: the strength {value:g} appears twice; list each strength once")
        values.append(value)
    return tuple(sorted(values))


@dataclass(frozen=True)
class Balance:
    """Where evenness E and divergence D balance over a strength sweep: the strength, how it was found and |E - D|
    there."""

    strength: float
    kind: str     # "crossing" (E - D changes sign there) or "closest" (smallest |E - D| of the swept strengths)
    gap: float    # |E - D| at that strength (0 at a crossing)


def balance_point(strengths, evenness, divergence) -> Balance | None:
    """Where evenness and divergence balance: the first sign change of E - D along ascending strengths, linearly
    interpolated, else the closest approach. Points with a NaN value are skipped; None when none is left."""
    points = sorted((float(x), float(e) - float(d)) for x, e, d in zip(strengths, evenness, divergence)
                    if not (math.isnan(float(e)) or math.isnan(float(d))))
    if not points:
        return None
    for (xa, da), (xb, db) in zip(points, points[1:]):
        if da == 0:
            return Balance(xa, "crossing", 0.0)
        if da * db < 0:
            return Balance(xa + (xb - xa) * da / (da - db), "crossing", 0.0)
    if points[-1][1] == 0:
        return Balance(points[-1][0], "crossing", 0.0)
    x, d = min(points, key=lambda p: abs(p[1]))
    return Balance(x, "closest", abs(d))


def _axis_range(values: list[float]) -> tuple[float, float]:
    """A y axis holding every finite value, padded 6 % each side; (0, 1) without any."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.06
    return lo - pad, hi + pad


def line_chart(series, *, title: str = "", note: str = "", xlabel: str = "strength",
               y_range: tuple[float, float] | None = (0.0, 1.0), marker: tuple[float, str, tuple] | None = None,
               size: tuple[int, int] = (720, 440)) -> Image.Image:
    """The pack's one line chart (the sweep node's plot, the benchmark's panels): a PIL RGB image of (W, H) =
    `size`.

    series: (name, points, colour) triples, points (x, y) pairs (NaN y skipped), colour an RGB triple or a
    PIL colour name; x ticks at every x of any series. y_range: the y axis (five grid lines), None = fitted to
    the values. marker: (x, legend text, colour) drawn as a dashed vertical line. The legend (names, then the
    marker's text) sits under the axes, two entries a row (a lone last entry may take the whole width)."""
    width, height = size
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font, small = ui_font(15), ui_font(12)
    series = [(name, [(float(x), float(v)) for x, v in points], colour) for name, points, colour in series]
    legend = [(name, colour) for name, _, colour in series] + ([marker[1:]] if marker is not None else [])
    legend_rows = max(2, (len(legend) + 1) // 2)
    left, right, top, bottom = 56, width - 20, 40 + (22 if note else 0), height - 52 - 20 * legend_rows
    xs = sorted({x for _, points, _ in series for x, _ in points})
    lo, hi = min(xs), max(xs)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    ylo, yhi = y_range if y_range is not None else _axis_range([v for _, pts, _ in series for _, v in pts])
    digits = max(0, 2 - math.floor(math.log10(yhi - ylo)))  # tick labels that differ from each other

    def px(x, y):
        return left + (x - lo) / (hi - lo) * (right - left), bottom - (y - ylo) / (yhi - ylo) * (bottom - top)

    draw.text((left, 10), title, font=font, fill=TEXT)
    if note:
        draw.text((left, 32), note, font=small, fill=DIM_TEXT)
    for i in range(5):  # y grid
        y = ylo + (yhi - ylo) * i / 4
        _, py = px(lo, y)
        draw.line([(left, py), (right, py)], fill=(50, 50, 56))
        label = f"{y:.{digits}f}"  # left of the axis; a long one right-aligned so that it stays clear of it
        draw.text((min(left - 34, left - 6 - draw.textlength(label, font=small)), py - 7), label, font=small,
                  fill=DIM_TEXT)
    for x in xs:  # x ticks
        qx, _ = px(x, ylo)
        draw.line([(qx, bottom), (qx, bottom + 5)], fill=DIM_TEXT)
        label = f"{x:g}"
        draw.text((qx - draw.textlength(label, font=small) / 2, bottom + 8), label, font=small, fill=DIM_TEXT)
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=DIM_TEXT)
    draw.text(((left + right) / 2 - 28, bottom + 26), xlabel, font=small, fill=DIM_TEXT)
    for _, points, colour in series:
        pts = [px(x, v) for x, v in sorted(points, key=lambda p: p[0]) if not math.isnan(v)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=3)
        for qx, qy in pts:
            draw.ellipse([qx - 4, qy - 4, qx + 4, qy + 4], fill=colour)
    if marker is not None:
        bx, _ = px(marker[0], ylo)
        for y0 in range(int(top), int(bottom), 10):  # dashed
            draw.line([(bx, y0), (bx, min(y0 + 5, bottom))], fill=marker[2], width=2)
    for i, (text, colour) in enumerate(legend):
        x, y = left + (i % 2) * (right - left) // 2, bottom + 46 + 20 * (i // 2)
        draw.rectangle([x, y + 3, x + 14, y + 13], fill=colour)
        draw.text((x + 20, y), text, font=small, fill=TEXT)
    return canvas


def render_balance_plot(strengths, evenness, divergence=None, balance: Balance | None = None, *,
                        title: str = "", note: str = "", size: tuple[int, int] = (720, 440)) -> torch.Tensor:
    """Evenness (and divergence, when given) against strength on a 0-1 axis, the balance point marked by a
    vertical line and named in the legend (`line_chart`): IMAGE float32 [1, H, W, 3] with (W, H) = `size`."""
    xs = [float(x) for x in strengths]
    series = [("evenness E", list(zip(xs, evenness)), EVENNESS_COLOR)]
    if divergence is not None:
        series.append(("divergence D", list(zip(xs, divergence)), DIVERGENCE_COLOR))
    marker = None
    if balance is not None:
        marker = (balance.strength, f"balance: E = D at {balance.strength:.3g} (interpolated crossing)"
                  if balance.kind == "crossing" else f"no crossing: closest approach at {balance.strength:g} "
                  f"(|E - D| = {balance.gap:.3f})", BALANCE_COLOR)
    canvas = line_chart(series, title=title or "evenness and divergence against strength", note=note,
                        marker=marker, size=size)
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255)[None]
