"""Infinity's memory per model, image size and batch, computed from the shapes (issue 27.7): the weights (counted
from the official-size classes built on the meta device), the KV cache of a generation with and without the
unconditional rows, and the BSQ decoder's activations (models/infinity.py `generation_bytes`, the estimate the
sampler node hands ComfyUI). No weights are read or written; nothing runs on a device.

    python tools/infinity_memory.py [--dtype bf16] [--batch 1 2 4]

The peak on the GPU is weights + max(sampling, decoding) with previews off (the sampler frees the KV cache before it
decodes), plus one image's decode with the sampler's previews on (the last preview decodes the first image at full
size beside the cache). The
text encoder (flan-t5-xl, 2.4 GB in fp16) is off the GPU while sampling (ComfyUI unloads it for the sampler).
Two ways below the full peak (Load Infinity Model, README "Infinity"): the depth blocks' linear weights
(`InfinityTransformer.cast_layers`) stored in fp8 (1 byte each), or left on the CPU by ComfyUI's partial loading and
cast per use: then the least the GPU needs is the other weights + ComfyUI's offload buffer (the largest block layer
x (NUM_STREAMS + 1) = 3 on NVIDIA, model_patcher.py `load`) + the generation; every byte of GPU memory beyond that
keeps more block weights there (fewer copies per scale).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (the repository as the package `scalewise`)

from scalewise.models.bsq_vae import BSQVAE, BSQVAEConfig  # noqa: E402
from scalewise.models.infinity import InfinityConfig, InfinityTransformer, generation_bytes, square_scales  # noqa: E402

# Official sizes (shared/spec infinity.md §2; FoundationVision/Infinity tools/run_infinity.py)
MODELS = {
    "2B": (dict(width=2048, depth=32, heads=16, block_chunks=8, ffn_hidden=8192, bits=32),
           BSQVAEConfig(ch=128, ch_mult=(1, 2, 4, 4, 4), bits=32, downsample=16), 1),
    # the 8B's 56 bits per token are 2 x 2 patches of the d14 VAE's 8-px grid: 16 px per token as the 2B
    "8B": (dict(width=3584, depth=40, heads=28, block_chunks=8, ffn_hidden=14336, bits=56),
           BSQVAEConfig(ch=128, ch_mult=(1, 2, 4, 4), bits=14, downsample=8), 2),
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
GIB = 2 ** 30


def weights_bytes(module: torch.nn.Module, itemsize: int) -> int:
    return sum(p.numel() for p in module.parameters()) * itemsize


def meta_model(name: str, pn: str = "1M", sizes: dict | None = None, vae_cfg: BSQVAEConfig | None = None):
    """(transformer, vae, patch) of MODELS[name] (or the given `sizes` / `vae_cfg`) at the 1:1 schedule of `pn`,
    built on the meta device (no memory): the shapes the figures are computed from."""
    model_sizes, model_vae, patch = MODELS[name]
    sizes, vae_cfg = sizes or model_sizes, vae_cfg or model_vae
    with torch.device("meta"):
        transformer = InfinityTransformer(InfinityConfig(**{"text_channels": 2048, "text_maxlen": 512, **sizes},
                                                         scales=square_scales(pn)))
        vae = BSQVAE(vae_cfg)
    return transformer, vae, patch


def computed(transformer: InfinityTransformer, vae: BSQVAE, patch: int, batch: int, guided: bool,
             itemsize: int) -> dict[str, int]:
    """Bytes from the shapes for one generation of `batch` images (with the unconditional rows when `guided`),
    weights and activations of `itemsize` bytes: weights (transformer + VAE parameters), blocks (the depth
    blocks' linear weights, `cast_layers`), sampling and decoding (`generation_bytes`), peak = weights +
    max(sampling, decoding) (previews off: the sampler frees the KV cache before it decodes), peak_previews =
    weights + max(sampling + one image's decoding, decoding) (the sampler node's preview decodes the first image,
    at the last scale at full size, while the KV cache is held), fp8_peak and fp8_peak_previews (the block weights
    at 1 byte), least_offload (the other weights + ComfyUI's offload buffer, 3 x the largest block layer, +
    sampling + decoding: what the sampler asks ComfyUI to keep free, `memory_estimate`)."""
    weights = weights_bytes(transformer, itemsize) + weights_bytes(vae, itemsize)
    layers = transformer.cast_layers()
    blocks = sum(m.weight.numel() for m in layers) * itemsize
    sampling, decoding = generation_bytes(transformer.config, vae.config, batch, guided, itemsize, patch)
    need, asked = max(sampling, decoding), sampling + decoding
    previews = max(sampling + decoding // batch, decoding)
    fp8 = weights - blocks + blocks // itemsize
    return {"weights": weights, "blocks": blocks, "sampling": sampling, "decoding": decoding,
            "peak": weights + need, "peak_previews": weights + previews, "fp8_peak": fp8 + need,
            "fp8_peak_previews": fp8 + previews,
            "least_offload": weights - blocks + 3 * max(m.weight.numel() for m in layers) * itemsize + asked}


def table(dtype: torch.dtype, batches) -> list[str]:
    itemsize = torch.finfo(dtype).bits // 8
    rows = ["| model | size | batch | weights (block linears) | KV + logits, CFG (no CFG) | decoder | peak with CFG, "
            "previews off / on | with fp8 blocks, off / on | least with offload |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name in MODELS:
        for pn in ("1M", "0.25M"):
            transformer, vae, patch = meta_model(name, pn)
            side = transformer.config.scales[-1][0] * vae.config.downsample * patch
            for batch in batches:
                guided = computed(transformer, vae, patch, batch, True, itemsize)
                plain = computed(transformer, vae, patch, batch, False, itemsize)
                rows.append(f"| {name} | {side} px | {batch} | {guided['weights'] / GIB:.1f} GiB "
                            f"({guided['blocks'] / GIB:.1f}) | {guided['sampling'] / GIB:.1f} GiB "
                            f"({plain['sampling'] / GIB:.1f}) | {guided['decoding'] / GIB:.1f} GiB | "
                            f"{guided['peak'] / GIB:.1f} / {guided['peak_previews'] / GIB:.1f} GiB | "
                            f"{guided['fp8_peak'] / GIB:.1f} / {guided['fp8_peak_previews'] / GIB:.1f} GiB | "
                            f"{guided['least_offload'] / GIB:.1f} GiB |")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    print(f"Infinity memory from the shapes, weights and activations in {args.dtype}:")
    print("\n".join(table(DTYPES[args.dtype], args.batch)))


if __name__ == "__main__":
    main()
