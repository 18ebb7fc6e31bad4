"""Draw the pictures of the node help pages (web/docs/img/) from the pack's own code and built-in model.

    python tools/make_doc_images.py          (any Python with torch, numpy and pillow; no ComfyUI, CPU, ~10 s)

- cfg_schedules.png: the CFG strength multiplier of each schedule over 10 scales (guidance.schedules);
- scales.png: the partial image after each scale of one built-in tiny-shapes sample, coarse to fine;
- heatmap.png: the Guidance Heatmap of that sample (guidance.heatmap.render_heatmap);
- compare_grid.png and sweep_plot.png are not drawn here: they are copies of the outputs of the examples
  "Tiny shapes, compare guiders" (.grid.png) and "Tiny shapes, guidance sweep" (.plot.png) that
  tools/generate_examples.py writes; copy them again when it regenerates those;
- web/icon.png: the pack's icon for the Comfy Registry (token maps of 1, 2, 3 and 4 tokens a side, coarse to fine,
  the finest one the star of that sample), 400 x 400.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if "scalewise" not in sys.modules:  # the repository as the package `scalewise`, as an installed copy would be
    _spec = importlib.util.spec_from_file_location("scalewise", ROOT / "__init__.py",
                                                   submodule_search_locations=[str(ROOT)])
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["scalewise"] = _module
    _spec.loader.exec_module(_module)

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from scalewise.guidance import CFG, Draw, Generation, sample  # noqa: E402
from scalewise.guidance.heatmap import apply_colormap, render_heatmap  # noqa: E402
from scalewise.guidance.schedules import SCHEDULE_NAMES, schedule_value  # noqa: E402
from scalewise.models.shapes import CLASS_NAMES, load_shapes_model  # noqa: E402

OUT = ROOT / "web" / "docs" / "img"
COLOURS = {"linear": (230, 90, 40), "constant": (40, 120, 220), "cosine": (60, 170, 90)}


def to_pil(image: torch.Tensor) -> Image.Image:
    """[3, H, W] in [0, 1] -> RGB image."""
    return Image.fromarray((image.clamp(0, 1).permute(1, 2, 0) * 255).round().byte().numpy())


def cfg_schedules(path: Path, cfg: float = 4.0, scales: int = 10) -> None:
    w, h, left, bottom, top = 420, 210, 40, 30, 12
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    top_value = 1 + cfg
    x = [left + (w - left - 110) * k / (scales - 1) for k in range(scales)]

    def y(v):
        return top + (h - top - bottom) * (1 - v / top_value)

    d.line([(left, top), (left, h - bottom), (w - 110, h - bottom)], fill="black")
    for v in range(0, int(top_value) + 1):
        d.text((left - 14, y(v) - 6), str(v), fill="black")
    d.text((left, h - bottom + 6), f"scale 0 ... {scales - 1} (cfg = {cfg:g})", fill="black")
    for i, name in enumerate(SCHEDULE_NAMES):
        values = [1 + cfg * schedule_value(name, k, scales) for k in range(scales)]
        d.line([(xk, y(v)) for xk, v in zip(x, values)], fill=COLOURS[name], width=3)
        d.text((w - 100, top + 16 * i), name, fill=COLOURS[name])
    d.text((w - 100, top + 60), "push =\n1 + cfg x s(k)", fill="black")
    img.save(path, optimize=True)


def scales_and_heatmap(scales_path: Path, heatmap_path: Path) -> list[torch.Tensor]:
    model = load_shapes_model()
    frames = []
    star = CLASS_NAMES.index("star")
    out = sample(model, CFG(3.0, "constant"), Generation([star], seed=3, draw=Draw(top_p=0.8)), trace=True,
                 callback=lambda p: frames.append(p.preview(max_images=1)[0]))
    side, gap = 96, 6
    strip = Image.new("RGB", (len(frames) * (side + gap) - gap, side), "white")
    for i, frame in enumerate(frames):
        strip.paste(to_pil(frame).resize((side, side), Image.NEAREST), (i * (side + gap), 0))
    strip.save(scales_path, optimize=True)
    grid = render_heatmap(out.trace, out.images.permute(0, 2, 3, 1))[0]
    Image.fromarray((grid * 255).round().byte().numpy()).save(heatmap_path, optimize=True)
    return frames


def icon(path: Path, frames: list[torch.Tensor], size: int = 400) -> None:
    """Four staggered token maps on a dark square: each scale's partial image pooled to its tokens, the shape's
    ink in magma colours, the finest map on top."""
    img = Image.new("RGB", (size, size), (24, 28, 38))
    d = ImageDraw.Draw(img)
    panel, step = 196, 52
    for i, frame in enumerate(frames):
        side = i + 1
        x0 = y0 = 28 + step * i
        ink = 1 - torch.nn.functional.adaptive_avg_pool2d(frame.mean(0, keepdim=True), side)[0]  # dark = shape
        colours = apply_colormap(0.25 + 0.7 * ink / ink.max().clamp(min=1e-6), "magma").permute(2, 0, 1)
        pic = to_pil(colours).resize((panel, panel), Image.NEAREST)
        img.paste(pic, (x0, y0))
        for t in range(side + 1):  # token grid lines
            c = round(t * panel / side)
            d.line([(x0 + c, y0), (x0 + c, y0 + panel)], fill=(24, 28, 38), width=3)
            d.line([(x0, y0 + c), (x0 + panel, y0 + c)], fill=(24, 28, 38), width=3)
    img.save(path, optimize=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    cfg_schedules(OUT / "cfg_schedules.png")
    frames = scales_and_heatmap(OUT / "scales.png", OUT / "heatmap.png")
    icon(ROOT / "web" / "icon.png", frames)
    for p in [*sorted(OUT.iterdir()), ROOT / "web" / "icon.png"]:
        print(f"{p.relative_to(ROOT)}  {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
