"""Write the input pictures of the editing example workflows with the pack's own shape generator.

    python tools/make_edit_pictures.py

example_workflows/input/scalewise_circle.png: a 64 px circle picture (tools/shapes/data.py, the first seed whose
circle is centred within 1 px with a radius of 18-22 px) whose alpha channel is 0 on the circle: Load Image turns
that into its MASK (1 - alpha), as if painted in the mask editor. scalewise_circle_band.png: its middle 32 columns
(64 x 32, no alpha), for out-painting with fit = pad, which puts the band back where it was and regenerates both sides. The pack copies both into ComfyUI's input folder when it loads.
"""
from __future__ import annotations

import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (makes the repository importable as `scalewise`)

from scalewise.models.shapes import CLASS_NAMES  # noqa: E402
from scalewise.tools.shapes.data import render  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_workflows", "input")


def centred_circle(size: int = 64):
    for seed in range(10_000):
        image, mask = render([CLASS_NAMES.index("circle")], np.random.default_rng(seed), size)
        ys, xs = np.nonzero(mask[0])
        radius = np.sqrt(mask[0].sum() / np.pi)
        if abs(ys.mean() + 0.5 - size / 2) <= 1 and abs(xs.mean() + 0.5 - size / 2) <= 1 and 18 <= radius <= 22:
            return seed, image[0], mask[0]
    raise RuntimeError("no centred circle found")


def main():
    os.makedirs(OUT, exist_ok=True)
    seed, image, mask = centred_circle()
    rgb = (image.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    alpha = np.where(mask, 0, 255).astype(np.uint8)[..., None]
    Image.fromarray(np.concatenate((rgb, alpha), -1), "RGBA").save(os.path.join(OUT, "scalewise_circle.png"))
    Image.fromarray(np.ascontiguousarray(rgb[:, 16:48]), "RGB").save(os.path.join(OUT, "scalewise_circle_band.png"))
    print(f"seed {seed}: wrote scalewise_circle.png (alpha 0 on the circle) and scalewise_circle_band.png to {OUT}")


if __name__ == "__main__":
    main()
