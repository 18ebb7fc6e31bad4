"""Switti nodes: the loader and a text encoder that builds Switti's conditioning from ComfyUI's CLIP."""
from __future__ import annotations

import logging

import comfy.model_management as mm
import comfy.model_patcher
import torch
from comfy_api.latest import io

from ..models import TextCondition, load_switti
from .common import DTYPES, CondType, ModelType, check_loader_inputs, full_path, model_files, pick_dtype
from .features import aliases, expert

EOS = 49407         # CLIP's end-of-text token; bigG pads with 0 after it
CLIP_L_WIDTH = 768  # the context is [CLIP-L | bigG]; bigG's part holds the pooled vector


class SwittiLoader(io.ComfyNode):
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
                               tooltip="Weight precision. auto: bf16 or fp16 on GPUs (about 5 GB), fp32 on CPU.",
                               **expert()),
            ],
            outputs=[ModelType.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, switti_name, vae_name, dtype):
        return check_loader_inputs("switti", {"switti_name": switti_name, "vae_name": vae_name}, dtype,
                                   "keep each Hugging Face repo in its own folder, e.g. "
                                   "models/switti/Switti/model.safetensors")

    @classmethod
    def execute(cls, switti_name, vae_name, dtype) -> io.NodeOutput:
        device = mm.get_torch_device()
        model = load_switti(full_path("switti", switti_name), full_path("switti", vae_name), device="cpu",
                            dtype=pick_dtype(dtype, device))
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=mm.unet_offload_device())
        return io.NodeOutput(patcher)


def encode_prompt(clip, text: str) -> tuple[TextCondition, bool]:
    """Switti's text features from an SDXL CLIP object: last layer after the final LayerNorm of both
    encoders ([L | G], 77 tokens), the unprojected bigG pooled vector and the padding mask. Returns the
    condition and whether the prompt was truncated to 77 tokens (as the official pipeline does)."""
    clip = clip.clone()
    clip.clip_layer(-33)  # beyond every layer index: ComfyUI then takes the final-LN'd last layer
    tokens = clip.tokenize(text)
    if set(tokens) != {"l", "g"}:
        raise ValueError(f"Switti needs the SDXL text encoders (clip_l + clip_g through DualCLIPLoader, type sdxl); "
                         f"this CLIP object has encoders {sorted(tokens)}")
    truncated = len(tokens["g"]) > 1
    tokens = {name: [[(t[0], 1.0) + tuple(t[2:]) for t in chunks[0]]] for name, chunks in tokens.items()}
    hidden, _ = clip.encode_from_tokens(tokens, return_pooled=True)  # not "unprojected": see switti.md §4.4
    ids = [t[0] for t in tokens["g"][0]]
    valid = ids.index(EOS) + 1 if EOS in ids else len(ids)
    mask = torch.arange(hidden.shape[1]) < valid
    hidden = hidden.float().cpu()
    for name, other, part in (("clip_l", "clip_g", hidden[..., :CLIP_L_WIDTH]),
                              ("clip_g", "clip_l", hidden[..., CLIP_L_WIDTH:])):
        # An encoder whose file was never loaded (DualCLIPLoader given two clip_l or two clip_g files) keeps
        # uninitialised weights: NaN, or the same vector at every token. Real features are neither.
        finite = bool(torch.isfinite(part).all())
        if not finite or bool((part == part[:, :1]).all()):
            raise ValueError(f"clip: the {name} encoder of this CLIP gives {'constant' if finite else 'NaN/inf'} "
                             f"features: its weights are missing (two {other} files in DualCLIPLoader?) or damaged. "
                             "Switti needs clip_l.safetensors and clip_g.safetensors, one of each, through "
                             "DualCLIPLoader, type sdxl")
    pooled = hidden[:, valid - 1, CLIP_L_WIDTH:]
    return TextCondition(hidden, pooled, mask[None]), truncated


class SwittiTextEncode(io.ComfyNode):
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
                                tooltip="What to draw. Only the first 77 tokens (about 60 words) are used."),
                io.String.Input("negative", multiline=True, default="",
                                tooltip="The unconditional prompt for guidance; Switti was trained with the empty "
                                        "prompt, so leave it empty unless you want to steer away from something."),
            ],
            outputs=[CondType.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, clip, positive, negative) -> io.NodeOutput:
        cond, cut = encode_prompt(clip, positive)
        cond.negative, cut_neg = encode_prompt(clip, negative)
        notes = [f"{name} prompt cut to 77 tokens (Switti reads no more)" for name, c in
                 (("positive", cut), ("negative", cut_neg)) if c]
        for note in notes:
            logging.warning("Switti Text Encode: %s", note)
        return io.NodeOutput(cond, ui={"scalewise_info": notes} if notes else None)
