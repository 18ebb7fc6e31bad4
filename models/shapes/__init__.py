"""The built-in tiny model: a VAR and VQ-VAE of the official layouts trained on procedural shapes (`data.py`),
plus the judge network that scores what it generates. Weights ship in this folder as fp16 safetensors."""
from __future__ import annotations

import os

import torch

from ..var import SHAPES
from .data import CLASS_NAMES

HERE = os.path.dirname(os.path.abspath(__file__))
VAR_FILE = os.path.join(HERE, "shapes_var.safetensors")
VAE_FILE = os.path.join(HERE, "shapes_vae.safetensors")
JUDGE_FILE = os.path.join(HERE, "shapes_judge.safetensors")
BUILTIN_NAME = "tiny-shapes (built in)"  # how loaders list it next to the files of models/var
RESOLUTION = 64
PATCH_NUMS = (1, 2, 3, 4)


def load_shapes_model(device="cpu", dtype=torch.float32):
    """The built-in VARModel (10 classes, 64 px)."""
    from ..var_loader import load_var
    model = load_var(VAR_FILE, VAE_FILE, device=device, dtype=dtype)
    model.class_names, model.class_set = CLASS_NAMES, SHAPES
    return model


__all__ = ["CLASS_NAMES", "VAR_FILE", "VAE_FILE", "JUDGE_FILE", "BUILTIN_NAME", "RESOLUTION", "PATCH_NUMS",
           "load_shapes_model"]
