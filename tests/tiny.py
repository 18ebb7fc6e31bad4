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
           "save", "switti_config", "tiny_model", "tiny_switti", "var_config", "write_var_files"]


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
