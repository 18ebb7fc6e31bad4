"""Guidance heat map: the sampler's trace as an IMAGE grid, with the IGG paper's evenness and divergence."""
from __future__ import annotations

import json
import logging
import math

import comfy.model_management as mm
from comfy_api.latest import io, ui

from ..guidance.editing import check_object_mask, square_mask, unmarked_entries, unmarked_subject
from ..guidance.heatmap import COLORMAPS, NORMALIZE_MODES, render_heatmap
from ..guidance.metrics import summary, trace_scores
from .common import CATEGORY, ScalewiseNode, TraceType, checked_inputs, info_ui
from .features import aliases
from .images import rgb_image


def _mean(values) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else -1.0


def check_image_fits(image, trace) -> None:
    """ValueError in ComfyUI's own layout when the IMAGE is not the trace's images (size and batch)."""
    (height, width), batch = trace.image_shape, trace.batch_size
    shape = list(getattr(image, "shape", []))
    if len(shape) == 4 and shape[1:3] == [height, width] and shape[0] in (1, batch):
        return
    expected = f"{batch if batch == 1 else f'{batch} (or 1)'} image(s) of {width}x{height} px"
    if height != width:
        expected += f" (width x height: [B, {height}, {width}, 3])"
    raise ValueError(f"image: got shape {shape} ([batch, height, width, channels]), but the trace is of {expected}: "
                     "connect the image output of the sampler that made the trace")


class GuidanceHeatmap(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseGuidanceHeatmap",
            display_name="Guidance Heatmap",
            category=CATEGORY,
            **aliases("heat map", "heatmap", "guidance map", "evenness", "divergence", "IGG", "VAR", "Switti"),
            description=("Shows where guidance pushed hardest, one panel per scale (brighter = stronger), labelled "
                         "with the IGG paper's evenness E (1 = guidance spread evenly over the image) and, with a "
                         "mask of the object, divergence D (0 = the object is guided like the background)."),
            inputs=[
                TraceType.Input("trace", tooltip="The trace output of the Scale-wise Sampler."),
                io.Image.Input("image", optional=True,
                               tooltip="The generated image, to overlay the last scale's map on it."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Foreground mask of the object (white = object), same size as the image; "
                                      "enables the divergence score. Not connected after an edit: the region the "
                                      "sampler regenerated."),
                io.Combo.Input("normalize", options=list(NORMALIZE_MODES), default="scale",
                               tooltip="Brightness per panel (scale) or shared by all panels (global)."),
                io.Combo.Input("colormap", options=list(COLORMAPS), default="magma",
                               tooltip="Perceptual colour map."),
                io.Float.Input("overlay_alpha", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="Opacity of the heat map over the image in the overlay panel."),
            ],
            outputs=[io.Image.Output(display_name="heatmap"),
                     io.Float.Output(display_name="evenness", tooltip="Mean evenness of the batch (0-1)."),
                     io.Float.Output(display_name="divergence",
                                     tooltip="Mean divergence of the batch (0-1); -1 without a mask."),
                     io.String.Output(display_name="scores", tooltip="All per-scale scores as JSON.")],
            is_output_node=True,
        )

    @classmethod
    @checked_inputs
    def execute(cls, trace, normalize, colormap, overlay_alpha, image=None, mask=None) -> io.NodeOutput:
        if image is not None:
            check_image_fits(image, trace)
            image = rgb_image(image)
        notes = []
        if mask is not None:
            mask = square_mask(check_object_mask(mask), trace.image_shape)
            empty = unmarked_entries(mask)
            if empty:
                notes.append(f"{unmarked_subject(mask, empty)} no object (every pixel below 0.5), so divergence D is undefined there: "
                             "connect a foreground mask, white = object")
                logging.warning("Guidance Heatmap: %s", notes[-1])
        computed = trace_scores(trace, mask)  # once, for the panels and the outputs
        grid = render_heatmap(trace, image, mask, normalize=normalize, colormap=colormap, overlay_alpha=overlay_alpha,
                              scores=computed).to(mm.intermediate_device())
        scores = summary(trace, mask, scores=computed)
        evenness = _mean(scores["evenness"]["mean"])
        divergence = _mean(scores["divergence"]["mean"]) if scores["divergence"] else -1.0
        text = json.dumps(scores)
        preview = ui.PreviewImage(grid, cls=cls).as_dict()
        ui_out = {**preview, "scalewise_scores": [text], **info_ui(notes)}
        return io.NodeOutput(grid, evenness, divergence, text, ui=ui_out)
