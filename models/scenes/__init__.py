"""The built-in scenes model (128 px, scales 1-2-3-4-5-6-8): a VAR and VQ-VAE of the official layouts trained on
procedural scenes (a main object of one of ten shape classes among distractors, textures and coloured backgrounds),
and its judge (the tiny model's judge network, trained on the scenes: class, main-object mask, Fréchet features).
Weights ship in this folder as fp16 safetensors; the data and training code are tools (tools/scenes/)."""
from __future__ import annotations

import os

HERE = os.path.dirname(os.path.abspath(__file__))
VAR_FILE = os.path.join(HERE, "scenes_var.safetensors")
VAE_FILE = os.path.join(HERE, "scenes_vae.safetensors")
JUDGE_FILE = os.path.join(HERE, "scenes_judge.safetensors")
BUILTIN_NAME = "scenes-128 (built in)"  # how loaders list it next to the files of models/var
CLASS_SET = "scenes-128"  # the name of its class list (ClassCondition.class_set, VARModel.class_set)
RESOLUTION = 128
PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8)
CLASS_NAMES = ("circle", "ring", "square", "triangle", "cross", "star", "crescent", "dots", "heart", "bar")

__all__ = ["BUILTIN_NAME", "CLASS_NAMES", "CLASS_SET", "VAR_FILE", "VAE_FILE", "JUDGE_FILE", "RESOLUTION", "PATCH_NUMS"]
