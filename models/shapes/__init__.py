"""The built-in tiny model: a VAR and VQ-VAE of the official layouts trained on procedural shapes, and its judge
(`judge.py`: classifies and segments its images; the Guidance Sweep node takes its foreground masks for the
divergence). Their weights ship in this folder as safetensors; the data generator and the training code are tools
(tools/shapes/), not run by the pack."""
from __future__ import annotations

import os

import torch


HERE = os.path.dirname(os.path.abspath(__file__))
VAR_FILE = os.path.join(HERE, "shapes_var.safetensors")
VAE_FILE = os.path.join(HERE, "shapes_vae.safetensors")
JUDGE_FILE = os.path.join(HERE, "shapes_judge.safetensors")
BUILTIN_NAME = "tiny-shapes (built in)"  # how loaders list it next to the files of models/var
RESOLUTION = 64
PATCH_NUMS = (1, 2, 3, 4)
CLASS_NAMES = ("circle", "ring", "square", "triangle", "cross", "star", "crescent", "dots", "heart", "bar")


def load_shapes_model(device="cpu", dtype=torch.float32, vae_dtype=None):
    """The built-in VARModel (10 classes, 64 px); `vae_dtype` None = `dtype` (models/builtin.py SHAPES_MODEL.load)."""
    from ..builtin import SHAPES_MODEL
    return SHAPES_MODEL.load(device=device, dtype=dtype, vae_dtype=vae_dtype)


def load_judge(device="cpu"):
    """The judge network (fp32, eval mode) with its shipped weights (models/builtin.py SHAPES_MODEL.load_judge)."""
    from ..builtin import SHAPES_MODEL
    return SHAPES_MODEL.load_judge(device)


__all__ = ["CLASS_NAMES", "VAR_FILE", "VAE_FILE", "JUDGE_FILE", "BUILTIN_NAME", "RESOLUTION", "PATCH_NUMS",
           "load_shapes_model", "load_judge"]
