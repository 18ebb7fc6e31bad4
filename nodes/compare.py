"""Artist tools: compare guiders on the same seeds, and sweep one guider's strength with the IGG paper's
evenness/divergence balance. Both run the sampler node's machinery (conditioning check, model loading, progress
and Cancel at every scale, out-of-memory message) once per row, with one progress bar over the whole comparison."""
from __future__ import annotations

import json
import math

import comfy.model_management as mm
import torch
from comfy_api.latest import io, ui

from ..guidance import Generation, RunInfo
from ..guidance.editing import check_object_mask, square_mask
from ..guidance.balance import balance_point, parse_strengths, render_balance_plot
from ..guidance.grid import MAX_IMAGES, heatmap_cells, render_grid
from ..guidance.metrics import divergence, evenness, nanmean
from ..guidance.stack import GuidanceRun
from ..models.builtin import judge_masks
from .common import CATEGORY, GuiderType, ScalewiseNode, checked_inputs
from .features import aliases
from .sampler import ScaleProgressReporter, load_model, prepare_condition, sample_images, sampler_draw
from .settings import setting_inputs

GUIDER_SLOTS = 4
SIZES = (f"At most {MAX_IMAGES} images (rows x images_per_row). Outputs for the largest: the image batch "
         f"[{MAX_IMAGES}, S, S, 3] float32 (S = model image size: 12 MiB at 64 px, 48 MiB at 256 px, 192 MiB at "
         "512 px, 768 MiB at 1024 px); grid cells of 128 px (64 px images enlarged) up to 512 px (1024 px images "
         "shrunk): 4 x 16 cells of 512 px make 8909 x 2219 px (226 MiB), 64 rows of one such cell 914 x 34199 px "
         "(358 MiB). Sampling memory is that of one Scale-wise Sampler batch of images_per_row, one row at a time.")


def check_guider(net, guider, batch: int, name: str) -> None:
    """Validate a guider stack against the model before any row is sampled; errors name the input."""
    info = RunInfo(tuple(net.patch_nums), batch, net.vocab_size, net.family, net.autoregressive)
    try:
        GuidanceRun(guider, info)
    except ValueError as e:
        raise ValueError(f"{name} ({guider.describe()}): {e}") from None


def check_size(rows: int, columns: int, rows_name: str) -> None:
    """ValueError naming both inputs when rows x columns exceeds MAX_IMAGES images."""
    if rows * columns > MAX_IMAGES:
        raise ValueError(f"{rows} {rows_name} x images_per_row {columns} = {rows * columns} images: a comparison "
                         f"holds at most {MAX_IMAGES}; lower images_per_row to {max(1, MAX_IMAGES // rows)} or "
                         f"fewer, or use fewer {rows_name}")


def run_rows(model, conditioning, guiders, seed, images_per_row, preview, **settings):
    """Sample every guider on the same seeds (one batch per row): images [R*C, S, S, 3] row-major, traces."""
    net = model.model
    prepare_condition(net, conditioning, images_per_row)  # the model's checks, before any GPU work
    generation = Generation(conditioning, seed, images_per_row, draw=sampler_draw(**settings))
    load_model(model, images_per_row, any(g is not None for g in guiders))
    reporter = ScaleProgressReporter(len(net.patch_nums), preview, runs=len(guiders))
    images, traces = [], []
    for guider in guiders:
        out = sample_images(net, guider, generation, reporter, batch_input="images_per_row")
        images.append(out.images.permute(0, 2, 3, 1).cpu())
        traces.append(out.trace)
        reporter.next_run()
    return torch.cat(images), traces


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
            ],
            outputs=[io.Image.Output(display_name="grid"),
                     io.Image.Output(display_name="images", tooltip="All images, row by row."),
                     io.Image.Output(display_name="heatmaps", tooltip="Guidance heat maps in the grid's layout.")],
            is_output_node=True,
        )

    @classmethod
    @checked_inputs
    def execute(cls, model, conditioning, seed, images_per_row, top_k, top_p, more_smooth, preview,
                smooth_start_scale, last_scale_temperature, **guiders) -> io.NodeOutput:
        named = [(f"guider_{i}", guiders.get(f"guider_{i}")) for i in range(1, GUIDER_SLOTS + 1)]
        named = [(name, g) for name, g in named if g is not None]
        if not named:
            raise ValueError(f"connect at least one guider to guider_1 .. guider_{GUIDER_SLOTS}")
        check_size(len(named), images_per_row, "guiders")
        for name, guider in named:
            check_guider(model.model, guider, images_per_row, name)
        images, traces = run_rows(model, conditioning, [g for _, g in named], seed, images_per_row, preview,
                                  top_k=top_k, top_p=top_p, more_smooth=more_smooth,
                                  smooth_start_scale=smooth_start_scale, last_scale_temperature=last_scale_temperature)
        labels = [g.describe() for _, g in named]
        columns = column_labels(seed, images_per_row)
        grid = render_grid(images, labels, columns)
        cells = torch.cat([heatmap_cells(t, images[i * images_per_row:(i + 1) * images_per_row])
                           for i, t in enumerate(traces)])
        heat_labels = [f"{label}   ({_evenness_label(t)})" for label, t in zip(labels, traces)]
        heat = render_grid(cells, heat_labels, columns, title="guidance at the finest guided scale")
        device = mm.intermediate_device()
        return io.NodeOutput(grid.to(device), images.to(device), heat.to(device), ui=_preview(cls, grid))


def _evenness_label(trace) -> str:
    mean = nanmean(evenness(trace)["mean"])
    return "unguided: no guidance to map" if math.isnan(mean) else f"mean E {mean:.3f}"


def sweep_masks(mask, net, images: torch.Tensor, rows: int, columns: int):
    """Foreground masks float [R*C, S, S] (1 = object) for the divergence: the connected MASK (1, one per column, or
    one per image), else, for a built-in model (tiny-shapes, scenes-128), its own shipped judge's segmentation of
    `images` [R*C, S, S, 3]; None when there is neither. A square mask of another size is resized. Raises ValueError
    for a mask of another shape or count."""
    size = images.shape[1]
    if mask is None:
        return judge_masks(getattr(net, "class_set", None), images.permute(0, 3, 1, 2))
    # any layout core's mask nodes accept, resampling overshoot clamped; a square mask of another size resized
    mask = square_mask(check_object_mask(mask), size)
    count = mask.shape[0]
    if count == 1:
        return mask.expand(rows * columns, -1, -1)
    if count == columns:
        return mask.repeat(rows, 1, 1)
    if count == rows * columns:
        return mask
    raise ValueError(f"mask: {count} masks; give 1, one per column ({columns}) or one per image ({rows * columns})")


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
                "Generates the same seeds at several strengths of one guider (CFG/IGG: scale, SoftCFG: strength, "
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
                                tooltip="Strengths to try, separated by commas; sorted ascending, one row each."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Foreground masks (white = object) at image size for D: 1, one per column "
                                      "(seed), or one per image (row by row). Not needed with a built-in model."),
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
                smooth_start_scale, last_scale_temperature, guider, strengths, mask=None) -> io.NodeOutput:
        values = parse_strengths(strengths)
        check_size(len(values), images_per_row, "strengths")
        guiders = []
        for value in values:
            try:
                guiders.append(guider.with_strength(value))
            except ValueError as e:
                raise ValueError(f"strengths: {value:g} for {guider.label()}: {e}") from None
        for g in guiders:
            check_guider(model.model, g, images_per_row, "guider")
        images, traces = run_rows(model, conditioning, guiders, seed, images_per_row, preview,
                                  top_k=top_k, top_p=top_p, more_smooth=more_smooth,
                                  smooth_start_scale=smooth_start_scale, last_scale_temperature=last_scale_temperature)
        rows, columns = len(values), images_per_row
        grid = render_grid(images, [g.describe() for g in guiders], column_labels(seed, columns))
        masks = sweep_masks(mask, model.model, images, rows, columns)
        even = [nanmean(evenness(t)["mean"]) for t in traces]
        div = None
        if masks is not None:
            div = [nanmean(divergence(t, masks[i * columns:(i + 1) * columns])["mean"])
                   for i, t in enumerate(traces)]
        balance = balance_point(values, even, div) if div is not None else None
        note = ("no divergence: connect a foreground mask to find the balance point" if div is None else
                "D undefined: the masks leave no background, or no object, at any scale" if balance is None else
                "D from the built-in model's judge masks" if mask is None else "D from the connected mask")
        plot = render_balance_plot(values, even, div, balance, title=f"{guider.kind.upper()} {guider.strength_field} sweep, "
                                   f"{columns} image(s) per strength", note=note)
        strength = balance.strength if balance is not None else -1.0
        report = json.dumps({"strengths": list(values), "evenness": _json(even), "divergence": _json(div),
                             "balance_strength": strength, "balance": balance.kind if balance else None,
                             "mask": "connected" if mask is not None else "judge" if div is not None else None})
        device = mm.intermediate_device()
        return io.NodeOutput(grid.to(device), plot.to(device), strength, images.to(device),
                             ui={**_preview(cls, plot, grid), "scalewise_balance": [report]})


def _json(values):
    return None if values is None else [None if math.isnan(v) else v for v in values]
