"""The built-in tiny model: a VAR and VQ-VAE of the official layouts trained on procedural shapes. Its weights ship
in this folder as fp16 safetensors; the data generator, the training code and the judge that scores what it
generates are tools (tools/shapes/), not run by the pack."""
from __future__ import annotations

import os

import torch

from ..var import SHAPES

HERE = os.path.dirname(os.path.abspath(__file__))
VAR_FILE = os.path.join(HERE, "shapes_var.safetensors")
VAE_FILE = os.path.join(HERE, "shapes_vae.safetensors")
BUILTIN_NAME = "tiny-shapes (built in)"  # how loaders list it next to the files of models/var
RESOLUTION = 64
PATCH_NUMS = (1, 2, 3, 4)
CLASS_NAMES = ("circle", "ring", "square", "triangle", "cross", "star", "crescent", "dots", "heart", "bar")


def load_shapes_model(device="cpu", dtype=torch.float32, vae_dtype=None):
    """The built-in VARModel (10 classes, 64 px); `vae_dtype` None = `dtype`."""
    from ..var_loader import load_var
    model = load_var(VAR_FILE, VAE_FILE, device=device, dtype=dtype, vae_dtype=vae_dtype)
    model.class_names, model.class_set = CLASS_NAMES, SHAPES
    return model


__all__ = ["CLASS_NAMES", "VAR_FILE", "VAE_FILE", "BUILTIN_NAME", "RESOLUTION", "PATCH_NUMS",
           "load_shapes_model"]
