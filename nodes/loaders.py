"""Loader node: an official VAR transformer + its VQ-VAE, or the built-in tiny-shapes model, managed by ComfyUI's
model management."""
from __future__ import annotations

import comfy.model_management as mm
import comfy.model_patcher
import torch
from comfy_api.latest import io

from ..models import load_var
from ..models.shapes import BUILTIN_NAME, CLASS_NAMES, load_shapes_model
from .common import ModelType, full_path, model_files

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
VAE_FILE = "vae_ch160v4096z32.pth"


def var_loader_options(files: list[str]) -> tuple[list[str], list[str]]:
    """(var_name options, vae_name options) for the files of models/var: the files (VQ-VAEs first for vae_name),
    then the built-in model, which is therefore the only and default entry while models/var is empty."""
    files = [f for f in files if f != BUILTIN_NAME]
    vae_files = sorted(files, key=lambda f: (not f.startswith("vae"), f))
    return [*files, BUILTIN_NAME], [*vae_files, BUILTIN_NAME]


def check_builtin_pair(var_name: str, vae_name: str):
    """The built-in transformer and VQ-VAE only work together (True or a message naming vae_name)."""
    if var_name == BUILTIN_NAME and vae_name != BUILTIN_NAME:
        return (f"vae_name: '{vae_name}' cannot decode the built-in model (var_name '{BUILTIN_NAME}'): its tokens "
                f"come from its own tiny VQ-VAE, so set vae_name to '{BUILTIN_NAME}' too")
    if vae_name == BUILTIN_NAME and var_name != BUILTIN_NAME:
        return (f"vae_name: '{BUILTIN_NAME}' is the built-in model's own VQ-VAE and only decodes the built-in "
                f"model, not var_name '{var_name}': pick the VQ-VAE file of that transformer (e.g. {VAE_FILE}), "
                f"or set var_name to '{BUILTIN_NAME}' too")
    return True


def check_loader_inputs(folder: str, files: dict, dtype: str, hint: str, builtin: str | None = None):
    """validate_inputs of the loaders: every file in models/<folder> (or the `builtin` entry), a known dtype
    (True or a message)."""
    available = set(model_files(folder))
    for label, name in files.items():
        if name not in available and name != builtin:
            return f"{label}: '{name}' is not in models/{folder} ({hint}, then refresh)"
    if dtype != "auto" and dtype not in DTYPES:
        return f"dtype: {dtype!r} is not one of auto, {', '.join(DTYPES)}"
    return True


def pick_dtype(choice: str, device) -> torch.dtype:
    if choice != "auto":
        return DTYPES[choice]
    if mm.should_use_bf16(device):
        return torch.bfloat16
    if mm.should_use_fp16(device):
        return torch.float16
    return torch.float32


class VARLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        files, vae_files = var_loader_options(model_files("var"))
        return io.Schema(
            node_id="ScalewiseVARLoader",
            display_name="Load VAR Model",
            category="loaders/scalewise",
            description=(
                "Loads an official VAR checkpoint (var_d16/20/24/30.pth at 256 px, var_d36.pth at 512 px) with its "
                f"VQ-VAE {VAE_FILE}, both from models/var, or the built-in '{BUILTIN_NAME}' model: a tiny VAR "
                f"shipped with the pack (no download, 64 px, {len(CLASS_NAMES)} shape classes: "
                f"{', '.join(CLASS_NAMES)}); choose it for both var_name and vae_name. The resolution is fixed by "
                "the checkpoint: VAR was trained on one scale schedule, and other sizes give noise."),
            inputs=[
                io.Combo.Input("var_name", options=files,
                               tooltip=("The VAR transformer (var_d16.pth … var_d36.pth; .safetensors preferred), "
                                        f"or '{BUILTIN_NAME}' (the tiny shapes model that ships with the pack; "
                                        "the only entry while models/var is empty).")),
                io.Combo.Input("vae_name", options=vae_files,
                               tooltip=(f"The multi-scale VQ-VAE that decodes VAR's tokens: {VAE_FILE} for the "
                                        f"official models, '{BUILTIN_NAME}' for the built-in model.")),
                io.Combo.Input("dtype", options=["auto", *DTYPES], default="auto",
                               tooltip="Weight precision. auto: bf16 or fp16 on GPUs that support it, fp32 on CPU."),
            ],
            outputs=[ModelType.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, var_name, vae_name, dtype):
        ok = check_loader_inputs("var", {"var_name": var_name, "vae_name": vae_name}, dtype,
                                 f"put the official files there, e.g. var_d16.pth and {VAE_FILE}, or choose "
                                 f"'{BUILTIN_NAME}'", builtin=BUILTIN_NAME)
        return ok if ok is not True else check_builtin_pair(var_name, vae_name)

    @classmethod
    def execute(cls, var_name, vae_name, dtype) -> io.NodeOutput:
        device = mm.get_torch_device()
        precision = pick_dtype(dtype, device)
        if var_name == BUILTIN_NAME:
            model = load_shapes_model(device="cpu", dtype=precision)
        else:
            model = load_var(full_path("var", var_name), full_path("var", vae_name), device="cpu", dtype=precision)
        model.source_name = var_name          # named in the sampler's errors
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=mm.unet_offload_device())
        return io.NodeOutput(patcher)
