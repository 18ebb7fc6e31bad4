"""A procedural dataset of 128 px scenes with an exact foreground mask of their main object (no downloads).

Each scene has a background (flat colour, two-colour linear gradient, stripes, or smooth two-colour noise), one to
three small distractor shapes of other classes, and the main object, one of the ten shape classes of the tiny
model (tools/shapes/data.py `object_layers`), drawn last so that nothing covers it. The main object is filled flat
or with stripes of two shades, and its luma is kept at least 0.25 from the scene's mean luma, so it stays visible.
Everything is rendered at 2x2 supersampling; the mask marks the pixels of which the main object covers at least
half (2 of the 4 subsamples).
"""
from __future__ import annotations

import math

import numpy as np

from scalewise.models.scenes import CLASS_NAMES, RESOLUTION
from scalewise.tools.shapes.data import object_layers

SUPERSAMPLE = 2
BACKGROUNDS = ("flat", "gradient", "stripes", "noise")
MAIN_RADIUS = (0.22, 0.34)        # fraction of the image side (28-44 px at 128 px)
DISTRACTOR_RADIUS = (0.07, 0.12)  # 9-15 px at 128 px
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights
LUMA_GAP = 0.25


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV (each float array of one shape, h, s, v in [0, 1]) -> RGB float array [..., 3] in [0, 1] (the standard
    hexcone formula: c = v - v s clip(min(k, 4 - k), 0, 1), k = (n + 6 h) mod 6, n = 5, 3, 1 for R, G, B)."""
    h, s, v = np.asarray(h, float), np.asarray(s, float), np.asarray(v, float)
    k = (np.array([5.0, 3.0, 1.0]) + h[..., None] * 6) % 6
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def _random_colour(rng: np.random.Generator, value_range=(0.2, 0.95), saturation=(0.3, 1.0)) -> np.ndarray:
    return hsv_to_rgb(rng.uniform(), rng.uniform(*saturation), rng.uniform(*value_range))


def _background(rng: np.random.Generator, gx: np.ndarray, gy: np.ndarray, size: int) -> np.ndarray:
    """A background [H, W, 3] on the supersampled grid (pixel units gx, gy)."""
    kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    a, b = _random_colour(rng), _random_colour(rng)
    if kind == "flat":
        return np.broadcast_to(a, gx.shape + (3,)).copy()
    angle = rng.uniform(0, 2 * math.pi)
    along = (gx - size / 2) * math.cos(angle) + (gy - size / 2) * math.sin(angle)  # pixels from the centre
    if kind == "gradient":
        t = np.clip(along / (size * 0.75) + 0.5, 0, 1)
    elif kind == "stripes":
        period = rng.uniform(6.0, 16.0)
        t = (np.floor(along / (period / 2)) % 2).astype(float)
        b = a * 0.6 + b * 0.4  # stripes of two related shades keep the main object the strongest edge
    else:  # smooth noise: a random 5x5 field, bilinearly interpolated
        field = rng.uniform(0, 1, (5, 5))
        fy, fx = gy / size * 4, gx / size * 4
        y0, x0 = np.clip(np.floor(fy).astype(int), 0, 3), np.clip(np.floor(fx).astype(int), 0, 3)
        wy, wx = fy - y0, fx - x0
        t = (field[y0, x0] * (1 - wy) * (1 - wx) + field[y0 + 1, x0] * wy * (1 - wx)
             + field[y0, x0 + 1] * (1 - wy) * wx + field[y0 + 1, x0 + 1] * wy * wx)
    return a * (1 - t[..., None]) + b * t[..., None]


def _place(rng, gx, gy, size, radius_range, name, detail=2.3):
    """Coverage (bool, supersampled grid) of one shape `name` at a random position, size and rotation."""
    radius = rng.uniform(*radius_range) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    angle = rng.uniform(0, 2 * math.pi)
    ca, sa = math.cos(angle), math.sin(angle)
    u = ((gx - cx) * ca + (gy - cy) * sa) / radius
    v = (-(gx - cx) * sa + (gy - cy) * ca) / radius
    covered, _ = object_layers(name, u, v, detail)
    return covered, u, v


def render(labels, rng: np.random.Generator, size: int = RESOLUTION, classes=CLASS_NAMES):
    """Scenes for the main-object labels (indices into `classes`): images float32 [N, 3, size, size] in [0, 1] and
    the main objects' masks bool [N, size, size]. Raises IndexError for a label outside `classes`."""
    labels = np.asarray(labels, dtype=np.int64)
    n, s = len(labels), SUPERSAMPLE
    grid = (np.arange(size * s) + 0.5) / s  # pixel units
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    images = np.empty((n, 3, size, size), np.float32)
    masks = np.empty((n, size, size), bool)
    for i, label in enumerate(labels):
        name = classes[int(label)]
        canvas = _background(rng, gx, gy, size)
        others = [c for c in classes if c != name]
        for _ in range(rng.integers(1, 4)):
            covered, _, _ = _place(rng, gx, gy, size, DISTRACTOR_RADIUS, others[rng.integers(len(others))])
            canvas[covered] = _random_colour(rng)
        covered, u, v = _place(rng, gx, gy, size, MAIN_RADIUS, name)
        # Luma at least LUMA_GAP apart from the scene's mean: light objects on dark scenes, dark ones on light
        # scenes (colours drawn again until the gap holds; the last draw is kept after 30 tries).
        scene_luma = float(canvas.reshape(-1, 3).mean(0) @ LUMA)
        light = scene_luma < 0.5
        for _ in range(30):
            colour = _random_colour(rng, (0.7, 1.0) if light else (0.05, 0.4), (0.5, 1.0))
            if abs(float(colour @ LUMA) - scene_luma) >= LUMA_GAP:
                break
        if rng.uniform() < 0.3:  # striped fill: the object's colour and a shade of it
            period = rng.uniform(0.35, 0.6)
            stripe = np.floor(u / period) % 2 == 1
            shade = colour * 0.7 if light else np.clip(colour + 0.25, 0, 1)
            canvas[covered] = np.where(stripe[covered][:, None], shade, colour)
        else:
            canvas[covered] = colour
        images[i] = canvas.reshape(size, s, size, s, 3).mean((1, 3)).transpose(2, 0, 1)
        masks[i] = covered.reshape(size, s, size, s).sum((1, 3)) >= (s * s + 1) // 2
    return images, masks


def sample(count: int, seed: int, size: int = RESOLUTION, classes=CLASS_NAMES):
    """`count` scenes with balanced main-object labels (indices into `classes`) in a seeded random order:
    (images float32 [N, 3, size, size] in [0, 1], masks bool [N, size, size], labels int64 [N])."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(classes))
    images, masks = render(labels, rng, size, classes)
    return images, masks, labels


__all__ = ["BACKGROUNDS", "SUPERSAMPLE", "hsv_to_rgb", "render", "sample"]
