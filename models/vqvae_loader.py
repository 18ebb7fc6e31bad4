"""Build the multi-scale VQ-VAE (VAR's `vae_ch160v4096z32.pth`, VQVAE-Switti) from its official checkpoint,
inferring every size from the tensors, and write it back in the official layout."""
from __future__ import annotations

import torch

from .checkpoint import (CheckpointError, check_keys, count_indices, expect_kind, materialise, name_claims,
                         read_state_dict, warn_disagreement)
from .vqvae import VQVAE, VQVAEConfig

VQVAE_BUFFERS = ("quantize.ema_vocab_hit_SV",)


def infer_vqvae_config(sd: dict) -> VQVAEConfig:
    """The configuration of a VQ-VAE state dict from its tensors: codebook [V, Cvae], base width `ch`, the width
    multiplier of every encoder level and the residual blocks per level. Raises KeyError/IndexError when a
    tensor it reads is missing (the loader turns that into a CheckpointError)."""
    ch = sd["encoder.conv_in.weight"].shape[0]
    levels = count_indices(sd, r"encoder\.down\.(\d+)\.")
    mult = tuple(sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in range(levels))
    return VQVAEConfig(
        vocab_size=sd["quantize.embedding.weight"].shape[0],
        z_channels=sd["quantize.embedding.weight"].shape[1],
        ch=ch,
        ch_mult=mult,
        encoder_blocks=count_indices(sd, r"encoder\.down\.0\.block\.(\d+)\."),
    )


def vqvae_official_state_dict(vae: VQVAE, num_scales: int = 10) -> dict[str, torch.Tensor]:
    """State dict in the official file layout (`vae_ch160v4096z32.pth`): the parameters plus the training
    statistic `quantize.ema_vocab_hit_SV` (zeros [num_scales, V]), which the official file carries and the loader
    ignores."""
    sd = {k: v.detach() for k, v in vae.state_dict().items()}
    sd["quantize.ema_vocab_hit_SV"] = torch.zeros(num_scales, vae.config.vocab_size)
    return sd


def build_vqvae(cfg: VQVAEConfig, device="cpu") -> VQVAE:
    """An untrained VQVAE of `cfg` built on `device` (e.g. "meta": shapes only, no memory)."""
    with torch.device(device):
        return VQVAE(cfg)


def load_vqvae(path, *, device="cpu", dtype=torch.float32, mmap: bool = True) -> VQVAE:
    """Load the multi-scale VQ-VAE (VAR's `vae_ch160v4096z32.pth` or VQVAE-Switti's `model.safetensors`; sizes
    inferred from the tensors) in eval mode on `device` in `dtype`. Raises CheckpointError naming the file for an
    unreadable, unsafe, foreign or incomplete file."""
    sd = read_state_dict(path, dtype, mmap=mmap, skip=VQVAE_BUFFERS)  # a training statistic, any row count
    expect_kind(path, sd, "vqvae")
    try:
        cfg = infer_vqvae_config(sd)
    except (KeyError, IndexError, ZeroDivisionError) as e:
        raise CheckpointError(f"{path}: incomplete VQ-VAE checkpoint (missing {e})") from None
    claims = name_claims(path)
    if "ch" in claims and (claims["ch"], claims["vocab"], claims["z"]) != (cfg.ch, cfg.vocab_size, cfg.z_channels):
        warn_disagreement(f"{path}: the name '{claims['sources']['ch']}' says ch{claims['ch']}v{claims['vocab']}"
                          f"z{claims['z']}, but the weights hold ch{cfg.ch}v{cfg.vocab_size}z{cfg.z_channels}: "
                          "using the weights (a renamed file?)")
    model = build_vqvae(cfg, "meta")
    check_keys(path, model, sd)
    return materialise(model, sd, device, dtype)
