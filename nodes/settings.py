"""The generation settings of the three sampler-like nodes (Scale-wise Sampler, Compare Guiders, Guidance Sweep),
declared once: names, order, defaults and ranges are shared, only the tooltips (and the batch input: the sampler's
`batch_size`, a comparison's `images_per_row`) differ. Saved workflows store widget values by position, so the
order here never changes."""
from __future__ import annotations

from comfy_api.latest import io

from ..guidance.grid import MAX_IMAGES
from .common import CondType, GuiderType, ModelType
from .features import expert

PREVIEWS = ["every scale", "last 3 scales", "off"]
MAX_BATCH = 64  # batch_size's maximum; a longer image batch (a video's frames) is sampled this many at a time
AS_IN_SAMPLER = "As in the Scale-wise Sampler."

# name -> (the sampler's tooltip, a comparison's tooltip)
TOOLTIPS = {
    "conditioning": ("What to generate: Class (VAR) for VAR models (an ImageNet class for the official ones, a "
                     "'tiny-shapes N: name' or 'scenes-128 N: name' class for the built-in models), Switti Text "
                     "Encode (Switti), VAR-CLIP Text Encode (VAR-CLIP) or Infinity Text Encode (Infinity).",
                     "What to generate (Class (VAR) or a family's Text Encode)."),
    "seed": ("Random seed of the batch. Image 0 uses the seed itself (as the official samplers), image i a stream "
             "derived from (seed, i), so each new seed ('increment' included) gives all new images; image i is the "
             "same whatever the batch size.",
             "Seed of the comparison; column i is image i of this seed in every row (the sampler's per-image "
             "streams: re-make it there with batch_size 1, batch_index i), so each column compares the same random "
             "draws."),
    "top_k": ("Draw each token only from its k most likely codes; 0 = off, 1 = greedy (deterministic). VAR default "
              "900.", AS_IN_SAMPLER),
    "top_p": ("Draw only from the most likely codes that together hold this much probability; 0 = off. VAR default "
              "0.95 (0.96 for its FID protocol).", AS_IN_SAMPLER),
    "more_smooth": ("Smoothing for nicer-looking images: blends code vectors by a sharpened Gumbel-softmax instead "
                    "of using one drawn code (not used for FID). Switti uses it while guided, without top_k/top_p.",
                    AS_IN_SAMPLER),
    "preview": ("Preview of the partial image after each scale (cheap: decoded at the scale's own size). ComfyUI's "
                "Live preview method = none turns it off; the progress bar still moves at every scale.",
                "Preview of the row being generated, after each scale."),
    "smooth_start_scale": ("First scale where more_smooth applies (Switti: 2).", AS_IN_SAMPLER),
    "last_scale_temperature": ("Temperature of the scales after the guider's end_scale (Switti: 0.1, sharper "
                               "details); 1 = unchanged.", AS_IN_SAMPLER),
}


def setting_inputs(comparison: bool) -> list:
    """The inputs every sampler-like node starts with, in this order: model, conditioning, (the sampler's optional
    guider,) seed, batch_size or images_per_row, top_k, top_p, more_smooth, preview, smooth_start_scale,
    last_scale_temperature. `comparison` picks Compare Guiders' and Guidance Sweep's tooltips, their
    images_per_row (at most MAX_IMAGES) and no guider input (they take their own)."""
    def tip(name: str) -> str:
        return TOOLTIPS[name][1 if comparison else 0]

    guider = [] if comparison else [
        GuiderType.Input("guider", optional=True,
                         tooltip="Guidance (CFG, IGG, SoftCFG, SSG, or a stack of them). Not connected = no guidance "
                                 "(conditional prediction only).")]
    count = io.Int.Input("images_per_row", default=4, min=1, max=MAX_IMAGES,
                         tooltip=f"Columns: images per guider or strength (rows x columns <= {MAX_IMAGES}).") \
        if comparison else io.Int.Input(
            "batch_size", default=1, min=1, max=MAX_BATCH,
            tooltip="Number of images. A connected image or mask batch (e.g. a video's frames) sets it when larger: "
                    f"one image per frame, sampled at most {MAX_BATCH} at a time.")
    return [
        ModelType.Input("model", tooltip="A model from Load VAR Model, Load Switti Model or Load Infinity Model."),
        CondType.Input("conditioning", tooltip=tip("conditioning")),
        *guider,
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                     tooltip=tip("seed")),
        count,
        io.Int.Input("top_k", default=900, min=0, max=4096, tooltip=tip("top_k")),
        io.Float.Input("top_p", default=0.95, min=0.0, max=1.0, step=0.01, tooltip=tip("top_p")),
        io.Boolean.Input("more_smooth", default=False, tooltip=tip("more_smooth")),
        io.Combo.Input("preview", options=PREVIEWS, default="every scale", tooltip=tip("preview")),
        io.Int.Input("smooth_start_scale", default=0, min=0, max=63, tooltip=tip("smooth_start_scale"), **expert()),
        io.Float.Input("last_scale_temperature", default=1.0, min=0.01, max=10.0, step=0.01,
                       tooltip=tip("last_scale_temperature")),
    ]


def temperature_input() -> io.Float.Input:
    """tau, the last input of the three sampler-like nodes (added after their published inputs, so saved workflows
    keep their widget positions): every scale's logits times 1 / tau before guidance (guidance.Draw.temperature)."""
    return io.Float.Input("temperature", default=1.0, min=0.01, max=10.0, step=0.01, optional=True,
                          tooltip="tau: every scale's logits are divided by it before guidance (Infinity's own "
                                  "tau, e.g. 0.5 as published); 1 = off (VAR, Switti).")

