"""Tiny random models with the official layouts, and checkpoint writers, for the tests."""
from __future__ import annotations

import math

import torch
from safetensors.torch import save_file

from scalewise.guidance import Guider, GuiderRuntime
from scalewise.models import (SCHEDULES, VARConfig, VARTransformer, VQVAE, VQVAEConfig, var_official_state_dict,
                              vqvae_official_state_dict)
from scalewise.models.var import VARModel

TINY_PN = (1, 2, 3, 4)


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
        return Runtime()  # a 64 px schedule: fast, and still exercises every code path


def var_config(depth=2, heads=2, patch_nums=SCHEDULES[256], shared_adaln=False, num_classes=1000):
    return VARConfig(depth=depth, width=64 * heads, heads=heads, patch_nums=tuple(patch_nums),
                     shared_adaln=shared_adaln, num_classes=num_classes)


def random_var(cfg: VARConfig, seed=0, transformer_class=VARTransformer) -> VARTransformer:
    """Random weights with O(1) modulation and logits of std ~3, so greedy decoding and guidance
    produce varied tokens (the reference init would give near-identity blocks and tiny logits).
    transformer_class: VARTransformer, or VARCLIPTransformer for a VAR-CLIP config."""
    gen = torch.Generator().manual_seed(seed)
    model = transformer_class(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p.shape[-1] if p.dim() > 1 else 1
            if name.endswith("scale_mul_1H11"):
                p.copy_(math.log(4.0) + 0.5 * torch.randn(p.shape, generator=gen))
            elif name.startswith("head.") and p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 3 / math.sqrt(fan_in))
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        for name, p in model.named_parameters():  # AdaLN outputs ~0.5 rather than ~1
            if "ada_lin" in name or "ada_gss" in name:
                p.mul_(0.5)
    return model.eval().requires_grad_(False)


def random_vqvae(seed=0, ch=32, ch_mult=(1, 1, 2, 2, 4)) -> VQVAE:
    torch.manual_seed(seed)
    vae = VQVAE(VQVAEConfig(ch=ch, ch_mult=tuple(ch_mult)))
    with torch.no_grad():
        vae.quantize.embedding.weight.normal_()
    return vae.eval().requires_grad_(False)


def tiny_model(patch_nums=TINY_PN, depth=2, heads=2, shared_adaln=False, seed=0) -> VARModel:
    return VARModel(random_var(var_config(depth, heads, patch_nums, shared_adaln), seed), random_vqvae(seed))


def var_clip_config(depth=2, heads=2, patch_nums=SCHEDULES[256], text_width=768):
    from scalewise.models import VARCLIPConfig
    return VARCLIPConfig(depth=depth, width=64 * heads, heads=heads, patch_nums=tuple(patch_nums),
                         text_width=text_width)


def tiny_var_clip(patch_nums=TINY_PN, depth=2, heads=2, text_width=768, seed=0):
    """A random VAR-CLIP model (VAR's random weights, see random_var; noise and cond_proj random too) with the tiny
    VQ-VAE of `seed`."""
    from scalewise.models import VARCLIPModel, VARCLIPTransformer
    cfg = var_clip_config(depth, heads, patch_nums, text_width)
    return VARCLIPModel(random_var(cfg, seed, VARCLIPTransformer), random_vqvae(seed))


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


def switti_config(depth=2, heads=2, patch_nums=TINY_PN, autoregressive=False):
    from scalewise.models import SwittiConfig
    return SwittiConfig(depth=depth, width=64 * heads, heads=heads, patch_nums=tuple(patch_nums),
                        autoregressive=autoregressive)


def random_switti(cfg, seed=0):
    """Random Switti weights with O(1) modulation and logits of std ~3 (see random_var)."""
    from scalewise.models import SwittiTransformer
    gen = torch.Generator().manual_seed(seed)
    model = SwittiTransformer(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p.shape[-1] if p.dim() > 1 else 1
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("y_norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.startswith("head.") and p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 3 / math.sqrt(fan_in))
            elif name == "crop_embed.weight":
                p.copy_(torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        for name, p in model.named_parameters():
            if "ada_lin" in name or "crop_cond_scales" in name:
                p.mul_(0.5)
    return model.eval().requires_grad_(False)


def tiny_switti(patch_nums=TINY_PN, autoregressive=False, seed=0):
    from scalewise.models import SwittiModel
    return SwittiModel(random_switti(switti_config(patch_nums=patch_nums, autoregressive=autoregressive), seed),
                       random_vqvae(seed))


def random_text(batch=2, tokens=77, seed=0, valid=(5, 9)):
    """Random CLIP-like conditioning: states [B, T, 2048], pooled [B, 1280], a padding mask, and an
    'empty prompt' negative of batch 1 with 2 valid tokens."""
    from scalewise.models import TextCondition
    gen = torch.Generator().manual_seed(seed)

    def make(b, lengths):
        mask = torch.arange(tokens)[None] < torch.tensor(lengths)[:, None]
        return TextCondition(torch.randn(b, tokens, 2048, generator=gen), torch.randn(b, 1280, generator=gen), mask)

    cond = make(batch, [valid[i % len(valid)] for i in range(batch)])
    cond.negative = make(1, [2])
    return cond
