"""The scale-wise sampler node: progress tick, preview and Cancel at every scale."""
from __future__ import annotations

import comfy.model_management as mm
import comfy.utils
import torch
from comfy.cli_args import args
from comfy_api.latest import io
from PIL import Image

from ..guidance import sample
from .common import CATEGORY, CondType, GuiderType, ModelType, TraceType
from .features import aliases, expert

PREVIEWS = ["every scale", "last 3 scales", "off"]


def _to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy())


def previews_allowed() -> bool:
    """False when the user turned live previews off: ComfyUI's "Live preview method" setting, which arrives with
    each prompt since ComfyUI 0.5.0 and lands in `args.preview_method` (the --preview-method flag on older cores,
    and when the setting is "default"). Any other method lets the node's `preview` input decide: scale-wise
    models have no latent2rgb/TAESD previewer, their previews are decoded by the model's own VQ-VAE."""
    return str(getattr(args.preview_method, "value", args.preview_method)) != "none"


class ScaleProgressReporter:
    """Per-scale callback: checks for Cancel, reports progress for every scale and sends a preview frame.

    Progress goes straight to ComfyUI's progress hook (what ProgressBar.update_absolute calls): since ComfyUI
    0.9.2 ProgressBar drops updates without a preview that come less than 100 ms after the previous one, and a
    scale can take less, so the bar would jump from 0 to done. The hook takes the same arguments on 0.3.75 and
    on today's cores."""

    def __init__(self, num_scales: int, preview: str):
        self.hook = comfy.utils.PROGRESS_BAR_HOOK  # None outside the server: progress is then a no-op
        self.num_scales = num_scales
        self.preview = preview if previews_allowed() else "off"

    def __call__(self, progress):
        mm.throw_exception_if_processing_interrupted()
        frame = None
        if self.preview == "every scale" or (self.preview == "last 3 scales" and progress.k >= self.num_scales - 3):
            image = _to_pil(progress.preview(max_images=1, low_res=True))
            frame = ("JPEG", image, min(args.preview_size, max(image.size)))  # never blown up to 512 px
        if self.hook is not None:
            self.hook(progress.k + 1, self.num_scales, frame)


class Sampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseSampler",
            display_name="Scale-wise Sampler",
            category=CATEGORY,
            **aliases("VAR", "Switti", "sampler", "KSampler", "next-scale prediction", "autoregressive", "generate"),
            description=("Generates images with a VAR or Switti model one scale at a time, coarse to fine, applying "
                         "the connected guider at every scale. Image i of a batch uses seed + i, so it looks the same "
                         "whatever the batch size. The image size is fixed by the model (VAR d16-d30: 256 px, d36: "
                         "512 px; the built-in tiny-shapes model: 64 px; Switti: 512 or 1024 px). Official "
                         "settings: VAR top_k 900, top_p 0.95; Switti top_k 400, top_p 0.95, more_smooth on from "
                         "scale 2, last_scale_temperature 0.1."),
            inputs=[
                ModelType.Input("model", tooltip="A model from Load VAR Model or Load Switti Model."),
                CondType.Input("conditioning",
                               tooltip="What to generate: Class (VAR) for VAR models (an ImageNet class for the "
                                       "official ones, a 'tiny-shapes N: name' class for the built-in model) or "
                                       "Switti Text Encode (Switti)."),
                GuiderType.Input("guider", optional=True,
                                 tooltip="Guidance (CFG, IGG, SoftCFG, SSG, or a stack of them). Not connected = "
                                         "no guidance (conditional prediction only)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Random seed of the first image; image i of the batch uses seed + i."),
                io.Int.Input("batch_size", default=1, min=1, max=64, tooltip="Number of images."),
                io.Int.Input("top_k", default=900, min=0, max=4096,
                             tooltip="Draw each token only from its k most likely codes; 0 = off, 1 = greedy "
                                     "(deterministic). VAR default 900."),
                io.Float.Input("top_p", default=0.95, min=0.0, max=1.0, step=0.01,
                               tooltip="Draw only from the most likely codes that together hold this much "
                                       "probability; 0 = off. VAR default 0.95 (0.96 for its FID protocol)."),
                io.Boolean.Input("more_smooth", default=False,
                                 tooltip="Smoothing for nicer-looking images: blends code vectors by a sharpened "
                                         "Gumbel-softmax instead of using one drawn code (not used for FID). Switti "
                                         "uses it while guided, without top_k/top_p."),
                io.Combo.Input("preview", options=PREVIEWS, default="every scale",
                               tooltip="Preview of the partial image after each scale (cheap: decoded at the "
                                       "scale's own size). ComfyUI's Live preview method = none turns it off; "
                                       "the progress bar still moves at every scale."),
                io.Int.Input("smooth_start_scale", default=0, min=0, max=63,
                             tooltip="First scale where more_smooth applies (Switti: 2).", **expert()),
                io.Float.Input("last_scale_temperature", default=1.0, min=0.01, max=10.0, step=0.01,
                               tooltip="Temperature of the scales after the guider's end_scale (Switti: 0.1, "
                                       "sharper details); 1 = unchanged."),
            ],
            outputs=[io.Image.Output(display_name="image"),
                     TraceType.Output(display_name="trace",
                                      tooltip="Per-scale guidance strength, for the Guidance Heatmap node.")],
        )

    @classmethod
    def execute(cls, model, conditioning, seed, batch_size, top_k, top_p, more_smooth, preview,
                smooth_start_scale, last_scale_temperature, guider=None) -> io.NodeOutput:
        net = model.model
        cond = net.prepare_condition(conditioning, batch_size)  # the model's checks, before any GPU work
        # plain torch layers cannot run partially offloaded: load the whole model or let ComfyUI free room
        mm.load_models_gpu([model], memory_required=net.memory_estimate(batch_size, guider is not None),
                           force_full_load=True)
        reporter = ScaleProgressReporter(len(net.patch_nums), preview)
        temperature = None if last_scale_temperature == 1.0 else last_scale_temperature
        try:
            out = sample(net, guider, cond, seed=seed, top_k=top_k, top_p=top_p,
                         more_smooth=more_smooth, smooth_start_scale=smooth_start_scale,
                         last_scale_temperature=temperature, trace=True, callback=reporter)
        except torch.OutOfMemoryError:
            mm.soft_empty_cache(True)
            raise RuntimeError(f"out of memory for a batch of {batch_size} at {net.image_size} px on "
                               f"{mm.get_torch_device()}: lower batch_size (the model stays loaded)") from None
        images = out.images.permute(0, 2, 3, 1).to(mm.intermediate_device())
        return io.NodeOutput(images, out.trace)
