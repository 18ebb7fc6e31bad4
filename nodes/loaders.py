"""Loader node: an official VAR transformer + its VQ-VAE, managed by ComfyUI's model management."""
from __future__ import annotations

import comfy.model_management as mm
import comfy.model_patcher
import torch
from comfy_api.latest import io

from ..models import load_var
from .common import ModelType, full_path, model_files

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
VAE_FILE = "vae_ch160v4096z32.pth"


def check_loader_inputs(folder: str, files: dict, dtype: str, hint: str):
    """validate_inputs of the loaders: every file in models/<folder>, a known dtype (True or a message)."""
    available = set(model_files(folder))
    for label, name in files.items():
        if name not in available:
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
        files = model_files("var")
        vae_files = sorted(files, key=lambda f: (not f.startswith("vae"), f))
        return io.Schema(
            node_id="ScalewiseVARLoader",
            display_name="Load VAR Model",
            category="loaders/scalewise",
            description=(
                "Loads an official VAR checkpoint (var_d16/20/24/30.pth at 256 px, var_d36.pth at 512 px) with its "
                "VQ-VAE vae_ch160v4096z32.pth, both from models/var. The resolution is fixed by the checkpoint: VAR "
                "was trained on one scale schedule, and other sizes give noise."),
            inputs=[
                io.Combo.Input("var_name", options=files,
                               tooltip="The VAR transformer (var_d16.pth … var_d36.pth; .safetensors preferred)."),
                io.Combo.Input("vae_name", options=vae_files,
                               tooltip=f"The multi-scale VQ-VAE that decodes VAR's tokens: {VAE_FILE}."),
                io.Combo.Input("dtype", options=["auto", *DTYPES], default="auto",
                               tooltip="Weight precision. auto: bf16 or fp16 on GPUs that support it, fp32 on CPU."),
            ],
            outputs=[ModelType.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, var_name, vae_name, dtype):
        return check_loader_inputs("var", {"var_name": var_name, "vae_name": vae_name}, dtype,
                                   f"put the official files there, e.g. var_d16.pth and {VAE_FILE}")

    @classmethod
    def execute(cls, var_name, vae_name, dtype) -> io.NodeOutput:
        device = mm.get_torch_device()
        model = load_var(full_path("var", var_name), full_path("var", vae_name), device="cpu",
                         dtype=pick_dtype(dtype, device))
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=mm.unet_offload_device())
        return io.NodeOutput(patcher)
