"""Switti nodes: the loader and a text encoder that builds Switti's conditioning from ComfyUI's CLIP."""
from __future__ import annotations

from comfy.cli_args import args
from comfy_api.latest import io

from ..models import load_switti
from .common import (DTYPES, CondType, ModelType, ScalewiseNode, check_loader_inputs, checked_inputs, full_path,
                     load_model, model_files, noted_output)
from .features import aliases, expert
from .switti_text import encode_prompt


class SwittiLoader(ScalewiseNode):
    file_inputs = ("switti_name", "vae_name")

    @classmethod
    def define_schema(cls):
        files = model_files("switti")
        vae_files = sorted(files, key=lambda f: ("vqvae" not in f.lower(), f))
        return io.Schema(
            node_id="ScalewiseSwittiLoader",
            display_name="Load Switti Model",
            category="loaders/scalewise",
            **aliases("Switti", "load Switti", "checkpoint", "text to image", "next-scale"),
            description=(
                "Loads an official Switti text-to-image model from models/switti (one folder per Hugging Face "
                "repo: Switti/, Switti-AR/, Switti-1024/, Switti-1024-AR/, each with model.safetensors and "
                "config.json) and its VQ-VAE (VQVAE-Switti/model.safetensors). 512 or 1024 px, fixed by the model."),
            inputs=[
                io.Combo.Input("switti_name", options=files,
                               tooltip="The Switti transformer: <repo folder>/model.safetensors."),
                io.Combo.Input("vae_name", options=vae_files,
                               tooltip="Switti's own VQ-VAE, VQVAE-Switti/model.safetensors (not VAR's VQ-VAE)."),
                io.Combo.Input("dtype", options=["auto", *DTYPES], default="auto",
                               tooltip="Weight precision. auto: bf16 on GPUs with bf16 (about 5 GB); on GPUs "
                                       "without it (V100, T4, RTX 20xx) fp32 (fp16 is unverified for Switti); "
                                       "fp32 on CPU. The VQ-VAE never runs in fp16 under auto.",
                               **expert()),
            ],
            outputs=[ModelType.Output(display_name="model")],
        )

    @classmethod
    # every combo, each defaulting to None (a missing input: ComfyUI's own message): see ScalewiseNode
    def validate_inputs(cls, switti_name=None, vae_name=None, dtype=None):
        return cls.known_problem(switti_name=switti_name, vae_name=vae_name, dtype=dtype)

    @classmethod
    def check_values(cls, values):
        ok = check_loader_inputs("switti", {"switti_name": values["switti_name"], "vae_name": values["vae_name"]},
                                 values.get("dtype"), "keep each Hugging Face repo in its own folder, e.g. "
                                 "models/switti/Switti/model.safetensors")
        return None if ok is True else ok

    @classmethod
    @checked_inputs
    def execute(cls, switti_name, vae_name, dtype) -> io.NodeOutput:
        def load(precision):
            return load_switti(full_path("switti", switti_name), full_path("switti", vae_name), device="cpu",
                               dtype=precision.transformer, vae_dtype=precision.vae_load_dtype,
                               mmap=not args.disable_mmap)
        return load_model("Load Switti Model", "switti", load, switti_name,
                          dict(switti_name=switti_name, vae_name=vae_name, dtype=dtype))


class SwittiTextEncode(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseSwittiTextEncode",
            display_name="Switti Text Encode",
            category="conditioning/scalewise",
            **aliases("Switti", "prompt", "CLIP text encode", "text encode", "conditioning"),
            description=("Encodes a prompt for Switti with the CLIP-L and CLIP-bigG files you already have "
                         "(DualCLIPLoader, type sdxl, clip_l + clip_g), the way Switti was trained: final-layer "
                         "features, the unprojected pooled vector and a padding mask. ComfyUI's SDXL CONDITIONING "
                         "differs, so it cannot be used. Prompts are cut at 77 tokens, as in the official pipeline."),
            inputs=[
                io.Clip.Input("clip", tooltip="CLIP from DualCLIPLoader (type sdxl) with clip_l and clip_g."),
                io.String.Input("positive", multiline=True, default="",
                                tooltip="What to draw. Only the first 77 tokens (about 60 words) are used. "
                                        "embedding:name works with SDXL embeddings; weights like (word:1.2) are "
                                        "ignored (Switti has no prompt weighting)."),
                io.String.Input("negative", multiline=True, default="",
                                tooltip="The unconditional prompt for guidance; Switti was trained with the empty "
                                        "prompt, so leave it empty unless you want to steer away from something."),
            ],
            outputs=[CondType.Output(display_name="conditioning")],
        )

    @classmethod
    @checked_inputs
    def execute(cls, clip, positive, negative) -> io.NodeOutput:
        cond, notes = encode_prompt(clip, positive, "positive")
        cond.negative, notes_neg = encode_prompt(clip, negative, "negative")
        return noted_output("Switti Text Encode", cond, notes + notes_neg, positive=positive, negative=negative)
