"""The pack's built-in models: small VARs of the official layouts trained on procedural data, shipped with their
VQ-VAEs and judges as fp16 safetensors, so that every node works and guidance can be measured before any download.

`BUILTIN_MODELS` lists them; the loader and class nodes offer each one (`loader_name`, class labels
'<class_set> N: name'), and the Guidance Sweep node segments a built-in model's images with that model's judge.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from . import scenes, shapes
from .judge import Judge, judge_images, load_judge


@dataclass(frozen=True)
class BuiltinModel:
    """One built-in model: `class_set` names its class list (ClassCondition.class_set, VARModel.class_set, the prefix
    of its class labels); `loader_name` is its entry in the loader's var_name and vae_name lists; `summary` says what
    it is in a few words (for node descriptions); the files are fp16 safetensors of the official layouts (VAR,
    VQ-VAE) and of the judge network (models/judge.py)."""

    class_set: str
    loader_name: str
    summary: str
    class_names: tuple[str, ...]
    resolution: int
    patch_nums: tuple[int, ...]
    var_file: str
    vae_file: str
    judge_file: str

    def class_labels(self) -> list[str]:
        """The class picker's entries for this model: '<class_set> i: name' for each class, then
        '<class_set> N: (null / unconditional)' (N = number of classes, the null class id)."""
        n = len(self.class_names)
        return [f"{self.class_set} {i}: {name}" for i, name in enumerate(self.class_names)] + \
            [f"{self.class_set} {n}: (null / unconditional)"]

    def load(self, device="cpu", dtype=torch.float32, vae_dtype=None):
        """The VARModel (official loaders, `vae_dtype` None = `dtype`) with this model's class names and class set.
        Raises CheckpointError if a shipped file is damaged."""
        from .var_loader import load_var
        return load_var(self.var_file, self.vae_file, device=device, dtype=dtype, vae_dtype=vae_dtype,
                        class_names=self.class_names, class_set=self.class_set)

    def load_judge(self, device="cpu") -> Judge:
        """The judge network (fp32, eval mode, on `device`) with this model's shipped weights."""
        return load_judge(self.judge_file, len(self.class_names), device)


SHAPES_MODEL = BuiltinModel(shapes.CLASS_SET, shapes.BUILTIN_NAME, "64 px, scales 1-2-3-4, shapes on a light background",
                            shapes.CLASS_NAMES, shapes.RESOLUTION, shapes.PATCH_NUMS, shapes.VAR_FILE, shapes.VAE_FILE,
                            shapes.JUDGE_FILE)
SCENES_MODEL = BuiltinModel(scenes.CLASS_SET, scenes.BUILTIN_NAME,
                            "128 px, scales 1-2-3-4-5-6-8, a main shape among distractors on textured backgrounds",
                            scenes.CLASS_NAMES, scenes.RESOLUTION, scenes.PATCH_NUMS, scenes.VAR_FILE,
                            scenes.VAE_FILE, scenes.JUDGE_FILE)
BUILTIN_MODELS = (SHAPES_MODEL, SCENES_MODEL)


def builtin_by_name(loader_name: str) -> BuiltinModel | None:
    """The built-in model listed under `loader_name` in the loader, or None (a file name)."""
    return next((m for m in BUILTIN_MODELS if m.loader_name == loader_name), None)


def builtin_by_class_set(class_set: str | None) -> BuiltinModel | None:
    """The built-in model whose class list is `class_set`, or None (ImageNet, unknown, None)."""
    return next((m for m in BUILTIN_MODELS if m.class_set == class_set), None)


@functools.lru_cache(maxsize=len(BUILTIN_MODELS))
def _shipped_judge(model: BuiltinModel):
    return model.load_judge()


def judge_masks(class_set: str | None, images: torch.Tensor) -> torch.Tensor | None:
    """Foreground masks float [N, S, S] (1 = object, 0/1) of images float [N, 3, S, S] in [0, 1] on the CPU, as the
    shipped judge of the built-in model whose class list is `class_set` segments them (loaded once per process);
    None for any other model. What the Guidance Sweep measures divergence against without a connected mask."""
    model = builtin_by_class_set(class_set)
    if model is None:
        return None
    # one memory layout whatever the caller's (channels last: the node's [N, S, S, 3] images as they come): the
    # convolutions' last bits depend on it
    return judge_images(_shipped_judge(model), images.contiguous(memory_format=torch.channels_last))["masks"]


__all__ = ["BuiltinModel", "SHAPES_MODEL", "SCENES_MODEL", "BUILTIN_MODELS", "builtin_by_name", "builtin_by_class_set",
           "judge_masks"]
