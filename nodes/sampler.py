"""The scale-wise sampler node: progress tick, preview and Cancel at every scale."""
from __future__ import annotations

import comfy.model_management as mm
import comfy.utils
import torch
from comfy.cli_args import args
from comfy_api.latest import io
from PIL import Image

from ..guidance import Draw, Edit, Generation, sample
from ..guidance.editing import FITS, MASK_RULES, edit_batch
from ..guidance.trace import concat_traces
from ..models.torch_compat import is_out_of_memory
from .common import CATEGORY, ScalewiseNode, TraceType, checked_inputs, info_ui, input_notes
from .features import aliases
from .images import rgb_image
from .settings import MAX_BATCH, setting_inputs, temperature_input
from .speed import sampling_model



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
    on today's cores. `runs` > 1 spreads one bar over several generations (a comparison): call `next_run()`
    after each."""

    def __init__(self, num_scales: int, preview: str, runs: int = 1):
        self.hook = comfy.utils.PROGRESS_BAR_HOOK  # None outside the server: progress is then a no-op
        self.total = num_scales * runs
        self.num_scales, self.offset = num_scales, 0
        self.preview = preview if previews_allowed() else "off"

    def next_run(self) -> None:
        self.offset += self.num_scales

    def of_run(self, run: int, progress) -> None:
        """The callback of generation `run` (0-based) of the bar's `runs`: guidance.runs' callback(row, progress)."""
        self.offset = run * self.num_scales
        self(progress)

    def __call__(self, progress):
        mm.throw_exception_if_processing_interrupted()
        frame = None
        if self.preview == "every scale" or (self.preview == "last 3 scales" and progress.k >= self.num_scales - 3):
            image = _to_pil(progress.preview(max_images=1, low_res=True))
            frame = ("JPEG", image, min(args.preview_size, max(image.size)))  # never blown up to 512 px
        if self.hook is not None:
            self.hook(self.offset + progress.k + 1, self.total, frame)


class Sampler(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseSampler",
            display_name="Scale-wise Sampler",
            category=CATEGORY,
            **aliases("VAR", "Switti", "sampler", "KSampler", "next-scale prediction", "autoregressive", "generate"),
            description=("Generates images with a VAR or Switti model one scale at a time, coarse to fine, applying "
                         "the connected guider at every scale. Image i of a batch has its own random stream from "
                         "(seed, i): it looks the same whatever the batch size, every new seed gives a whole new "
                         "batch, and batch_index re-makes image i alone. The image size is fixed by the model (VAR "
                         "d16-d30: 256 px, d36: 512 px; the built-in models: tiny-shapes 64 px, scenes-128 128 px; "
                         "Switti: 512 or 1024 px). Official "
                         "settings: VAR top_k 900, top_p 0.95; Switti top_k 400, top_p 0.95, more_smooth on from "
                         "scale 2, last_scale_temperature 0.1. Editing: connect an image (and a mask from Load "
                         "Image's mask editor: white = regenerate) for in-painting, out-painting, class or text "
                         "editing; denoise < 1 is image-to-image. The output has the model's size."),
            inputs=[
                *setting_inputs(comparison=False),
                io.Image.Input("image", optional=True,
                               tooltip="Image to edit (zero-shot): its own tokens are kept wherever the mask is "
                                       "black, at every scale. Any size: fitted to the model's size by `fit`."),
                io.Mask.Input("mask", optional=True,
                              tooltip="What to regenerate (white = 1 = new, black = keep), e.g. Load Image's mask "
                                      "editor; resized to the image. Needs the image. A token is regenerated when "
                                      "any pixel of its patch is >= 0.5."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.05, optional=True,
                               tooltip="Image-to-image: the first round((1 - denoise) x scales) scales keep the "
                                       "image's tokens everywhere (0 = the image's reconstruction, 1 = only the "
                                       "mask decides). Needs the image when < 1."),
                io.Combo.Input("fit", options=list(FITS), default="crop", optional=True,
                               tooltip="An image of another size or aspect: crop = scale the short side to the "
                                       "model's size and cut the centre; pad = scale the long side and pad with "
                                       "grey, which is regenerated (out-painting)."),
                io.Combo.Input("mask_rule", options=list(MASK_RULES), default="official", optional=True,
                               tooltip="Which coarse tokens the mask keeps: official = the VAR demo's rule (the "
                                       "mask shrunk bilinearly per scale, the 1x1 scale always the image's); "
                                       "strict = only coarse tokens lying wholly outside the mask, so the image's "
                                       "coarse shapes do not reach into it (stronger edits; the kept region's "
                                       "colours may drift: use official for out-painting)."),
                io.Int.Input("batch_index", default=0, min=0, max=4095, optional=True,
                             tooltip="Index of the first image: image j of this run is image batch_index + j of "
                                     "the seed (its random stream and its entry of a class list). To re-make image "
                                     "i of an earlier batch alone: same seed, batch_size 1, batch_index i."),
                temperature_input(),
            ],
            outputs=[io.Image.Output(display_name="image"),
                     TraceType.Output(display_name="trace",
                                      tooltip="Per-scale guidance strength, for the Guidance Heatmap node.")],
        )

    @classmethod
    @checked_inputs
    def execute(cls, model, conditioning, seed, batch_size, top_k, top_p, more_smooth, preview,
                smooth_start_scale, last_scale_temperature, guider=None, image=None, mask=None, denoise=1.0,
                fit="crop", mask_rule="official", batch_index=0, temperature=1.0) -> io.NodeOutput:
        net = sampling_model(model)  # with the Token Pruning node's policy, if any
        with input_notes("Scale-wise Sampler") as notes:
            image = None if image is None else rgb_image(image).movedim(-1, 1)  # ComfyUI [B, H, W, C] -> [B, 3, H, W]
            edit = Edit.from_inputs(image, mask, denoise, mask_rule, fit)  # checked once, fitted when sampling starts
            # a batch of images or masks sets the batch (1 = shared)
            total = edit_batch(batch_size, *((edit.image, edit.mask) if edit else (None, None)))
            prepare_condition(net, conditioning, total, batch_index)  # the model's checks, before any GPU work
            chunk = min(total, MAX_BATCH)
            lower = "batch_size" if total == batch_size else (
                f"the number of images in the {'image' if edit.image.shape[0] == total else 'mask'}"
                f" batch ({total}, sampled {chunk} at a time): split it, e.g. with core's Rebatch Images before "
                "this node")
            load_model(model, chunk, guider is not None)
            starts = range(0, total, chunk)
            reporter = ScaleProgressReporter(len(net.scale_shapes), preview, runs=len(starts))
            draw = sampler_draw(top_k, top_p, more_smooth, smooth_start_scale, last_scale_temperature, temperature)
            images, traces = [], []
            for start in starts:  # per-image random streams: the same images as one batch of `total`
                count = min(chunk, total - start)
                first = batch_index + start
                generation = Generation(conditioning, seed, count, first, draw,
                                        None if edit is None else edit.part(start, count))
                out = sample_images(net, guider, generation, reporter, batch_input=lower)
                reporter.next_run()
                images.append(out.images.permute(0, 2, 3, 1).to(mm.intermediate_device()))
                traces.append(out.trace)
        return io.NodeOutput(torch.cat(images), concat_traces(traces), ui=info_ui(notes))


def sampler_draw(top_k, top_p, more_smooth, smooth_start_scale, last_scale_temperature, temperature=1.0) -> Draw:
    """The sampler widgets' `Draw` (last_scale_temperature 1 = off; temperature: tau before guidance, 1 = off)."""
    last = None if last_scale_temperature == 1.0 else last_scale_temperature
    return Draw(top_k, top_p, more_smooth, smooth_start_scale, last, temperature)


def prepare_condition(net, conditioning, batch_size: int, first: int = 0):
    """`net.prepare_condition` (image i of the batch takes entry first + i), with conditioning of another family
    (the model's TypeError: a wiring mistake) reported as a ValueError with the same message."""
    try:
        return net.prepare_condition(conditioning, batch_size, first)
    except TypeError as e:
        raise ValueError(str(e)) from None


def load_model(model, batch_size: int, guided: bool) -> None:
    """Load the model onto the GPU through ComfyUI, asking it to free the room a generation needs
    (`memory_estimate`). A model built with ComfyUI's cast layers (Infinity's depth blocks) may be loaded partially:
    ComfyUI keeps what does not fit beside the generation's memory on the CPU and casts it per use; the rest of it
    is then placed on the GPU (`place_uncast`)."""
    net = sampling_model(model)
    partial = any(hasattr(m, "comfy_cast_weights") for m in net.modules())
    # plain torch layers cannot run partially offloaded: load the whole model or let ComfyUI free room
    mm.load_models_gpu([model], memory_required=net.memory_estimate(batch_size, guided), force_full_load=not partial)
    if partial:
        place_uncast(model.model, model.load_device)


def place_uncast(net: torch.nn.Module, device) -> None:
    """Move every parameter and buffer of `net` that is not a cast layer's (a module with `comfy_cast_weights`) to
    `device`. ComfyUI's partial loading moves only leaf modules that fit and never the parameters of a module with
    children (model_patcher.py `_load_list`: "skip random weights in non leaf modules"), which plain layers read
    directly; they are small (for the 8B: embeddings, AdaLN, norms, head, the BSQ VAE)."""
    for module in net.modules():
        if hasattr(module, "comfy_cast_weights"):
            continue
        for name, param in module.named_parameters(recurse=False):
            if param.device != device:
                param.data = param.data.to(device)
        for name, buffer in module.named_buffers(recurse=False):
            if buffer.device != device:
                module._buffers[name] = buffer.to(device)


def sample_images(net, guider, generation: Generation, reporter, batch_input="batch_size"):
    """One traced generation (its conditioning from `net.prepare_condition`) with the reporter as callback; out of
    memory becomes a clear error naming the node's `batch_input`."""
    try:
        return sample(net, guider, generation, trace=True, callback=reporter)
    except Exception as error:  # not `except torch.OutOfMemoryError`: that name needs torch >= 2.5
        if not is_out_of_memory(error):
            raise
        mm.soft_empty_cache(True)
        height, width = net.image_shape
        size = f"{height}" if height == width else f"{width}x{height}"
        raise RuntimeError(f"out of memory for a batch of {generation.batch_size} at {size} px on "
                           f"{mm.get_torch_device()}: lower {batch_input} (the model stays loaded)") from None
