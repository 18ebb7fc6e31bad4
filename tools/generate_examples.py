"""Generate the example workflows, their API-format twins and their thumbnails.

For every example below this script

1. builds the workflow in API format with ComfyUI's ``GraphBuilder(prefix="")`` (node ids "1", "2", ...) and
   writes it to ``tests/workflows/<name>.json`` (what CI queues with ``POST /prompt``);
2. loads it into the real ComfyUI frontend in headless Chromium (``app.loadApiJson``), lays the nodes out in
   readable, non-overlapping columns, sets the seed widget to "fixed" and checks that the page converts it back
   to exactly the same API JSON (widget inputs a builder leaves out get the server's defaults first);
3. serialises the graph *in the page* (``JSON.stringify(app.graph.serialize())``, the UI format) and writes that
   string unchanged to ``example_workflows/<name>.json`` (UI format, listed under Templates -> Extensions);
4. queues it once from the page (as the Run button does) and waits until it has run, so the outputs, previews and
   the heat-map scores are visible, then
5. screenshots the graph (UI chrome hidden by focus mode) and writes ``example_workflows/<name>.jpg``.

The example files name the official checkpoints (``var_d16.pth``, ``vae_ch160v4096z32.pth``; Switti's
``Switti/model.safetensors``, ``Switti-1024/model.safetensors``, ``VQVAE-Switti/model.safetensors`` with ComfyUI's
``clip_l.safetensors`` + ``clip_g.safetensors``); the script starts its own ComfyUI test server
(tests/integration/comfy_server.py) whose models folders hold tiny random stand-ins under those names (full-size
random CLIP files), so it needs no real weights and runs on CPU (80-170 s on 2 busy cores). The images in the
thumbnails are therefore noise from random weights: the thumbnails show the graph, not image quality. The exception
is the first example, ``Start here (tiny shapes model, no download)``: it uses the model built into the pack (``tiny-shapes (built
in)``, models/shapes/), so its thumbnail shows real samples; regenerate it alone whenever those weights change:

    COMFY_DIR=$PWD/.comfy-ci/ComfyUI .comfy-ci/venv/bin/python tools/generate_examples.py --only 'Start here (tiny shapes model, no download)'

The other ``Tiny shapes, ...`` examples (compare guiders, guidance sweep, the editing ones) use the built-in model
too; ``Tiny scenes (128 px), guidance sweep`` uses the second built-in model, ``scenes-128 (built in)``
(models/scenes/). A layout's ``outputs`` maps a node id to a key: the first image that node showed is written as
``example_workflows/<name>.<key>.png`` (the comparison grid, its heat maps, the sweep's plot), the README's
pictures of real output made through the real frontend and server.

A layout may also hold ``notes``: Note nodes (frontend only, not in the API JSON) added in the page, referred to in
the other layout keys by their placeholder key.

Run from the repository root with the ComfyUI venv's interpreter (it has playwright; Chromium is Debian's):

    COMFY_DIR=$PWD/.comfy-ci/ComfyUI .comfy-ci/venv/bin/python tools/generate_examples.py

Options: ``--only NAME [NAME ...]`` regenerates some examples; ``--base http://127.0.0.1:PORT`` uses a server that
is already running (with the stand-in models) instead of starting one; ``--no-run`` skips execution (the
thumbnail then shows the graph without outputs); ``--keep-server-log`` prints where the server log is.
Environment: ``CHROMIUM`` (default /usr/bin/chromium).
"""
from __future__ import annotations

import argparse
import atexit
import importlib.util
import io
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO / "example_workflows"
API_DIR = REPO / "tests" / "workflows"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1600, "height": 1000}
THUMB_MAX_WIDTH = 1200

# The official file names; the test server holds tiny random stand-ins under them (fixtures_models.py).
VAR_FILE, VAE_FILE = "var_d16.pth", "vae_ch160v4096z32.pth"
CLASSES = {207: "207: golden retriever", 980: "980: volcano", 88: "88: macaw"}
# Switti: one folder per Hugging Face repo (models/switti/<repo>/model.safetensors) and ComfyUI's SDXL CLIP files.
SWITTI_FILES = {512: "Switti/model.safetensors", 1024: "Switti-1024/model.safetensors"}
SWITTI_VAE_FILE = "VQVAE-Switti/model.safetensors"
CLIP_L_FILE, CLIP_G_FILE = "clip_l.safetensors", "clip_g.safetensors"
SWITTI_PROMPT = "a cute red panda sitting on a mossy rock, soft morning light, highly detailed photograph"


# --------------------------------------------------------------------------------------------------------------
# The examples (API format). Every widget input is written out, so the API files are complete and readable.
# Each builder returns (prompt, layout): layout["columns"] lists node ids column by column (stacked top-down),
# layout["align"] maps a node id to one whose top it should not start above, layout["rows"] lists groups of nodes
# that share their top edge, layout["sizes"] sets node sizes (at least the node's minimum), layout["titles"]
# sets node titles (API `_meta.title`, which loadApiJson applies).
# --------------------------------------------------------------------------------------------------------------

def _loader(g):
    return g.node("ScalewiseVARLoader", var_name=VAR_FILE, vae_name=VAE_FILE, dtype="auto")


def _klass(g, class_id):
    return g.node("ScalewiseImageNetClass", class_name=CLASSES[class_id], class_id=-1, batch_classes="")


def _cfg(g, cfg=4.0, base=None, schedule="linear"):
    n = g.node("ScalewiseCFGGuider", cfg=cfg, schedule=schedule, start_scale=0, end_scale=0, power=1.0)
    if base is not None:
        n.set_input("base", base.out(0))
    return n


def _igg(g, scale=4.0, base=None):
    n = g.node("ScalewiseIGGGuider", scale=scale, schedule="linear", window="global", window_size=3,
               operand="raw_logits", start_scale=0, end_scale=0)
    if base is not None:
        n.set_input("base", base.out(0))
    return n


def _ssg(g, base=None, beta=0.1):
    n = g.node("ScalewiseSSGGuider", beta=beta, schedule="constant", custom_betas="", dse_rescale=True,
               interpolation="bilinear", prior_source="guided_pre_ssg")
    if base is not None:
        n.set_input("base", base.out(0))
    return n


def _sampler(g, model, cond, guider, seed=0, preview="every scale"):
    return g.node("ScalewiseSampler", model=model.out(0), conditioning=cond.out(0), guider=guider.out(0),
                  seed=seed, batch_size=1, top_k=900, top_p=0.95, more_smooth=False, preview=preview,
                  smooth_start_scale=0, last_scale_temperature=1.0)


def _save(g, sampler, prefix):
    return g.node("SaveImage", images=sampler.out(0), filename_prefix=prefix)


SAVE_SIZE = [300, 360]


def _chain(g, class_id, guiders, prefix):
    """loader + class + a stack of guiders (bottom first) -> sampler -> SaveImage."""
    model, cond = _loader(g), _klass(g, class_id)
    top = None
    nodes = []
    for make in guiders:
        top = make(g, top)
        nodes.append(top)
    sampler = _sampler(g, model, cond, top)
    save = _save(g, sampler, prefix)
    return model, cond, nodes, sampler, save


def var_cfg(g):
    model, cond, (cfg,), sampler, save = _chain(g, 207, [lambda g, b: _cfg(g, 4.0, b)], "scalewise/var_cfg")
    return {"columns": [[model.id, cond.id, cfg.id], [sampler.id], [save.id]],
            "sizes": {save.id: SAVE_SIZE}}


def var_igg(g):
    model, cond, (igg,), sampler, save = _chain(g, 980, [lambda g, b: _igg(g, 4.0, b)], "scalewise/var_igg")
    return {"columns": [[model.id, cond.id, igg.id], [sampler.id], [save.id]],
            "sizes": {save.id: SAVE_SIZE}}


def var_softcfg(g):
    def soft(g, base):
        return g.node("ScalewiseSoftCFGGuider", base=base.out(0), strength=1.0, normalization="global",
                      confidence="max", floor=0.05)

    model, cond, (cfg, sc), sampler, save = _chain(g, 88, [lambda g, b: _cfg(g, 4.0, b), soft],
                                                   "scalewise/var_softcfg")
    return {"columns": [[model.id, cond.id, cfg.id], [sc.id], [sampler.id], [save.id]],
            "align": {sc.id: cfg.id}, "sizes": {save.id: SAVE_SIZE}}


def var_ssg(g):
    model, cond, (cfg, ssg), sampler, save = _chain(g, 207, [lambda g, b: _cfg(g, 4.0, b), _ssg],
                                                    "scalewise/var_ssg")
    return {"columns": [[model.id, cond.id, cfg.id], [ssg.id], [sampler.id], [save.id]],
            "align": {ssg.id: cfg.id}, "sizes": {save.id: SAVE_SIZE}}


def var_ssg_over_igg(g):
    model, cond, (cfg, igg, ssg), sampler, save = _chain(
        g, 980, [lambda g, b: _cfg(g, 4.0, b), lambda g, b: _igg(g, 4.0, b), _ssg], "scalewise/var_ssg_over_igg")
    return {"columns": [[model.id, cond.id, cfg.id], [igg.id], [ssg.id], [sampler.id], [save.id]],
            "align": {igg.id: cfg.id, ssg.id: cfg.id}, "sizes": {save.id: SAVE_SIZE}}


def var_cfg_vs_igg_heatmap(g):
    """One class and seed, two samplers (CFG 4 vs IGG 4), each with an image preview and a guidance heat map.
    Per-scale previews are off here: the heat maps show the scales, and the samplers stay compact."""
    model, cond = _loader(g), _klass(g, 207)
    cfg = _cfg(g, 4.0)
    igg = _igg(g, 4.0)
    s_cfg = _sampler(g, model, cond, cfg, preview="off")
    s_igg = _sampler(g, model, cond, igg, preview="off")
    p_cfg = g.node("PreviewImage", images=s_cfg.out(0))
    p_igg = g.node("PreviewImage", images=s_igg.out(0))
    heat = {}
    for key, s in (("cfg", s_cfg), ("igg", s_igg)):
        heat[key] = g.node("ScalewiseGuidanceHeatmap", trace=s.out(1), image=s.out(0), normalize="scale",
                           colormap="magma", overlay_alpha=0.5)
    titles = {s_cfg.id: "Sampler (CFG 4)", s_igg.id: "Sampler (IGG 4)", p_cfg.id: "Image (CFG)",
              p_igg.id: "Image (IGG)", heat["cfg"].id: "Guidance Heatmap (CFG)",
              heat["igg"].id: "Guidance Heatmap (IGG)"}
    return {"columns": [[model.id, cond.id, cfg.id, igg.id], [s_cfg.id, s_igg.id], [p_cfg.id, p_igg.id],
                        [heat["cfg"].id, heat["igg"].id]],
            "align": {s_igg.id: cfg.id},
            "rows": [[s_cfg.id, p_cfg.id, heat["cfg"].id], [s_igg.id, p_igg.id, heat["igg"].id]],
            "sizes": {p_cfg.id: [240, 290], p_igg.id: [240, 290],
                      heat["cfg"].id: [560, 470], heat["igg"].id: [560, 470]},
            "titles": titles}


def _switti(g, reso, start_scale, end_scale):
    """Switti text-to-image with the official settings (Switti README, notebook): cfg 6 on the linear ramp, top_k 400,
    top_p 0.95, Gumbel smoothing from scale 2, temperature 0.1 once CFG has stopped, seed 59. The guided window
    differs: the 512 notebook guides scales 2-7 (turn_on 2, turn_off 8), the README 1024 example scales 0-10."""
    clip = g.node("DualCLIPLoader", clip_name1=CLIP_L_FILE, clip_name2=CLIP_G_FILE, type="sdxl",
                  device="default")
    text = g.node("ScalewiseSwittiTextEncode", clip=clip.out(0), positive=SWITTI_PROMPT, negative="")
    model = g.node("ScalewiseSwittiLoader", switti_name=SWITTI_FILES[reso], vae_name=SWITTI_VAE_FILE, dtype="auto")
    cfg = g.node("ScalewiseCFGGuider", cfg=6.0, schedule="linear", start_scale=start_scale, end_scale=end_scale,
                 power=1.0)
    sampler = g.node("ScalewiseSampler", model=model.out(0), conditioning=text.out(0), guider=cfg.out(0), seed=59,
                     batch_size=1, top_k=400, top_p=0.95, more_smooth=True, preview="every scale",
                     smooth_start_scale=2, last_scale_temperature=0.1)
    save = _save(g, sampler, f"scalewise/switti_{reso}")
    # model, prompt and guider stacked in the sampler's input order, the CLIP loader beside the prompt: every link
    # runs left to right without crossing another link or a node
    return {"columns": [[clip.id], [model.id, text.id, cfg.id], [sampler.id], [save.id]],
            "align": {clip.id: text.id},
            "sizes": {clip.id: [340, 0], text.id: [420, 220], model.id: [420, 0], cfg.id: [420, 0],
                      save.id: SAVE_SIZE},
            "titles": {cfg.id: f"Scale-wise CFG Guider (Switti {reso})"}}


VAR_CLIP_FILE = "var_clip_d16.pth"          # the released ar-ckpt-last.pth, under the name the README gives it
VAR_CLIP_PROMPT = "a sailboat with a sail at sunset"  # the official demo's prompt


def var_clip_igg(g):
    """VAR-CLIP text to image with IGG at strength 4 (the official demo: cfg 4, top_k 900, top_p 0.95), the prompt from
    ComfyUI's clip_l through VAR-CLIP Text Encode."""
    clip = g.node("CLIPLoader", clip_name=CLIP_L_FILE, type="stable_diffusion", device="default")
    text = g.node("ScalewiseVARCLIPTextEncode", clip=clip.out(0), prompt=VAR_CLIP_PROMPT)
    model = g.node("ScalewiseVARLoader", var_name=VAR_CLIP_FILE, vae_name=VAE_FILE, dtype="auto")
    igg = _igg(g, 4.0)
    sampler = _sampler(g, model, text, igg)
    save = _save(g, sampler, "scalewise/var_clip_igg")
    return {"columns": [[clip.id], [model.id, text.id, igg.id], [sampler.id], [save.id]],
            "align": {clip.id: text.id},
            "sizes": {clip.id: [340, 0], text.id: [420, 200], model.id: [420, 0], igg.id: [420, 0],
                      save.id: SAVE_SIZE}}


# Infinity (FoundationVision/Infinity): the released files under models/infinity, flan-t5-xl's Hugging Face download
# folder under models/text_encoders (Load Infinity Text Encoder lists it as its index JSON)
INFINITY_FILES = {"2B": ("infinity_2b_reg.pth", "infinity_vae_d32reg.pth"),
                  "8B": ("infinity_8b_weights/model.safetensors.index.json", "infinity_vae_d56_f8_14_patchify.pth")}
FLAN_T5_ENTRY = "flan-t5-xl/model.safetensors.index.json"
INFINITY_PROMPT = "a lighthouse on a rocky coast at sunset"  # short: the stand-in model holds 16 tokens
INFINITY_TAU = {"2B": 0.5, "8B": 1.0}  # the official notebooks' tau (cfg 3 for both)
# Where the frontend's missing-models dialog finds each file (the workflow's top-level "models" list)
HF = "https://huggingface.co"
INFINITY_DOWNLOADS = {
    "infinity_2b_reg.pth": (f"{HF}/FoundationVision/Infinity/resolve/main/infinity_2b_reg.pth", "infinity"),
    "infinity_vae_d32reg.pth": (f"{HF}/FoundationVision/Infinity/resolve/main/infinity_vae_d32reg.pth", "infinity"),
    "infinity_vae_d56_f8_14_patchify.pth": (
        f"{HF}/FoundationVision/Infinity/resolve/main/infinity_vae_d56_f8_14_patchify.pth", "infinity"),
}


def _infinity(g, variant="2B", guider=None, edit=None, prefix=None, resolution="1024×1024 (1:1, 1M)"):
    """Infinity text to image as its notebooks run it: cfg 3 (constant: Infinity's cfg_list), tau 0.5 for the 2B
    (1.0 for the 8B) as the samplers' temperature, top_k 900, top_p 0.97, 1024 x 1024; flan-t5-xl through Load
    Infinity Text Encoder; `resolution` one of Load Infinity Model's sizes."""
    infinity, vae = INFINITY_FILES[variant]
    clip = g.node("ScalewiseInfinityTextEncoderLoader", text_encoder_name=FLAN_T5_ENTRY, dtype="auto",
                  device="default")
    text = g.node("ScalewiseInfinityTextEncode", clip=clip.out(0), positive=INFINITY_PROMPT, negative="")
    model = g.node("ScalewiseInfinityLoader", infinity_name=infinity, vae_name=vae, resolution=resolution,
                   dtype="auto")
    guide = guider if guider is not None else _cfg(g, 3.0, schedule="constant")
    inputs = {} if edit is None else edit
    sampler = g.node("ScalewiseSampler", model=model.out(0), conditioning=text.out(0), guider=guide.out(0), seed=0,
                     batch_size=1, top_k=900, top_p=0.97, more_smooth=False, preview="every scale",
                     smooth_start_scale=0, last_scale_temperature=1.0, temperature=INFINITY_TAU[variant], **inputs)
    save = _save(g, sampler, prefix or f"scalewise/infinity_{variant.lower()}")
    return clip, text, model, guide, sampler, save


def infinity_2b(g):
    """Infinity-2B text to image with the official notebook's settings."""
    clip, text, model, cfg, sampler, save = _infinity(g, "2B")
    return {"columns": [[clip.id], [model.id, text.id, cfg.id], [sampler.id], [save.id]],
            "align": {clip.id: text.id},
            "sizes": {clip.id: [360, 0], text.id: [420, 220], model.id: [420, 0], cfg.id: [420, 0],
                      save.id: SAVE_SIZE},
            "titles": {cfg.id: "Scale-wise CFG Guider (Infinity: cfg 3 = its own 3)"}}


def infinity_8b(g):
    """Infinity-8B (its sharded download folder and the patchify VAE) with its notebook's settings (tau 1), wide:
    1440 x 720, the official 2:1 template at 1M."""
    clip, text, model, cfg, sampler, save = _infinity(g, "8B", resolution="1440×720 (2:1, 1M)")
    return {"columns": [[clip.id], [model.id, text.id, cfg.id], [sampler.id], [save.id]],
            "align": {clip.id: text.id},
            "sizes": {clip.id: [360, 0], text.id: [420, 220], model.id: [460, 0], cfg.id: [420, 0],
                      save.id: SAVE_SIZE}}


def infinity_inpaint_igg(g):
    """Infinity-2B in-painting of ComfyUI's example.png with IGG 1 over CFG 3: the prompt describes the region."""
    load = g.node("LoadImage", image="example.png")
    empty = g.node("SolidMask", value=0.0, width=768, height=768)
    box = g.node("SolidMask", value=1.0, width=384, height=384)
    mask = g.node("MaskComposite", destination=empty.out(0), source=box.out(0), x=192, y=192, operation="add")
    cfg = _cfg(g, 3.0, schedule="constant")
    igg = _igg(g, 1.0, base=cfg)
    clip, text, model, _, sampler, save = _infinity(
        g, "2B", guider=igg, edit={"image": load.out(0), "mask": mask.out(0), "denoise": 1.0, "fit": "crop",
                                   "mask_rule": "official"}, prefix="scalewise/infinity_inpaint")
    return {"columns": [[load.id, clip.id], [empty.id, box.id, mask.id], [model.id, text.id, cfg.id, igg.id],
                        [sampler.id], [save.id]],
            "align": {sampler.id: model.id, save.id: model.id, empty.id: load.id, model.id: load.id},
            "sizes": {load.id: [320, 360], clip.id: [360, 0], text.id: [420, 200], model.id: [420, 0],
                      save.id: SAVE_SIZE}}


def switti_512(g):
    """The official notebook settings for the 512 px Switti."""
    return _switti(g, 512, start_scale=2, end_scale=8)


def switti_1024(g):
    """The README settings for Switti-1024."""
    return _switti(g, 1024, start_scale=0, end_scale=11)


# File names are the titles the Templates browser shows (it lists a pack's examples by file name; its
# alphabetical order puts titles that start with a digit last): start-here first, then by model.
TITLES = {"start_here_tiny_shapes": "Start here (tiny shapes model, no download)",
          "var_cfg": "VAR with CFG", "var_igg": "VAR with IGG", "var_softcfg": "VAR with SoftCFG",
          "var_ssg": "VAR with SSG", "var_ssg_over_igg": "VAR with SSG over IGG",
          "var_cfg_vs_igg_heatmap": "VAR, CFG vs IGG heat maps",
          "var_clip_igg": "VAR-CLIP with IGG",
          # "Text ...": the Templates browser's alphabetical order keeps "Start here" first
          "infinity_2b": "Text to image with Infinity 2B", "infinity_8b": "Text to image with Infinity 8B",
          "infinity_inpaint_igg": "Text inpainting with Infinity and IGG",
          "switti_512": "Switti 512 (text to image)", "switti_1024": "Switti 1024 (text to image)",
          "compare_guiders_tiny_shapes": "Tiny shapes, compare guiders",
          "guidance_sweep_tiny_shapes": "Tiny shapes, guidance sweep",
          "guidance_sweep_scenes": "Tiny scenes (128 px), guidance sweep",
          "edit_inpaint_tiny_shapes": "Tiny shapes, inpainting", "edit_outpaint_tiny_shapes": "Tiny shapes, outpainting",
          "edit_class_tiny_shapes": "Tiny shapes, class editing",
          "edit_img2img_tiny_shapes": "Tiny shapes, image to image",
          "var_d36_edit_demo": "VAR d36 editing (official demo settings)"}
START_HERE = TITLES["start_here_tiny_shapes"]
START_HERE_NOTE = """Start here: the tiny model built into the pack

Runs as it is, with nothing to download: "tiny-shapes (built in)" is a small class-conditional VAR (64 px, 4 scales) \
trained on 10 procedural shapes: circle, ring, square, triangle, cross, star, crescent, dots, heart, bar.

1. Class (VAR): pick a "tiny-shapes N: name" entry (the ImageNet entries are for the official models).
2. Scale-wise CFG Guider: cfg is the guidance strength, the same at every scale (schedule constant: with only \
4 scales, VAR's linear ramp would leave the first scale, where the shape is decided, unguided); 0 = unguided \
(shapes get mixed up more often).
3. Scale-wise Sampler: top_p 0.8 (the official 0.95 suits the big models; this small one draws a stray \
token more often).
4. Press Run: 8 images appear in Save Image (output folder, prefix scalewise_tiny_shapes).

For real images put the official var_d16.pth and vae_ch160v4096z32.pth into models/var, refresh, and open the \
"VAR with CFG" example."""


def start_here_tiny_shapes(g):
    """The first example: the built-in model, class "star", CFG 3 constant, top_p 0.8, a batch of 8, saved; a Note explains it."""
    from scalewise.models.shapes import BUILTIN_NAME

    model = g.node("ScalewiseVARLoader", var_name=BUILTIN_NAME, vae_name=BUILTIN_NAME, dtype="auto")
    cond = g.node("ScalewiseImageNetClass", class_name="tiny-shapes 5: star", class_id=-1, batch_classes="")
    cfg = _cfg(g, 3.0, schedule="constant")
    sampler = g.node("ScalewiseSampler", model=model.out(0), conditioning=cond.out(0), guider=cfg.out(0),
                     seed=1, batch_size=8, top_k=900, top_p=0.8, more_smooth=False, preview="every scale",
                     smooth_start_scale=0, last_scale_temperature=1.0)
    save = _save(g, sampler, "scalewise_tiny_shapes")
    return {"columns": [["note:start", model.id, cond.id, cfg.id], [sampler.id], [save.id]],
            "align": {sampler.id: model.id, save.id: model.id},
            "notes": {"note:start": {"text": START_HERE_NOTE, "title": "Start here", "size": [480, 250]}},
            "sizes": {model.id: [480, 0], cond.id: [480, 0], cfg.id: [480, 0], save.id: [420, 300]}}


COMPARE = TITLES["compare_guiders_tiny_shapes"]
SWEEP = TITLES["guidance_sweep_tiny_shapes"]
SHAPES_SETTINGS = dict(top_k=900, top_p=0.8, more_smooth=False, smooth_start_scale=0, last_scale_temperature=1.0)
COMPARE_NOTE = """Compare guiders on the same seeds (built-in model)

Four guiders, one row each, the same four seeds (columns): unguided (CFG 0), CFG 3, IGG 3 (all constant over \
the 4 scales), and CFG 3 with SSG 0.4 (linear_increase) on top. The grid appears in the node; Save Image keeps \
it. The heat-map grid (right) shows in each cell where guidance pushed hardest at the finest guided scale, with \
each row's mean evenness E.

Connect any guider or stack to guider_1..guider_4; model, class and sampler settings are given once."""
SWEEP_NOTE = """Sweep one guider's strength (built-in model)

Rows: the CFG guider at cfg 0.5, 1, 2, 3, 4, 6 (the list in strengths), columns: the same four seeds. The node \
shows the evenness E and divergence D against strength (D from the built-in model's judge masks; connect a \
mask for other models) and the grid. balance_strength is where E and D meet or, as on this model where they \
never cross, come closest: a suggestion, not a promise (see the node's description)."""


def compare_guiders_tiny_shapes(g):
    """Compare Guiders on the built-in model: unguided, CFG 3, IGG 3, CFG 3 + SSG 0.4, four seeds."""
    from scalewise.models.shapes import BUILTIN_NAME

    model = g.node("ScalewiseVARLoader", var_name=BUILTIN_NAME, vae_name=BUILTIN_NAME, dtype="auto")
    cond = g.node("ScalewiseImageNetClass", class_name="tiny-shapes 5: star", class_id=-1, batch_classes="")
    none = _cfg(g, 0.0, schedule="constant")
    cfg = _cfg(g, 3.0, schedule="constant")
    igg = g.node("ScalewiseIGGGuider", scale=3.0, schedule="constant", window="global", window_size=3,
                 operand="raw_logits", start_scale=0, end_scale=0)
    cfg_ssg = _cfg(g, 3.0, schedule="constant")
    ssg = g.node("ScalewiseSSGGuider", beta=0.4, schedule="linear_increase", custom_betas="", dse_rescale=True,
                 interpolation="bilinear", prior_source="guided_pre_ssg", base=cfg_ssg.out(0))
    compare = g.node("ScalewiseCompareGuiders", model=model.out(0), conditioning=cond.out(0), seed=1,
                     images_per_row=4, preview="off", **SHAPES_SETTINGS, guider_1=none.out(0), guider_2=cfg.out(0),
                     guider_3=igg.out(0), guider_4=ssg.out(0))
    save = g.node("SaveImage", images=compare.out(0), filename_prefix="scalewise_compare")
    heat = g.node("PreviewImage", images=compare.out(2))
    return {"columns": [["note:compare", model.id, cond.id], [none.id, cfg.id, igg.id, cfg_ssg.id, ssg.id],
                        [compare.id, save.id], [heat.id]],
            "notes": {"note:compare": {"text": COMPARE_NOTE, "title": "Compare guiders", "size": [420, 300]}},
            "sizes": {compare.id: [620, 560], save.id: [620, 80], heat.id: [620, 480], model.id: [420, 0],
                      cond.id: [420, 0]},
            "titles": {none.id: "Unguided (CFG 0)", cfg_ssg.id: "CFG 3 (under SSG)", heat.id: "Heat maps"},
            "outputs": {save.id: "grid", heat.id: "heatmaps"}}


def guidance_sweep_tiny_shapes(g):
    """Guidance Sweep on the built-in model: CFG (constant) at 0.5 .. 6, four seeds."""
    from scalewise.models.shapes import BUILTIN_NAME

    model = g.node("ScalewiseVARLoader", var_name=BUILTIN_NAME, vae_name=BUILTIN_NAME, dtype="auto")
    cond = g.node("ScalewiseImageNetClass", class_name="tiny-shapes 5: star", class_id=-1, batch_classes="")
    cfg = _cfg(g, 3.0, schedule="constant")
    sweep = g.node("ScalewiseGuidanceSweep", model=model.out(0), conditioning=cond.out(0), seed=1,
                   images_per_row=4, preview="off", **SHAPES_SETTINGS, guider=cfg.out(0),
                   strengths="0.5, 1, 2, 3, 4, 6")
    plot = g.node("PreviewImage", images=sweep.out(1))
    return {"columns": [["note:sweep", model.id, cond.id, cfg.id], [sweep.id], [plot.id]],
            "notes": {"note:sweep": {"text": SWEEP_NOTE, "title": "Guidance sweep", "size": [420, 260]}},
            "sizes": {sweep.id: [640, 760], plot.id: [600, 420], model.id: [420, 0], cond.id: [420, 0],
                      cfg.id: [420, 0]},
            "titles": {plot.id: "Evenness / divergence plot"},
            "outputs": {plot.id: "plot"}}



SCENES_SWEEP = TITLES["guidance_sweep_scenes"]
SCENES_SWEEP_NOTE = """Sweep guidance on the built-in scenes model (128 px)

"scenes-128 (built in)" is the pack's second built-in model: a VAR of 7 scales (1-2-3-4-5-6-8, last map 8x8 \
tokens) trained on procedural scenes: one main shape of the 10 classes among smaller distractors on coloured, \
textured backgrounds. Its larger maps give guidance room to act: class accuracy rises from 0.29 unguided to \
about 0.5 (evenness E and divergence D, from the model's own judge masks, move only a little).

Rows: CFG (VAR's linear ramp) at the strengths listed, columns: four seeds. On this model an SSG guider \
(beta 0.4-1) on top of CFG helped most; see the README's guidance benchmark for what each guider does."""


def guidance_sweep_scenes(g):
    """Guidance Sweep on the built-in scenes-128 model: CFG (linear) at 0 .. 6, four seeds."""
    from scalewise.models.scenes import BUILTIN_NAME as SCENES_NAME

    model = g.node("ScalewiseVARLoader", var_name=SCENES_NAME, vae_name=SCENES_NAME, dtype="auto")
    cond = g.node("ScalewiseImageNetClass", class_name="scenes-128 5: star", class_id=-1, batch_classes="")
    cfg = _cfg(g, 3.0, schedule="linear")
    sweep = g.node("ScalewiseGuidanceSweep", model=model.out(0), conditioning=cond.out(0), seed=1,
                   images_per_row=4, preview="off", top_k=900, top_p=0.95, more_smooth=False, smooth_start_scale=0,
                   last_scale_temperature=1.0, guider=cfg.out(0), strengths="0, 1, 2, 4, 6")
    plot = g.node("PreviewImage", images=sweep.out(1))
    return {"columns": [["note:scenes", model.id, cond.id, cfg.id], [sweep.id], [plot.id]],
            "notes": {"note:scenes": {"text": SCENES_SWEEP_NOTE, "title": "Scenes model", "size": [420, 280]}},
            "sizes": {sweep.id: [640, 760], plot.id: [600, 420], model.id: [420, 0], cond.id: [420, 0],
                      cfg.id: [420, 0]},
            "titles": {plot.id: "Evenness / divergence plot"},
            "outputs": {plot.id: "plot"}}


# --- Editing (issue 15): the built-in model on pictures from its own shape generator (tools/make_edit_pictures.py,
# copied into ComfyUI's input folder by the pack), and the official demo's settings for VAR-d36.
CIRCLE, CIRCLE_BAND = "scalewise_circle.png", "scalewise_circle_band.png"
VAR_D36_FILE = "var_d36.pth"
EDIT_NOTE_SIZE = [420, 210]


def _builtin(g):
    from scalewise.models.shapes import BUILTIN_NAME
    return g.node("ScalewiseVARLoader", var_name=BUILTIN_NAME, vae_name=BUILTIN_NAME, dtype="auto")


def _edit_sampler(g, model, cond, guider, load, mask=True, seed=0, batch=4, top_p=0.8, denoise=1.0, fit="crop",
                  mask_rule="strict", top_k=900, more_smooth=False, mask_node=None):
    inputs = {"image": load.out(0)}
    if mask_node is not None:
        inputs["mask"] = mask_node.out(0)
    elif mask:
        inputs["mask"] = load.out(1)
    return g.node("ScalewiseSampler", model=model.out(0), conditioning=cond.out(0), guider=guider.out(0),
                  seed=seed, batch_size=batch, top_k=top_k, top_p=top_p, more_smooth=more_smooth,
                  preview="last 3 scales", smooth_start_scale=0, last_scale_temperature=1.0, denoise=denoise,
                  fit=fit, mask_rule=mask_rule, **inputs)


def _tiny_edit(g, picture, class_label, prefix, note, batch_classes="", **sampler):
    model = _builtin(g)
    cond = g.node("ScalewiseImageNetClass", class_name=class_label, class_id=-1, batch_classes=batch_classes)
    cfg = _cfg(g, 3.0)
    load = g.node("LoadImage", image=picture)
    sampler_node = _edit_sampler(g, model, cond, cfg, load, **sampler)
    save = _save(g, sampler_node, prefix)
    return {"columns": [["note:edit", load.id], [model.id, cond.id, cfg.id], [sampler_node.id], [save.id]],
            "align": {sampler_node.id: model.id, save.id: model.id},
            "notes": {"note:edit": {"text": note, "title": "Editing", "size": EDIT_NOTE_SIZE}},
            "sizes": {load.id: [320, 360], save.id: [420, 300]}}


EDIT_RULES = """Black in the mask = keep the picture's own tokens at every scale, white = generate anew (a token \
is regenerated when any pixel of its 16 px patch is white). mask_rule strict keeps only coarse tokens that lie \
wholly outside the mask (stronger edits on this 4-scale model); official is the VAR demo's rule."""

INPAINT_NOTE = f"""In-painting: the circle becomes a star

Load Image holds a circle picture made by the pack's shape generator; its mask (the circle, painted with the mask \
editor: right-click the node > Open in MaskEditor) marks what to regenerate. Class "star", CFG 3.

{EDIT_RULES}"""

OUTPAINT_NOTE = """Out-painting: fit = pad

The picture is only the middle band of a circle picture (64 x 32 px). fit = pad centres it on the model's 64 x 64 \
canvas; the grey padding on both sides is regenerated (it becomes the mask when none is connected), here as the \
class "circle". mask_rule official: the band's coarse tokens (its colour) stay the picture's; strict would \
regenerate every coarse token that touches the padding, and the band's fine tokens would then sit on another colour. \
fit = crop would instead scale the band up and cut its centre."""

CLASS_EDIT_NOTE = f"""Class editing: one picture, four classes

The same circle and mask as the in-painting example; batch_classes gives each image of the batch its own class \
(square, triangle, star, heart). The image and the mask (batch 1) are shared by the whole batch.

{EDIT_RULES}"""

IMG2IMG_NOTE = """Image-to-image: denoise 0.5

No mask: denoise keeps the picture's tokens everywhere in the first round((1 - denoise) x scales) scales (here 2 of \
4: the colour and rough layout), and generates the rest as a star. denoise 1 = nothing kept, 0 = the picture's own \
reconstruction. With a mask both apply."""


def edit_inpaint_tiny_shapes(g):
    """A circle picture, its mask = the circle: in-painted as a star (CFG 3, strict rule, batch of 4)."""
    return _tiny_edit(g, CIRCLE, "tiny-shapes 5: star", "scalewise/edit_inpaint", INPAINT_NOTE)


def edit_outpaint_tiny_shapes(g):
    """The middle band of a circle picture, padded to the model's square (fit pad): the sides are generated."""
    return _tiny_edit(g, CIRCLE_BAND, "tiny-shapes 0: circle", "scalewise/edit_outpaint", OUTPAINT_NOTE,
                      mask=False, fit="pad", mask_rule="official")


def edit_class_tiny_shapes(g):
    """The circle picture and mask, four classes in one batch (class-conditional editing)."""
    return _tiny_edit(g, CIRCLE, "tiny-shapes 5: star", "scalewise/edit_class", CLASS_EDIT_NOTE,
                      batch_classes="2, 3, 5, 8")


def edit_img2img_tiny_shapes(g):
    """The circle picture without its mask, denoise 0.5, as a star."""
    return _tiny_edit(g, CIRCLE, "tiny-shapes 5: star", "scalewise/edit_img2img", IMG2IMG_NOTE, mask=False,
                      denoise=0.5)


D36_NOTE = """VAR-d36 zero-shot editing with the official demo's settings (demo_zero_shot_edit.ipynb)

Files: var_d36.pth and vae_ch160v4096z32.pth in models/var. Class 1000 (null) = in-painting; an ImageNet class = \
class-conditional editing. CFG 3 (linear ramp), top_k 900, top_p 0.95, more_smooth on, seed 0, mask_rule official.
The mask is the demo's box (tokens 3..25 of 32 on each axis; here on ComfyUI's 768 px example.png: 72..623 px): \
SolidMask 0 with a 552 px square of 1 added at (72, 72). Replace it by Load Image's own mask to paint your own."""


def var_d36_edit_demo(g):
    """The official notebook's edit: null class, cfg 3, top_k 900, top_p 0.95, more_smooth, seed 0, the box mask."""
    model = g.node("ScalewiseVARLoader", var_name=VAR_D36_FILE, vae_name=VAE_FILE, dtype="auto")
    cond = g.node("ScalewiseImageNetClass", class_name=CLASSES[207], class_id=1000, batch_classes="")
    cfg = _cfg(g, 3.0)
    load = g.node("LoadImage", image="example.png")
    empty = g.node("SolidMask", value=0.0, width=768, height=768)
    box = g.node("SolidMask", value=1.0, width=552, height=552)
    mask = g.node("MaskComposite", destination=empty.out(0), source=box.out(0), x=72, y=72, operation="add")
    sampler_node = _edit_sampler(g, model, cond, cfg, load, seed=0, batch=1, top_p=0.95, mask_rule="official",
                                 more_smooth=True, mask_node=mask)
    save = _save(g, sampler_node, "scalewise/var_d36_edit")
    return {"columns": [["note:d36", load.id], [empty.id, box.id, mask.id], [model.id, cond.id, cfg.id],
                        [sampler_node.id], [save.id]],
            "align": {sampler_node.id: model.id, save.id: model.id, empty.id: load.id, model.id: load.id},
            "notes": {"note:d36": {"text": D36_NOTE, "title": "Official demo settings", "size": [420, 250]}},
            "sizes": {load.id: [320, 360], save.id: SAVE_SIZE}}


EDIT_EXAMPLES = (edit_inpaint_tiny_shapes, edit_outpaint_tiny_shapes, edit_class_tiny_shapes,
                 edit_img2img_tiny_shapes, var_d36_edit_demo)

EXAMPLES = {TITLES[f.__name__]: f for f in (start_here_tiny_shapes, compare_guiders_tiny_shapes,
                                            guidance_sweep_tiny_shapes, guidance_sweep_scenes, var_cfg, var_igg,
                                            var_softcfg, var_ssg, var_ssg_over_igg, var_cfg_vs_igg_heatmap, var_clip_igg, switti_512,
                                            switti_1024, infinity_2b, infinity_8b, infinity_inpaint_igg,
                                            *EDIT_EXAMPLES)}


WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def fill_defaults(prompt: dict, object_info: dict, log=print) -> None:
    """Write the server's default for every widget input a builder left out (e.g. one added to a node after
    this file was written), so the API file stays complete and equal to what the frontend produces."""
    for node_id, node in prompt.items():
        spec = object_info[node["class_type"]]["input"]
        for section in ("required", "optional"):
            for name, (kind, *rest) in spec.get(section, {}).items():
                opts = rest[0] if rest else {}
                if name in node["inputs"] or not (isinstance(kind, list) or kind in WIDGET_TYPES):
                    continue
                if "default" in opts:
                    value = opts["default"]
                elif isinstance(kind, list) or kind == "COMBO":
                    choices = kind if isinstance(kind, list) else opts.get("options", [])
                    if not choices:
                        continue
                    value = choices[0]
                else:
                    continue
                node["inputs"][name] = value
                log(f"  note: {node['class_type']}.{name} not set by the builder: default {value!r} written")


def build(name: str, graph_builder, object_info: dict | None = None, log=print) -> tuple[dict, dict]:
    g = graph_builder()
    layout = EXAMPLES[name](g)
    prompt = g.finalize()
    if object_info is not None:
        fill_defaults(prompt, object_info, log)
    for node_id, title in layout.pop("titles", {}).items():
        prompt[node_id]["_meta"] = {"title": title}
    return prompt, layout


def strip_meta(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


# --------------------------------------------------------------------------------------------------------------
# In-page JavaScript
# --------------------------------------------------------------------------------------------------------------

# app.clean() drops the previous graph's outputs and previews, which the frontend keys by node id (loadApiJson
# alone would show them on the new graph's node with the same id).
JS_LOAD_API = """async ([api, name]) => {
  app.clean();
  await app.loadApiJson(api, name);
  return app.graph._nodes.length;
}"""

# Adds a Note node (frontend only: not part of the API prompt) and returns its id.
JS_ADD_NOTE = """({text, title, size}) => {
  const n = LiteGraph.createNode("Note");
  n.title = title;
  n.widgets.find((w) => w.name === "text").value = text;
  app.graph.add(n);
  n.setSize(size);
  return n.id;
}"""

# Column layout: nodes stacked in columns, gaps big enough for titles; seed widgets fixed so the example
# reproduces and running it does not change the saved seed.
JS_LAYOUT = """({columns, align, rows, sizes, keepSizes}) => {
  const g = app.graph, T = LiteGraph.NODE_TITLE_HEIGHT, GAP_X = 70, GAP_Y = 40;
  for (const col of columns)
    for (const id of col) {
      const n = g.getNodeById(id), min = n.computeSize(), size = sizes?.[id] ?? (keepSizes ? n.size : min);
      n.setSize([Math.max(size[0], min[0]), Math.max(size[1], min[1])]);
    }
  // Stack each column top-down; `align` and `rows` only ever push a node down, so a few passes converge.
  const minTop = {}, top = {};
  for (let pass = 0; pass < 6; pass++) {
    let x = 0;
    for (const col of columns) {
      let y = 0, w = 0;
      for (const id of col) {
        const n = g.getNodeById(id);
        if (align?.[id] !== undefined) y = Math.max(y, top[align[id]] ?? 0);
        y = Math.max(y, minTop[id] ?? 0);
        n.pos = [x, y + T];
        top[id] = y;
        y += n.size[1] + T + GAP_Y;
        w = Math.max(w, n.size[0]);
      }
      x += w + GAP_X;
    }
    for (const row of rows ?? []) {
      const m = Math.max(...row.map((id) => top[id]));
      for (const id of row) minTop[id] = m;
    }
  }
  for (const n of g._nodes) {
    const c = n.widgets?.find((w) => w.name === "control_after_generate");
    if (c) c.value = "fixed";
  }
  app.canvas.setDirty(true, true);
  return g._nodes.length;
}"""

JS_OVERLAPS = """() => {
  const T = LiteGraph.NODE_TITLE_HEIGHT;
  const boxes = app.graph._nodes.map((n) => [n.id, n.pos[0], n.pos[1] - T, n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
  const out = [];
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++) {
      const [a, ax0, ay0, ax1, ay1] = boxes[i], [b, bx0, by0, bx1, by1] = boxes[j];
      if (ax0 < bx1 && bx0 < ax1 && ay0 < by1 && by0 < ay1) out.push([a, b]);
    }
  return out;
}"""

# Runs the loaded graph as the Run button does and resolves with the end event of that prompt.
JS_RUN = """async () => {
  const api = app.api;
  const done = new Promise((resolve) => {
    const names = ["execution_success", "execution_error", "execution_interrupted"];
    const handlers = names.map((type) => {
      const h = (e) => { names.forEach((t, i) => api.removeEventListener(t, handlers[i])); resolve({type, detail: e.detail}); };
      api.addEventListener(type, h);
      return h;
    });
  });
  await app.queuePrompt(0, 1);
  return await done;
}"""

JS_OUTPUT_IMAGES_READY = """() => app.graph._nodes
  .filter((n) => ["SaveImage", "PreviewImage", "ScalewiseGuidanceHeatmap", "ScalewiseCompareGuiders",
                  "ScalewiseGuidanceSweep"].includes(n.type))
  .every((n) => n.imgs?.length && n.imgs.every((i) => i.complete && i.naturalWidth > 0))"""

# Zooms so the whole graph fits the window (at most 1:1), centres it and returns its clip rectangle.
JS_FIT = """({margin, maxScale, reserveTop}) => {
  const T = LiteGraph.NODE_TITLE_HEIGHT, c = app.canvas;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const n of app.graph._nodes) {
    x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - T - 22);   // room for badges like [BETA]
    x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
  }
  const r = c.canvas.getBoundingClientRect();
  const bw = x1 - x0, bh = y1 - y0;
  const h = r.height - reserveTop;
  const s = Math.min(maxScale, (r.width - 2 * margin) / bw, (h - 2 * margin) / bh);
  const left = (r.width - bw * s) / 2, topPx = reserveTop + (h - bh * s) / 2;
  c.ds.scale = s;
  c.ds.offset = [left / s - x0, topPx / s - y0];
  c.setDirty(true, true);
  return {x: r.left + left - margin, y: r.top + topPx - margin, width: bw * s + 2 * margin,
          height: bh * s + 2 * margin, scale: s};
}"""

JS_HIDE_CHROME = """async () => {
  const st = app.extensionManager.setting;
  for (const [k, v] of [["Comfy.Minimap.Visible", false], ["Comfy.Graph.CanvasMenu", false],
                        ["Comfy.Graph.CanvasInfo", false], ["Comfy.NodeBadge.NodeSourceBadgeMode", "None"]]) {
    try { await st.set(k, v); } catch (e) { console.warn("setting", k, e); }
  }
  if (!app.extensionManager.focusMode) await app.extensionManager.command.execute("Workspace.ToggleFocusMode");
  return !!app.extensionManager.focusMode;
}"""

# The saved view (serialize() stores the canvas view as extra.ds, restored on load): the whole graph in at most
# 1500 px of width, clear of the top-left menus.
JS_SET_SAVED_VIEW = """() => {
  const T = LiteGraph.NODE_TITLE_HEIGHT;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity;
  for (const n of app.graph._nodes) {
    x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - T); x1 = Math.max(x1, n.pos[0] + n.size[0]);
  }
  const s = Math.round(Math.min(1, 1500 / (x1 - x0)) * 100) / 100;
  app.canvas.ds.scale = s;
  app.canvas.ds.offset = [Math.round(100 / s - x0), Math.round(130 / s - y0)];
  return [app.canvas.ds.scale, app.canvas.ds.offset];
}"""

JS_SERIALIZE = "() => JSON.stringify(app.graph.serialize())"


# --------------------------------------------------------------------------------------------------------------

def _load_by_path(name: str, path: Path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def comfy_server_module():
    # tests/conftest.py makes the repository importable as `scalewise` (fixtures_models.py needs it)
    _load_by_path("scalewise_tests_conftest", REPO / "tests" / "conftest.py")
    return _load_by_path("scalewise_ci_comfy_server", REPO / "tests" / "integration" / "comfy_server.py")


def write_thumbnail(png: bytes, path: Path) -> tuple[int, int]:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    if img.width > THUMB_MAX_WIDTH:
        img = img.resize((THUMB_MAX_WIDTH, round(img.height * THUMB_MAX_WIDTH / img.width)), Image.LANCZOS)
    img.save(path, "JPEG", quality=88, optimize=True)
    return img.size


def write_outputs(client, prompt_id: str, name: str, outputs: dict, log) -> None:
    """The first image a node showed in this run, as the server wrote it, to example_workflows/<name>.<key>.png:
    the README's pictures of real output (only examples of the built-in model declare `outputs`)."""
    history = client.wait(prompt_id)
    for node_id, key in outputs.items():
        image = history["outputs"][node_id]["images"][0]
        png = client.request(f"/view?filename={image['filename']}&subfolder={image['subfolder']}&type={image['type']}")
        (EXAMPLES_DIR / f"{name}.{key}.png").write_bytes(png)
        log(f"  {name}.{key}.png ({len(png) // 1024} KiB)")


def settle(page, frames: int = 3):
    """Let the canvas and the DOM widgets catch up with the last change."""
    page.evaluate("""(n) => new Promise((res) => { const f = (k) => k ? requestAnimationFrame(() => f(k - 1)) : res();
                     f(n); })""", frames)
    page.wait_for_timeout(150)


def add_notes(page, layout: dict, notes: dict) -> dict:
    """Create the layout's Note nodes in the page; returns the layout with their placeholders ("note:...")
    replaced by the new node ids."""
    ids = {key: page.evaluate(JS_ADD_NOTE, note) for key, note in notes.items()}
    sizes = {key: note["size"] for key, note in notes.items()}

    def sub(x):
        return ids.get(x, x) if isinstance(x, str) else x

    return {**layout,
            "columns": [[sub(i) for i in col] for col in layout["columns"]],
            "align": {sub(k): sub(v) for k, v in layout.get("align", {}).items()},
            "rows": [[sub(i) for i in row] for row in layout.get("rows", [])],
            "sizes": {sub(k): v for k, v in {**sizes, **layout.get("sizes", {})}.items()}}


def model_downloads(prompt: dict) -> list[dict]:
    """The official download of every file the workflow's loaders name that has one file to download
    (INFINITY_DOWNLOADS): [{"name", "url", "directory"}], the format of ComfyUI workflows' "models" list."""
    used = {v for node in prompt.values() for v in node["inputs"].values() if isinstance(v, str)}
    return [{"name": name, "url": url, "directory": folder}
            for name, (url, folder) in INFINITY_DOWNLOADS.items() if name in used]


def generate(page, name: str, client, object_info: dict, run: bool, log) -> None:
    prompt, layout = build(name, lambda: client.graph_builder(prefix=""), object_info, log)
    API_DIR.mkdir(parents=True, exist_ok=True)
    (API_DIR / f"{name}.json").write_text(json.dumps(prompt, indent=2) + "\n")

    count = page.evaluate(JS_LOAD_API, [prompt, f"{name}.json"])
    assert count == len(prompt), f"{name}: loaded {count} nodes of {len(prompt)} (missing node types?)"
    notes = layout.pop("notes", {})
    outputs = layout.pop("outputs", {})
    if notes:
        layout = add_notes(page, layout, notes)
    page.evaluate(JS_LAYOUT, layout)
    overlaps = page.evaluate(JS_OVERLAPS)
    assert not overlaps, f"{name}: overlapping nodes {overlaps}"

    back = page.evaluate("async () => (await app.graphToPrompt()).output")
    assert strip_meta(back) == strip_meta(prompt), f"{name}: UI -> API differs from the built API JSON: {back}"
    page.evaluate(JS_SET_SAVED_VIEW)
    ui_json = page.evaluate(JS_SERIALIZE)          # a string: written unchanged (the frontend validates it on load)
    wf = json.loads(ui_json)
    assert len(wf["nodes"]) == len(prompt) + len(notes)
    downloads = model_downloads(prompt)
    if downloads:  # the frontend's missing-models dialog reads the workflow's top-level "models" list
        ui_json = json.dumps({**wf, "models": downloads}, separators=(",", ":"), ensure_ascii=False)
    (EXAMPLES_DIR / f"{name}.json").write_text(ui_json)

    if run:
        t0 = time.monotonic()
        end = page.evaluate(JS_RUN)
        assert end["type"] == "execution_success", f"{name}: {json.dumps(end)[:2000]}"
        page.wait_for_function(JS_OUTPUT_IMAGES_READY, timeout=30000)
        log(f"  ran in {time.monotonic() - t0:.1f} s")
        if outputs:
            write_outputs(client, end["detail"]["prompt_id"], name, outputs, log)
        overlaps = page.evaluate(JS_OVERLAPS)       # outputs may have grown a node
        if overlaps:
            log(f"  re-laying out after the run: {overlaps}")
            page.evaluate(JS_LAYOUT, {**layout, "sizes": {}, "keepSizes": True})
            overlaps = page.evaluate(JS_OVERLAPS)
            assert not overlaps, f"{name}: overlapping nodes after the run {overlaps}"
    clip = page.evaluate(JS_FIT, {"margin": 16, "maxScale": 1.25, "reserveTop": 48})
    settle(page)
    scale = clip.pop("scale")
    png = page.screenshot(clip=clip)
    w, h = write_thumbnail(png, EXAMPLES_DIR / f"{name}.jpg")
    log(f"  {name}.json ({len(wf['nodes'])} nodes), {name}.jpg {w}x{h} (zoom {scale:.2f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(EXAMPLES), help="examples to regenerate (default: all)")
    ap.add_argument("--base", help="use this running server, e.g. http://127.0.0.1:8188 (needs the stand-ins)")
    ap.add_argument("--no-run", action="store_true", help="do not execute the workflows")
    ap.add_argument("--keep-server-log", action="store_true", help="print the server log path at the end")
    args = ap.parse_args(argv)
    names = args.only or list(EXAMPLES)

    from playwright.sync_api import sync_playwright

    cs = comfy_server_module()
    if cs.comfy_dir() is None:
        print("set COMFY_DIR to a ComfyUI tree, e.g. COMFY_DIR=$PWD/.comfy-ci/ComfyUI", file=sys.stderr)
        return 2
    t_start = time.monotonic()
    server = None
    if args.base:
        port = int(args.base.rstrip("/").rsplit(":", 1)[1])
        client = cs.ComfyClient(port, Path(os.devnull), Path(tempfile.gettempdir()))
    else:
        server = cs.ComfyServer(Path(tempfile.mkdtemp(prefix="scalewise_examples_")))
        atexit.register(server.stop)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # runs the finally below: stops the server
        client = server.start()
        print(f"ComfyUI on {client.base} (ready in {client.startup_s:.1f} s)", flush=True)
    EXAMPLES_DIR.mkdir(exist_ok=True)
    problems = []
    try:
        if server is not None:
            client.assert_pack_imported()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2)
            page = context.new_page()
            errors = []
            page.on("console", lambda m: m.type in ("error", "warning") and errors.append(f"console.{m.type}: {m.text}"))
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.goto(client.base + "/", wait_until="domcontentloaded")
            page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph && app.extensionManager",
                                   timeout=60000)
            if not page.evaluate(JS_HIDE_CHROME):
                problems.append("focus mode did not turn on")
            object_info = client.object_info()
            for name in names:
                print(name, flush=True)
                generate(page, name, client, object_info, not args.no_run, print)
            ours = [e for e in errors if "scalewise" in e.lower()]
            if ours:
                problems.extend(ours)
            browser.close()
    finally:
        if server is not None:
            if args.keep_server_log:
                print("server log:", client.log_path)
            server.stop()
    print(f"done in {time.monotonic() - t_start:.1f} s: {len(names)} examples in {EXAMPLES_DIR}, API JSON in {API_DIR}")
    for msg in problems:
        print("PROBLEM:", msg, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
