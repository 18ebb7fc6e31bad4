"""Strength sweeps: the strength list, the evenness/divergence balance point and its plot.

The IGG paper (Nguyen et al. 2025, arXiv 2509.23876, its evenness/divergence analysis)
reports that the best FID sat where evenness and divergence *balance*, not where either is optimised. The balance
point here is where E - D changes sign between two swept strengths (linear interpolation), or, when it never
does, the swept strength where |E - D| is smallest (the closest approach). Plain Python + PIL.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from .heatmap import BACKGROUND, DIM_TEXT, TEXT, ui_font

EVENNESS_COLOR, DIVERGENCE_COLOR, BALANCE_COLOR = (252, 137, 97), (92, 200, 99), (80, 220, 255)


def parse_strengths(text: str, name: str = "strengths") -> tuple[float, ...]:
    """"1, 2, 3, 4, 6" -> (1.0, 2.0, 3.0, 4.0, 6.0), sorted ascending. Separators: commas, semicolons or spaces.
    Raises ValueError naming `name` for an empty list, an entry that is not a finite number, or a duplicate."""
    parts = [p for p in re.split(r"[,;\s]+", str(text).strip()) if p]
    if not parts:
        raise ValueError(f"{name}: the list is empty; write the strengths separated by commas, e.g. '1, 2, 3, 4, 6'")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{name}: {part!r} is not a number (expected e.g. '1, 2, 3, 4, 6')") from None
        if not math.isfinite(value):
            raise ValueError(f"{name}: {part!r} is not a finite number")
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


def render_balance_plot(strengths, evenness, divergence=None, balance: Balance | None = None, *,
                        title: str = "", note: str = "", size: tuple[int, int] = (720, 440)) -> torch.Tensor:
    """Evenness (and divergence, when given) against strength on a 0-1 axis, the balance point marked by a
    vertical line and named in the legend: IMAGE float32 [1, H, W, 3] with (W, H) = `size`."""
    width, height = size
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font, small = ui_font(15), ui_font(12)
    left, right, top, bottom = 56, width - 20, 40 + (22 if note else 0), height - 92
    xs = [float(x) for x in strengths]
    lo, hi = min(xs), max(xs)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad

    def px(x, y):
        return left + (x - lo) / (hi - lo) * (right - left), bottom - y * (bottom - top)

    draw.text((left, 10), title or "evenness and divergence against strength", font=font, fill=TEXT)
    if note:
        draw.text((left, 32), note, font=small, fill=DIM_TEXT)
    for y in (0.0, 0.25, 0.5, 0.75, 1.0):  # y grid
        _, py = px(lo, y)
        draw.line([(left, py), (right, py)], fill=(50, 50, 56))
        draw.text((left - 34, py - 7), f"{y:.2f}", font=small, fill=DIM_TEXT)
    for x in xs:  # x ticks at the swept strengths
        qx, _ = px(x, 0)
        draw.line([(qx, bottom), (qx, bottom + 5)], fill=DIM_TEXT)
        label = f"{x:g}"
        draw.text((qx - draw.textlength(label, font=small) / 2, bottom + 8), label, font=small, fill=DIM_TEXT)
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=DIM_TEXT)
    draw.text(((left + right) / 2 - 28, bottom + 26), "strength", font=small, fill=DIM_TEXT)

    series = [("evenness E", evenness, EVENNESS_COLOR)]
    if divergence is not None:
        series.append(("divergence D", divergence, DIVERGENCE_COLOR))
    for _, values, color in series:
        pts = [px(x, float(v)) for x, v in sorted(zip(xs, values)) if not math.isnan(float(v))]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=3)
        for qx, qy in pts:
            draw.ellipse([qx - 4, qy - 4, qx + 4, qy + 4], fill=color)
    legend = [(name, color) for name, _, color in series]
    if balance is not None:
        bx, _ = px(balance.strength, 0)
        for y0 in range(int(top), int(bottom), 10):  # dashed
            draw.line([(bx, y0), (bx, min(y0 + 5, bottom))], fill=BALANCE_COLOR, width=2)
        legend.append((f"balance: E = D at {balance.strength:.3g} (interpolated crossing)" if balance.kind ==
                       "crossing" else f"no crossing: closest approach at {balance.strength:g} "
                       f"(|E - D| = {balance.gap:.3f})", BALANCE_COLOR))
    y = bottom + 46
    for i, (text, color) in enumerate(legend):
        x = left + (i % 2) * (right - left) // 2 if len(legend) < 3 or i < 2 else left
        y_row = y + (0 if i < 2 else 20)
        draw.rectangle([x, y_row + 3, x + 14, y_row + 13], fill=color)
        draw.text((x + 20, y_row), text, font=small, fill=TEXT)
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255)[None]
