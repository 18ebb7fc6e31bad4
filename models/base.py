"""What every scale-wise model of the pack is to the sampler and to ComfyUI: a transformer and its VQ-VAE."""
from __future__ import annotations

import torch
import torch.nn as nn

from .vqvae import VQVAE


class TransformerWithVAE(nn.Module):
    """Shared properties of VARModel and SwittiModel; subclasses add conditioning and the scale step."""

    def __init__(self, transformer: nn.Module, vae: VQVAE):
        super().__init__()
        self.transformer, self.vae = transformer, vae

    @property
    def config(self):
        return self.transformer.config

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return self.config.patch_nums

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def image_size(self) -> int:
        return self.patch_nums[-1] * self.vae.config.downsample

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.head.weight.dtype

    @property
    def weight_device(self) -> torch.device:
        # not `device`: ComfyUI's ModelPatcher assigns that attribute itself
        return self.transformer.head.weight.device

    def memory_estimate(self, batch: int, guided: bool = True) -> int:
        """Bytes a generation needs beyond the weights: KV cache, last-scale logits (with the copies that
        guidance and filtering make) and the VQ-VAE decoder's largest activations."""
        cfg, rows = self.config, batch * (2 if guided else 1)
        itemsize = torch.finfo(self.dtype).bits // 8
        kv = 2 * rows * self.cached_positions() * cfg.width * cfg.depth * itemsize
        logits = 6 * rows * cfg.patch_nums[-1] ** 2 * cfg.vocab_size * 4
        decode = 8 * batch * self.vae.config.ch * self.vae.config.ch_mult[0] * self.image_size ** 2 * itemsize
        return kv + logits + decode

    def cached_positions(self) -> int:
        """Attention keys kept per row during a generation."""
        return self.config.seq_len
