"""A procedural dataset of coloured shapes and patterns with exact foreground masks (no downloads).

Every image holds one object of one of ten classes, with a random colour, size, position and rotation on a
light background. Objects are rendered with 4x4 supersampling: the image blends foreground and
background by coverage, and the mask marks the pixels the object covers at least half of.
"""
from __future__ import annotations

import math

import numpy as np

from scalewise.models.shapes import CLASS_NAMES  # the built-in model's classes (runtime), in label order

# What the built-in VQ-VAE was trained on: a class-agnostic tokenizer, fed the first class list, which had two
# patterned squares instead of heart and bar. A 64 px, 4x4-token VQ-VAE of this size renders their 6 px
# checks and stripes as plain squares, so the model's classes are silhouettes; the list stays for reproduction.
VAE_CLASSES = ("circle", "ring", "square", "triangle", "cross", "star", "crescent", "stripes", "checkerboard", "dots")
LAYOUTS = tuple(dict.fromkeys(CLASS_NAMES + VAE_CLASSES))
SUPERSAMPLE = 4
BACKGROUND = np.array([0.93, 0.92, 0.89])


def _regular_polygon(n: int, radius: float, phase: float) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(n) / n
    return np.stack((radius * np.cos(angles), radius * np.sin(angles)), 1)


def _star_polygon(points: int, outer: float, inner: float) -> np.ndarray:
    angles = -math.pi / 2 + math.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack((radii * np.cos(angles), radii * np.sin(angles)), 1)


_TRIANGLE = _regular_polygon(3, 1.0, -math.pi / 2)
_STAR = _star_polygon(5, 1.0, 0.42)


def _inside_polygon(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule for points (u, v) against a closed polygon."""
    inside = np.zeros(u.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        crosses = (y0 > v) != (y1 > v)
        x_at = x0 + (v - y0) * (x1 - x0) / (y1 - y0 if y1 != y0 else 1e-12)
        inside ^= crosses & (u < x_at)
    return inside


def _square(u, v, half=0.8):
    return np.maximum(np.abs(u), np.abs(v)) <= half


def object_layers(name: str, u: np.ndarray, v: np.ndarray, detail: float) -> tuple[np.ndarray, np.ndarray]:
    """(covered, secondary) boolean maps in object coordinates (unit = object radius): `covered` is the
    object's extent; `secondary` marks the covered points painted in the second colour (patterns)."""
    r = np.hypot(u, v)
    none = np.zeros(u.shape, dtype=bool)
    if name not in LAYOUTS:
        raise ValueError(f"unknown shape {name!r}: one of {', '.join(LAYOUTS)}")
    if name == "circle":
        return r <= 1.0, none
    if name == "ring":
        return (r <= 1.0) & (r >= 0.58), none
    if name == "square":
        return _square(u, v), none
    if name == "triangle":
        return _inside_polygon(u, v, _TRIANGLE), none
    if name == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95)), none
    if name == "star":
        return _inside_polygon(u, v, _STAR), none
    if name == "heart":
        x, y = u * 1.2, 0.2 - v * 1.2
        return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0, none
    if name == "bar":
        return (np.abs(u) <= 0.95) & (np.abs(v) <= 0.3), none
    if name == "crescent":
        return (r <= 1.0) & (np.hypot(u - 0.5, v) > 0.8), none
    patch = _square(u, v, 0.85)
    if name == "stripes":
        return patch, patch & (np.floor((v + 0.85) * detail) % 2 == 1)
    if name == "checkerboard":
        return patch, patch & ((np.floor((u + 0.85) * detail) + np.floor((v + 0.85) * detail)) % 2 == 1)
    if name == "dots":
        cu, cv = np.round(u / 0.6).clip(-1, 1) * 0.6, np.round(v / 0.6).clip(-1, 1) * 0.6
        return np.hypot(u - cu, v - cv) <= 0.24, none
    raise AssertionError(name)


def _hsv_to_rgb(h, s, v):
    k = (np.array([5.0, 3.0, 1.0]) + h[..., None] * 6) % 6
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def render(labels, rng: np.random.Generator, size: int = 64, classes=CLASS_NAMES):
    """Images float32 [N, 3, size, size] in [0, 1] and masks bool [N, size, size]; labels index `classes`."""
    labels = np.asarray(labels, dtype=np.int64)
    n, s = len(labels), SUPERSAMPLE
    grid = (np.arange(size * s) + 0.5) / s  # pixel units
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    images = np.empty((n, 3, size, size), np.float32)
    masks = np.empty((n, size, size), bool)
    for i, label in enumerate(labels):
        radius = rng.uniform(0.22, 0.42) * size
        cx, cy = rng.uniform(radius, size - radius, 2)
        angle = rng.uniform(0, 2 * math.pi)
        ca, sa = math.cos(angle), math.sin(angle)
        u = ((gx - cx) * ca + (gy - cy) * sa) / radius
        v = (-(gx - cx) * sa + (gy - cy) * ca) / radius
        covered, secondary = object_layers(classes[int(label)], u, v, detail=rng.uniform(2.0, 2.6))
        # A fixed light background and a saturated object colour; patterns add a darker shade of it. (The official
        # VQ-VAE layout at ch 32 normalises every channel per image, which makes per-image colour offsets such as
        # random backgrounds very slow to learn for a CPU-sized training run.)
        colour = _hsv_to_rgb(np.array(rng.uniform()), np.array(rng.uniform(0.6, 1.0)), np.array(rng.uniform(0.35, 0.85)))
        colours = np.stack((colour, colour * 0.45))
        background = np.broadcast_to(BACKGROUND, gx.shape + (3,))
        paint = np.where(secondary[..., None], colours[1], colours[0])
        hi = np.where(covered[..., None], paint, background)
        images[i] = hi.reshape(size, s, size, s, 3).mean((1, 3)).transpose(2, 0, 1)
        masks[i] = covered.reshape(size, s, size, s).mean((1, 3)) >= 0.5
    return images, masks


def sample(count: int, seed: int, size: int = 64, classes=CLASS_NAMES):
    """`count` images with balanced labels (indices into `classes`) in a seeded random order:
    (images, masks, labels)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(classes))
    images, masks = render(labels, rng, size, classes)
    return images, masks, labels
