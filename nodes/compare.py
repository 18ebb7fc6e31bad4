"""Artist tools: compare guiders on the same seeds, and sweep one guider's strength with the IGG paper's
evenness/divergence balance. The rows, their scores and the balance point come from guidance/runs.py; the nodes add
the sampler node's machinery (conditioning check, model loading, progress and Cancel at every scale, out-of-memory
message), one progress bar over the whole comparison, and the grids, plot and report."""
from __future__ import annotations

import json
import math

import comfy.model_management as mm
import torch
from comfy_api.latest import io, ui

from ..guidance import CFG, IGG, SSG, Draw, Edit, Generation, SoftCFG
from ..guidance.balance import parse_strengths, render_balance_plot
from ..guidance.grid import MAX_IMAGES, heatmap_cells, render_grid
from ..guidance.runs import compare, sweep
from ..guidance.schedules import fmt_range
from ..models.builtin import judge_masks
from .common import CATEGORY, GuiderType, ScalewiseNode, checked_inputs, info_ui, input_notes
from .features import aliases
from .images import rgb_image
from .sampler import ScaleProgressReporter, load_model, prepare_condition, sample_images, sampler_draw
from .settings import setting_inputs, temperature_input
from .speed import sampling_model

GUIDER_SLOTS = 4
SIZES = (f"At most {MAX_IMAGES} images (rows x images_per_row). Outputs for the largest: the image batch "
         f"[{MAX_IMAGES}, S, S, 3] float32 (S = model image size: 12 MiB at 64 px, 48 MiB at 256 px, 192 MiB at "
         "512 px, 768 MiB at 1024 px); grid cells of 128 px (64 px images enlarged) up to 512 px (1024 px images "
         "shrunk): 4 x 16 cells of 512 px make 8909 x 2219 px (226 MiB), 64 rows of one such cell 914 x 34199 px "
         "(358 MiB). Sampling memory is that of one Scale-wise Sampler batch of images_per_row, one row at a time.")


def check_size(rows: int, columns: int, rows_name: str) -> None:
    """ValueError naming both inputs when rows x columns exceeds MAX_IMAGES images."""
    if rows * columns > MAX_IMAGES:
        raise ValueError(f"{rows} {rows_name} x images_per_row {columns} = {rows * columns} images: a comparison "
                         f"holds at most {MAX_IMAGES}; lower images_per_row to {max(1, MAX_IMAGES // rows)} or "
                         f"fewer, or use fewer {rows_name}")


def run(model, conditioning, seed: int, images_per_row: int, preview: str, draw: Draw, edit: Edit | None, rows: int,
        run_rows):
    """`run_rows(net, generation, **hooks)` (guidance.runs' compare or sweep) with the sampler node's machinery: the
    model's conditioning check and model loading once the guiders have passed theirs, one progress bar over the
    rows with previews and Cancel at every scale, out of memory named as images_per_row."""
    net = sampling_model(model)  # with the Token Pruning node's policy, if any
    generation = Generation(conditioning, seed, images_per_row, draw=draw, edit=edit)
    reporter = ScaleProgressReporter(len(net.scale_shapes), preview, runs=rows)

    def ready():
        prepare_condition(net, conditioning, images_per_row)  # the model's checks, before any GPU work
        load_model(model, images_per_row, True)

    def sampler(net, guider, generation, *, trace, callback):
        return sample_images(net, guider, generation, callback, batch_input="images_per_row")

    return run_rows(net, generation, sampler=sampler, callback=reporter.of_run, ready=ready)


def comparison_edit(image, mask) -> Edit | None:
    """The comparisons' edit of their optional IMAGE [B, H, W, C] and MASK, as the Scale-wise Sampler makes it with
    fit crop, denoise 1 and the official mask rule; None without either. Raises ValueError as `Edit.from_inputs`
    (a mask without the image) and `rgb_image` (an image that is not one)."""
    if image is None and mask is None:
        return None
    image = None if image is None else rgb_image(image).movedim(-1, 1)  # ComfyUI [B, H, W, C] -> [B, 3, H, W]
    return Edit.from_inputs(image, mask, fit="crop")


def _edit_notes(image, notes: list[str]) -> dict:
    """The notes ui (e.g. a mask that marks nothing) of a run with an image; none otherwise, as before editing."""
    return info_ui(notes) if image is not None else {}


def node_images(comparison) -> torch.Tensor:
    """The comparison's images as ComfyUI's IMAGE [R*C, S, S, 3], row by row, on the CPU."""
    return comparison.images.permute(0, 2, 3, 1).contiguous()


def column_labels(seed: int, columns: int) -> list[str]:
    """The column titles: the seed and each column's image index (the sampler's `batch_index`)."""
    return [f"seed {seed % 2**64} #{i}" for i in range(columns)]


def _preview(cls, *images) -> dict:
    values = [v for image in images for v in ui.PreviewImage(image, cls=cls).values]
    return {"images": values, "animated": (False,)}


class CompareGuiders(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseCompareGuiders",
            display_name="Compare Guiders",
            category=CATEGORY,
            **aliases("compare", "comparison", "grid", "XY plot", "guider", "CFG", "VAR", "Switti"),
            description=("Generates the same seeds with up to four guiders (or stacks) and lays the results out as "
                         "a labelled grid: a row per guider with its description, a column per seed. Model, "
                         "conditioning and sampler settings are given once. Also outputs every image as one batch "
                         "(row by row) and a heat-map grid aligned with the image grid (the finest guided scale's "
                         "guidance magnitude over each image, with the row's mean evenness E). " + SIZES),
            inputs=[
                *setting_inputs(comparison=True),
                *[GuiderType.Input(f"guider_{i}", optional=True,
                                   tooltip=f"Row {i}: a guider or stack (unconnected slots are skipped).")
                  for i in range(1, GUIDER_SLOTS + 1)],
                io.Image.Input("image", optional=True,
                               tooltip="Image to edit (zero-shot) in every row: its own tokens are kept wherever the "
                                       "mask is black, at every scale, as in the Scale-wise Sampler; image i of a "
                                       "batch is edited in column i (a batch of 1 in every column). Any size: "
                                       "cropped to the model's size (the sampler's fit = crop)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="What to regenerate in the image (white = 1 = new, black = keep), e.g. Load "
                                      "Image's mask editor; resized to the image. Needs the image."),
                temperature_input(),
            ],
            outputs=[io.Image.Output(display_name="grid"),
                     io.Image.Output(display_name="images", tooltip="All images, row by row."),
                     io.Image.Output(display_name="heatmaps", tooltip="Guidance heat maps in the grid's layout.")],
            is_output_node=True,
        )

    @classmethod
    @checked_inputs
    def execute(cls, model, conditioning, seed, images_per_row, top_k, top_p, more_smooth, preview,
                smooth_start_scale, last_scale_temperature, image=None, mask=None, temperature=1.0,
                **guiders) -> io.NodeOutput:
        named = [(f"guider_{i}", guiders.get(f"guider_{i}")) for i in range(1, GUIDER_SLOTS + 1)]
        named = [(name, g) for name, g in named if g is not None]
        if not named:
            raise ValueError(f"connect at least one guider to guider_1 .. guider_{GUIDER_SLOTS}")
        check_size(len(named), images_per_row, "guiders")
        draw = sampler_draw(top_k, top_p, more_smooth, smooth_start_scale, last_scale_temperature, temperature)
        guider_list, names = [g for _, g in named], [name for name, _ in named]
        with input_notes("Compare Guiders") as notes:
            edit = comparison_edit(image, mask)
            result = run(model, conditioning, seed, images_per_row, preview, draw, edit, len(named),
                         lambda net, generation, **hooks: compare(net, guider_list, generation, names=names, **hooks))
        images = node_images(result)
        labels = [g.describe() for g in guider_list]
        columns = column_labels(seed, images_per_row)
        grid = render_grid(images, labels, columns)
        cells = torch.cat([heatmap_cells(row.trace, images[i * images_per_row:(i + 1) * images_per_row])
                           for i, row in enumerate(result.rows)])
        heat_labels = [f"{label}   ({_evenness_label(row.mean_evenness)})" for label, row in zip(labels, result.rows)]
        heat = render_grid(cells, heat_labels, columns, title="guidance at the finest guided scale")
        device = mm.intermediate_device()
        return io.NodeOutput(grid.to(device), images.to(device), heat.to(device),
                             ui={**_preview(cls, grid), **_edit_notes(image, notes)})


def _evenness_label(mean: float) -> str:
    return "unguided: no guidance to map" if math.isnan(mean) else f"mean E {mean:.3f}"


# The swept field's range per guider: the guider node's widget range (Guider.strength_range)
STRENGTH_RANGES = ", ".join(f"{g.__name__} {g.strength_field} {fmt_range(*g.strength_range)}"
                            for g in (CFG, IGG, SoftCFG, SSG))

class GuidanceSweep(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseGuidanceSweep",
            display_name="Guidance Sweep",
            category=CATEGORY,
            **aliases("sweep", "guidance scale", "CFG scale", "evenness", "divergence", "balance", "XY plot", "VAR",
                      "Switti"),
            description=(
                "Generates the same seeds at several strengths of one guider (CFG: cfg, IGG: scale, SoftCFG: strength, "
                "SSG: beta; the top guider of a stack) and plots the IGG paper's evenness E and divergence D "
                "against strength. The paper (Nguyen et al. 2025) found its best FID where the two balance; the "
                "balance point output is where E - D changes sign (interpolated) or, if it never does, the "
                "closest approach. A suggestion, not a promise: on the pack's built-in models the two did not cross, "
                "and the closest approach matched the best image quality only in some sweeps (what was measured: "
                "tools/benchmark_results/shapes_guidance.md and scenes_guidance.md). D needs a foreground mask: "
                "connect one, or use a built-in model, whose shipped judge segments its images. "
                + SIZES),
            inputs=[
                *setting_inputs(comparison=True),
                GuiderType.Input("guider", tooltip="The guider (or stack) whose top guider's strength is swept."),
                io.String.Input("strengths", default="1, 2, 3, 4, 6",
                                tooltip="Strengths to try, separated by commas, semicolons, line breaks or spaces; "
                                        "sorted ascending, one row each. Each must be in the swept guider's widget "
                                        f"range ({STRENGTH_RANGES})."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Foreground masks (white = object) at image size for D: 1, one per column "
                                      "(seed), or one per image (row by row). Not needed with a built-in model."),
                io.Image.Input("image", optional=True,
                               tooltip="Image to edit (zero-shot) in every row, as in Compare Guiders (cropped to the "
                                       "model's size): the mask then says what to regenerate (white = new, as in the "
                                       "Scale-wise Sampler) and D is measured on the regenerated region."),
                temperature_input(),
            ],
            outputs=[io.Image.Output(display_name="grid"),
                     io.Image.Output(display_name="plot", tooltip="E and D against strength, balance marked."),
                     io.Float.Output(display_name="balance_strength",
                                     tooltip="Strength where E and D balance; -1 without divergence (no mask)."),
                     io.Image.Output(display_name="images", tooltip="All images, row by row.")],
            is_output_node=True,
        )

    @classmethod
    def check_values(cls, values):
        strengths = values.get("strengths")
        if isinstance(strengths, str):  # linked: None before the run, checked when the node runs
            try:
                parse_strengths(strengths)
            except ValueError as e:
                return str(e)
        return None

    @classmethod
    def validate_inputs(cls, strengths=None):
        return cls.known_problem(strengths=strengths)

    @classmethod
    @checked_inputs
    def execute(cls, model, conditioning, seed, images_per_row, top_k, top_p, more_smooth, preview,
                smooth_start_scale, last_scale_temperature, guider, strengths, mask=None, image=None,
                temperature=1.0) -> io.NodeOutput:
        values = parse_strengths(strengths)
        check_size(len(values), images_per_row, "strengths")
        draw = sampler_draw(top_k, top_p, more_smooth, smooth_start_scale, last_scale_temperature, temperature)
        class_set = getattr(model.model, "class_set", None)
        with input_notes("Guidance Sweep") as notes:
            edit = comparison_edit(image, mask if image is not None else None)  # without an image: D's mask
            source = "edit" if edit is not None and edit.mask is not None else \
                "connected" if mask is not None else "judge"
            masks = None if source == "edit" else mask if source == "connected" else \
                (lambda images: judge_masks(class_set, images))  # None: the regenerated region (guidance.runs)
            result = run(model, conditioning, seed, images_per_row, preview, draw, edit, len(values),
                         lambda net, generation, **hooks: sweep(net, guider, values, generation, masks=masks,
                                                                **hooks))
        images, columns = node_images(result), images_per_row
        grid = render_grid(images, [row.guider.describe() for row in result.rows], column_labels(seed, columns))
        even, div, balance = result.evenness, result.divergence, result.balance
        note = ("no divergence: connect a foreground mask to find the balance point" if div is None else
                "D undefined: the masks leave no background, or no object, at any scale" if balance is None else
                "D from the region the edit regenerated" if source == "edit" else
                "D from the built-in model's judge masks" if source == "judge" else "D from the connected mask")
        # "CFG scale sweep": the published title (the plot is a saved workflow's image) says "scale" for cfg
        word = "scale" if guider.strength_field == "cfg" else guider.strength_field
        plot = render_balance_plot(values, even, div, balance, title=f"{guider.kind.upper()} {word} sweep, "
                                   f"{columns} image(s) per strength", note=note)
        strength = balance.strength if balance is not None else -1.0
        report = json.dumps({"strengths": list(values), "evenness": _json(even), "divergence": _json(div),
                             "balance_strength": strength, "balance": balance.kind if balance else None,
                             "mask": source if div is not None or source != "judge" else None})
        device = mm.intermediate_device()
        return io.NodeOutput(grid.to(device), plot.to(device), strength, images.to(device),
                             ui={**_preview(cls, plot, grid), "scalewise_balance": [report], **_edit_notes(image, notes)})


def _json(values):
    return None if values is None else [None if math.isnan(v) else v for v in values]
