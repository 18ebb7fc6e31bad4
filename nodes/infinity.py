"""Infinity's loader node: an official Infinity transformer and its BSQ VAE from models/infinity, at one of the official
resolutions (the schedule is fixed when loading: RoPE positions and scale sizes are looked up per template)."""
from __future__ import annotations

import dataclasses
import logging
import types

import torch

import comfy.model_management as mm
import comfy.model_patcher
import comfy.ops
from comfy.cli_args import args
from comfy_api.latest import io

from ..models.infinity import PN_SCALES, template_scales
from ..models.infinity_loader import load_infinity
from .common import (DTYPES, ModelType, ScalewiseNode, check_loader_inputs, checked_inputs, checkpoint_notes,
                     entry_path, flag_name, full_path, info_ui, model_files, pick_dtypes, sharded_entries, unet_flag)
from .features import aliases, expert

TRANSFORMER_FILE, VAE_FILE = "infinity_2b_reg.pth", "infinity_vae_d32reg.pth"
EIGHT_B, EIGHT_B_VAE = "infinity_8b_weights/model.safetensors.index.json", "infinity_vae_d56_f8_14_patchify.pth"
# The official aspect-ratio templates (models/infinity.py TEMPLATES, keyed by h / w) by their width:height:
# (width, height) of the aspect -> h / w; 1:1, then the wide ones, then the tall ones.
WIDE = {(5, 4): 0.8, (4, 3): 0.75, (3, 2): 0.666, (7, 4): 0.571, (2, 1): 0.5, (5, 2): 0.4, (3, 1): 0.333}
TALL = {(4, 5): 1.25, (3, 4): 1.333, (2, 3): 1.5, (4, 7): 1.75, (1, 2): 2.0, (2, 5): 2.5, (1, 3): 3.0}
ASPECTS = {(1, 1): 1.0, **WIDE, **TALL}


def _name(aspect: tuple[int, int], pn: str) -> str:
    h, w = template_scales(ASPECTS[aspect], pn)[-1]
    return f"{16 * w}×{16 * h} ({aspect[0]}:{aspect[1]}, {pn})"


# Every official size, as users name them: width×height px (width:height, megapixels), largest first; per size 1:1,
# then the wide aspects, then the tall ones. The four 1:1 names are those of the first releases (saved workflows).
RESOLUTIONS = {_name(aspect, pn): (ASPECTS[aspect], pn) for pn in reversed(PN_SCALES) for aspect in ASPECTS}
DEFAULT_RESOLUTION = next(iter(RESOLUTIONS))  # 1024×1024 (1:1, 1M): the released models' training size


def template_note(h_div_w: float, pn: str) -> str:
    """What the loader tells the user about the schedule it set up: the template (h / w), the scales, the size."""
    scales = template_scales(h_div_w, pn)
    h, w = scales[-1]
    steps = " ".join(f"{a}×{b}" for a, b in scales)
    return (f"template h/w {h_div_w:g} at {pn}: {len(scales)} scales, token maps (h×w) {steps}; "
            f"{16 * w}×{16 * h} px (width×height)")


# fp8 weight storage of the depth blocks' linear layers (computed in the dtype auto picks), as ComfyUI's
# --fp8_e4m3fn-unet / --fp8_e5m2-unet and its UNet loader's weight_dtype store its own models.
FP8 = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


def comfy_operations(weight_dtype: torch.dtype, compute_dtype: torch.dtype):
    """The `operations` Infinity's depth blocks are built with: ComfyUI's cast layers (comfy.ops), which ComfyUI's
    partial loading may leave on the CPU and cast per use (`comfy_cast_weights`), and which hold fp8 weights
    (manual_cast: always cast), with the `cast_parameters` that models/infinity.py `layer_parameters` reads."""
    base = comfy.ops.disable_weight_init if weight_dtype == compute_dtype else comfy.ops.manual_cast

    class Linear(base.Linear):
        def cast_parameters(self, x):
            if self.comfy_cast_weights or self.weight_function or self.bias_function:
                return comfy.ops.cast_bias_weight(self, x)  # on x's device, in x's dtype, ComfyUI's patches applied
            return self.weight, self.bias

    return types.SimpleNamespace(Linear=Linear)


def infinity_precision(choice: str, device):
    """(Precision, weight dtype of the block linear layers, what set it: "dtype fp8_e4m3fn", a flag's name, or None)
    for the dtype widget. bf16/fp16/fp32/auto as `pick_dtypes`; fp8_e4m3fn / fp8_e5m2 store the block weights in
    fp8 and compute in what auto picks (a note when a unet flag asked for something else); auto follows
    --fp8_e4m3fn-unet / --fp8_e5m2-unet the same way, and says why it cannot follow --fp8_e8m0fnu-unet (no sign
    bit)."""
    flag = unet_flag()
    names = {"fp8_e4m3fn_unet": "fp8_e4m3fn", "fp8_e5m2_unet": "fp8_e5m2"}
    if choice in FP8:
        precision = pick_dtypes("auto", device, "infinity")
        notes = () if flag is None or names.get(flag) == choice else (
            f"dtype {choice} (set on the node) overrides the launch flag {flag_name(flag)}; choose dtype auto to "
            "follow it",)
        return dataclasses.replace(precision, notes=notes), FP8[choice], f"dtype {choice}"
    if choice == "auto" and flag in names:
        precision = pick_dtypes("auto", device, "infinity")
        return dataclasses.replace(precision, notes=()), FP8[names[flag]], flag_name(flag)
    precision = pick_dtypes(choice, device, "infinity")
    if choice == "auto" and flag == "fp8_e8m0fnu_unet":
        compute = str(precision.transformer).replace("torch.", "")
        precision = dataclasses.replace(precision, notes=(
            f"--fp8_e8m0fnu-unet asks for float8_e8m0fnu weights, which has no sign bit: Infinity's weights stay in "
            f"{compute} (dtype fp8_e4m3fn or --fp8_e4m3fn-unet store its block weights in fp8)",))
    return precision, precision.transformer, None


def storage_note(model, source: str | None) -> str | None:
    """What the loaded weights say about fp8 storage: "<source>: the depth blocks' linear weights are stored in X,
    computed in Y", read from the weights themselves; None when they are stored in the compute dtype."""
    stored = {layer.weight.dtype for layer in model.transformer.cast_layers()}
    if stored == {model.dtype}:
        return None
    names = ", ".join(sorted(str(d).replace("torch.", "") for d in stored))
    return (f"{source or 'weights'}: the depth blocks' linear weights are stored in {names}, computed in "
            f"{str(model.dtype).replace('torch.', '')}")


def _vae_dtype(transformer: torch.dtype) -> torch.dtype:
    """The BSQ VAE's precision: the transformer's, except float32 under an fp16 transformer (the decoder overflows
    float16, and the base guard would decode every image and preview twice)."""
    return torch.float32 if transformer == torch.float16 else transformer


class InfinityLoader(ScalewiseNode):
    file_inputs = ("infinity_name", "vae_name")

    @classmethod
    def define_schema(cls):
        files = sharded_entries("infinity")  # the 8B's download folder as its index JSON
        vae_files = sorted(model_files("infinity"), key=lambda f: ("vae" not in f.lower(), f))
        return io.Schema(
            node_id="ScalewiseInfinityLoader",
            display_name="Load Infinity Model",
            category="loaders/scalewise",
            **aliases("Infinity", "bitwise", "load Infinity", "checkpoint", "text to image", "next-scale"),
            description=(
                f"Loads an official Infinity text-to-image transformer (2B: {TRANSFORMER_FILE}, or a .safetensors of "
                f"it, with {VAE_FILE}; 8B: its download folder, listed as {EIGHT_B}, with {EIGHT_B_VAE}) from "
                "models/infinity, at one of the official sizes "
                "(the aspect-ratio templates 1:1 to 3:1 and 1:3, at 0.06 to 1 megapixels; the model was trained "
                "at about 1 megapixel). Prompts come from Infinity Text Encode. "
                "Infinity's cfg counts from 1 (= no guidance; its published 3 with the CFG node's constant "
                "schedule) and its tau is the samplers' temperature input (published 0.5)."),
            inputs=[
                io.Combo.Input("infinity_name", options=files,
                               tooltip=f"The Infinity transformer: {TRANSFORMER_FILE} (2B), or the 8B's sharded "
                                       "download folder (listed once, as its index .json; read shard by shard)."),
                io.Combo.Input("vae_name", options=vae_files,
                               tooltip=f"The BSQ VAE trained with it: {VAE_FILE} for the 2B, {EIGHT_B_VAE} for "
                                       "the 8B."),
                io.Combo.Input("resolution", options=list(RESOLUTIONS), default=DEFAULT_RESOLUTION,
                               tooltip="Image size, width×height (width:height, megapixels): an official "
                                       "schedule of one of Infinity's aspect-ratio templates (other sizes are not "
                                       "in the model's position tables). The 1M sizes (1024×1024, 1440×720, …) "
                                       "are what the models were trained for; smaller sizes are faster and "
                                       "coarser."),
                io.Combo.Input("dtype", options=["auto", *DTYPES, *FP8], default="auto",
                               tooltip="Weight precision. auto: bf16 on GPUs with bf16 (the official precision), "
                                       "fp32 elsewhere and on CPU; with --fp8_e4m3fn-unet or --fp8_e5m2-unet as "
                                       "fp8_e4m3fn / fp8_e5m2. fp8_e4m3fn, fp8_e5m2: the transformer's block "
                                       "weights (93–97 %) stored in fp8 (the 8B in 8.2 GiB instead of 15.8), "
                                       "computed in auto's precision; close to bf16, not the same images.",
                               **expert()),
            ],
            outputs=[ModelType.Output(display_name="model")],
        )

    @classmethod
    # every combo, each defaulting to None (a missing input: ComfyUI's own message): see ScalewiseNode
    def validate_inputs(cls, infinity_name=None, vae_name=None, resolution=None, dtype=None):
        return cls.known_problem(infinity_name=infinity_name, vae_name=vae_name, resolution=resolution, dtype=dtype)

    @classmethod
    def check_values(cls, values):
        resolution = values.get("resolution")
        if resolution is not None and resolution not in RESOLUTIONS:
            return (f"resolution: '{resolution}' is not an official Infinity size (only the templates' schedules "
                    f"have RoPE tables); pick one of the list, e.g. {DEFAULT_RESOLUTION} or 1440×720 (2:1, 1M)")
        hint = f"put the official files there, e.g. {TRANSFORMER_FILE} and {VAE_FILE}"
        name = values["infinity_name"]
        if name is not None and name not in sharded_entries("infinity"):
            try:
                entry_path("infinity", name, "infinity_name")
            except FileNotFoundError:
                return f"infinity_name: '{name}' is not in models/infinity ({hint}, then refresh)"
        ok = check_loader_inputs("infinity", {"vae_name": values["vae_name"]}, values.get("dtype"), hint,
                                 dtypes=(*DTYPES, *FP8))
        return None if ok is True else ok

    @classmethod
    @checked_inputs
    def execute(cls, infinity_name, vae_name, resolution, dtype) -> io.NodeOutput:
        device = mm.get_torch_device()
        precision, weight_dtype, source = infinity_precision(dtype, device)
        h_div_w, pn = RESOLUTIONS[resolution]
        with checkpoint_notes("Load Infinity Model") as notes:
            model = load_infinity(entry_path("infinity", infinity_name, "infinity_name"),
                                  full_path("infinity", vae_name), pn=pn, h_div_w=h_div_w, device="cpu",
                                  dtype=precision.transformer, mmap=not args.disable_mmap,
                                  vae_dtype=_vae_dtype(precision.transformer),
                                  operations=comfy_operations(weight_dtype, precision.transformer),
                                  weight_dtype=weight_dtype)
        notes.extend(precision.notes)
        stored = storage_note(model, source)
        if stored:
            notes.append(stored)
        if precision.image_device is not None:
            notes.append("--cpu-vae: Infinity's BSQ VAE stays with the transformer (not moved to the CPU yet)")
        notes.append(template_note(h_div_w, pn))
        for note in notes:
            logging.info("Load Infinity Model: %s", note)
        model.source_name = infinity_name     # named in the sampler's errors
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=mm.unet_offload_device())
        return io.NodeOutput(patcher, ui=info_ui(notes, infinity_name=infinity_name, vae_name=vae_name,
                                                 resolution=resolution, dtype=dtype))
