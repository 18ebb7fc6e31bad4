"""Training specification of the built-in scenes-128 model, for the functions of tools/shapes/train.py.

VQ-VAE: the official layout at base width 32 (ch_mult 2-1-2-2-4: 16 px per token, 128 px -> 8x8) with one residual
block per encoder level (two per decoder level) to fit a CPU budget, 512 codes of 32 dims, warm-started from the tiny
model's VQ-VAE wherever a tensor has the same name and shape. The full-resolution level is 64 wide because the
decoder's last GroupNorm(32) at width 32 has one channel per group: it normalises each output feature map per image,
so the absolute colour of a flat region cannot pass (the first scenes VQ-VAE, 1-1-2-2-4, lost most of red).
VAR: depth 4, width 256, 4 heads, scales 1-2-3-4-5-6-8.
"""
from __future__ import annotations

import torch
from safetensors.torch import load_file

from scalewise.models.scenes import CLASS_NAMES, PATCH_NUMS, RESOLUTION
from scalewise.models.shapes import VAE_FILE as TINY_VAE_FILE
from scalewise.models.var import VARConfig
from scalewise.models.vqvae import VQVAE, VQVAEConfig
from scalewise.tools.shapes.train import TrainingSpec

from .data import sample

VAE_CONFIG = VQVAEConfig(vocab_size=512, z_channels=32, ch=32, ch_mult=(2, 1, 2, 2, 4), encoder_blocks=1)
VAR_CONFIG = VARConfig(depth=4, width=256, heads=4, patch_nums=PATCH_NUMS, num_classes=len(CLASS_NAMES),
                       vocab_size=VAE_CONFIG.vocab_size, latent_channels=VAE_CONFIG.z_channels)
SCENES_SPEC = TrainingSpec("scenes-128", RESOLUTION, PATCH_NUMS, CLASS_NAMES, CLASS_NAMES, sample, VAE_CONFIG,
                           VAR_CONFIG, autocast_bf16=True)
POOL_SEED = 50_000  # the judge's pre-rendered training pool


def warm_start_from_tiny(vae: VQVAE, path: str = TINY_VAE_FILE) -> VQVAE:
    """Copy every tensor of the tiny model's VQ-VAE file whose name and shape match into `vae` (in place; returns
    it): the convolutions of the blocks both have, the codebook and the phi convolutions. Blocks the tiny model
    has and this one lacks are dropped; the rest keeps its initialisation."""
    tiny = load_file(path)
    own = vae.state_dict()
    copied = {k: v.float() for k, v in tiny.items() if k in own and own[k].shape == v.shape}
    vae.load_state_dict(copied, strict=False)
    return vae


def dihedral(images: torch.Tensor, masks: torch.Tensor, k: int):
    """One of the 8 symmetries of the square (k in 0..7: k % 4 quarter turns, then a left-right flip when k >= 4) on
    images [N, 3, S, S] and masks [N, S, S]; the classes are closed under them (shapes are drawn at random
    rotations, and every class outline is mirror-symmetric)."""
    images, masks = torch.rot90(images, k % 4, (-2, -1)), torch.rot90(masks, k % 4, (-2, -1))
    if k >= 4:
        images, masks = images.flip(-1), masks.flip(-1)
    return images, masks


class Pool:
    """A pre-rendered set of scenes served in random batches under random dihedral symmetries (rendering is the
    judge training's bottleneck: ~60 scenes/s on one core). `batch(step, count)` -> (images float32 [count, 3, S,
    S], masks bool [count, S, S], labels int64 [count]), seeded by the pool seed and `step`."""

    def __init__(self, count: int, seed: int = POOL_SEED):
        images, masks, labels = sample(count, seed)
        self.images, self.masks, self.labels = map(torch.from_numpy, (images, masks, labels))
        self.seed = seed

    def batch(self, step: int, count: int):
        """Batch `count` of training step `step` (see the class)."""
        gen = torch.Generator().manual_seed(self.seed + step)
        pick = torch.randint(len(self.labels), (count,), generator=gen)
        images, masks = dihedral(self.images[pick], self.masks[pick], int(torch.randint(8, (1,), generator=gen)))
        return images, masks, self.labels[pick]


__all__ = ["VAE_CONFIG", "VAR_CONFIG", "SCENES_SPEC", "POOL_SEED", "warm_start_from_tiny", "dihedral", "Pool"]
