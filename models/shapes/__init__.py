"""The built-in tiny model: a VAR and VQ-VAE of the official layouts trained on procedural shapes, and the weights
of its judge (models/judge.py: classifies and segments its images; the Guidance Sweep node takes its foreground
masks for the divergence). Their weights ship in this folder as safetensors; models/builtin.py lists the model for
the nodes; the data generator and the training code are tools (tools/shapes/), not run by the pack."""
from __future__ import annotations

import os

import torch


HERE = os.path.dirname(os.path.abspath(__file__))
VAR_FILE = os.path.join(HERE, "shapes_var.safetensors")
VAE_FILE = os.path.join(HERE, "shapes_vae.safetensors")
JUDGE_FILE = os.path.join(HERE, "shapes_judge.safetensors")
BUILTIN_NAME = "tiny-shapes (built in)"  # how loaders list it next to the files of models/var
CLASS_SET = "tiny-shapes"  # the name of its class list (ClassCondition.class_set, VARModel.class_set)
RESOLUTION = 64
PATCH_NUMS = (1, 2, 3, 4)
CLASS_NAMES = ("circle", "ring", "square", "triangle", "cross", "star", "crescent", "dots", "heart", "bar")


def load_shapes_model(device="cpu", dtype=torch.float32, vae_dtype=None):
    """The built-in VARModel (10 classes, 64 px) with its class names and class set; `vae_dtype` None = `dtype`
    (what models/builtin.py SHAPES_MODEL.load gives)."""
    from ..var_loader import load_var
    return load_var(VAR_FILE, VAE_FILE, device=device, dtype=dtype, vae_dtype=vae_dtype, class_names=CLASS_NAMES,
                    class_set=CLASS_SET)


def load_judge(device="cpu"):
    """The judge network (fp32, eval mode) with its shipped weights (what models/builtin.py SHAPES_MODEL.load_judge
    gives)."""
    from ..judge import load_judge as load
    return load(JUDGE_FILE, len(CLASS_NAMES), device)


__all__ = ["CLASS_NAMES", "CLASS_SET", "VAR_FILE", "VAE_FILE", "JUDGE_FILE", "BUILTIN_NAME", "RESOLUTION",
           "PATCH_NUMS", "load_shapes_model", "load_judge"]
