"""Tiny random models with the official layouts, and checkpoint writers, for the tests. The random-weight builders
live in tools/tiny_weights.py (shared with the benchmarks) and are re-exported here under their usual names."""
from __future__ import annotations

import torch
from safetensors.torch import save_file

from scalewise.guidance import Guider, GuiderRuntime
from scalewise.models import SCHEDULES, var_official_state_dict, vqvae_official_state_dict
from scalewise.models.var import VARModel
from scalewise.tools.tiny_weights import (TINY_PN, random_switti, random_text, random_var, random_vqvae,
                                          switti_config, tiny_model, tiny_switti, var_config)

__all__ = ["SCHEDULES", "TINY_PN", "LogitRecorder", "random_switti", "random_text", "random_var", "random_vqvae",
           "save", "switti_config", "text_vectors", "tiny_model", "tiny_switti", "tiny_var_clip", "var_clip_config",
           "var_config", "write_var_files"]


class LogitRecorder(Guider):
    """A do-nothing guider that keeps each scale's conditional logits (for equivalence tests)."""

    kind, base = "recorder", None

    def __init__(self):
        self.logits = []

    def runtime(self, info):
        logits = self.logits

        class Runtime(GuiderRuntime):
            def observe(self, record):
                logits.append(record.cond.clone())
        return Runtime()


def var_clip_config(depth=2, heads=2, patch_nums=SCHEDULES[256], text_width=768):
    from scalewise.models import VARCLIPConfig
    return VARCLIPConfig(depth=depth, width=64 * heads, heads=heads, patch_nums=tuple(patch_nums),
                         text_width=text_width)


def tiny_var_clip(patch_nums=TINY_PN, depth=2, heads=2, text_width=768, seed=0):
    """A random VAR-CLIP model (VAR's random weights, see random_var; noise and cond_proj random too) with the tiny
    VQ-VAE of `seed`."""
    from scalewise.models import VARCLIPModel, VARCLIPTransformer
    from scalewise.tools.tiny_weights import redraw, var_init
    cfg = var_clip_config(depth, heads, patch_nums, text_width)
    return VARCLIPModel(redraw(VARCLIPTransformer(cfg), var_init, seed), random_vqvae(seed))


def text_vectors(batch, width=768, seed=0) -> torch.Tensor:
    """Random unit vectors float32 [batch, width]: stand-ins for CLIP's pooled, L2-normalised text vectors."""
    v = torch.randn(batch, width, generator=torch.Generator().manual_seed(seed))
    return v / v.norm(dim=-1, keepdim=True)


def save(sd: dict, path) -> str:
    path = str(path)
    if path.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
    else:
        torch.save(sd, path)
    return path


def write_var_files(model: VARModel, folder, ext=".pth") -> tuple[str, str]:
    var_path = save(var_official_state_dict(model.transformer), f"{folder}/var{ext}")
    vae_path = save(vqvae_official_state_dict(model.vae), f"{folder}/vae{ext}")
    return var_path, vae_path
