"""Loading Infinity transformers and BSQ VAEs from flat state dicts (.pth after the pack's pickle scan, read with
weights_only=True; .safetensors), sizes inferred from the tensors, keys compared strictly (a missing or unexpected key
is refused, never left at its initial value as the official non-strict `Infinity.load_state_dict` does).

Layout: official FoundationVision/Infinity infinity/models/infinity.py and bsq_vae/flux_vqgan.py (see
models/infinity.py, models/bsq_vae.py)."""
from __future__ import annotations

import re

import torch

from .bsq_vae import BSQVAE, BSQVAEConfig
from .checkpoint import CheckpointError, check_keys, materialise, read_state_dict
from .infinity import InfinityConfig, InfinityModel, InfinityTransformer, square_scales

_BLOCK = re.compile(r"^block_chunks\.(\d+)\.module\.(\d+)\.")
_ZERO_BUFFERS = ("zero_k_bias",)


def infer_infinity_config(sd: dict, pn: str = "1M") -> InfinityConfig:
    """InfinityConfig of an official state dict (1:1 schedule of `pn`). Raises CheckpointError (no path) when the
    tensors do not describe an Infinity transformer in the block-chunk layout."""
    try:
        C = sd["pos_start"].shape[-1]
        chunks = {}
        for k in sd:
            m = _BLOCK.match(k)
            if m:
                chunks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
        if not chunks:
            raise KeyError("block_chunks.0.module.0.*")
        per = {len(v) for v in chunks.values()}
        if len(per) != 1 or sorted(chunks) != list(range(len(chunks))):
            raise KeyError("block_chunks.{c}.module.{j}: unequal chunks")
        b0 = "block_chunks.0.module.0."
        bits = sd["word_embed.weight"].shape[1]
        if sd["head.weight"].shape[0] != 2 * bits:
            raise KeyError(f"head.weight has {sd['head.weight'].shape[0]} rows, expected 2 x {bits} (bit labels)")
        return InfinityConfig(
            width=C, depth=len(chunks) * per.pop(), heads=sd[b0 + "sa.scale_mul_1H11"].shape[1],
            block_chunks=len(chunks), ffn_hidden=sd[b0 + "ffn.fc1.weight"].shape[0],
            text_channels=sd["text_norm.weight"].shape[0], text_maxlen=sd["cfg_uncond"].shape[0], bits=bits,
            scales=square_scales(pn), levels=sd["lvl_embed.weight"].shape[0])
    except KeyError as e:
        raise CheckpointError(f"not an Infinity transformer state dict (block_chunks layout): missing {e}") from None


def infer_bsq_vae_config(sd: dict) -> BSQVAEConfig:
    """BSQVAEConfig of an official BSQ VAE state dict. Raises CheckpointError when it is not one."""
    try:
        ch = sd["encoder.conv_in.conv.weight"].shape[0]
        levels = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.down.")})
        mult = tuple(sd[f"encoder.down.{lv}.block.0.conv1.conv.weight"].shape[0] // ch for lv in levels)
        blocks = {int(k.split(".")[4]) for k in sd if k.startswith("encoder.down.0.block.")}
        downs = sum(f"encoder.down.{lv}.downsample.conv.conv.weight" in sd for lv in levels)
        return BSQVAEConfig(ch=ch, ch_mult=mult, num_res_blocks=len(blocks),
                            bits=sd["encoder.conv_out.conv.weight"].shape[0], downsample=2 ** downs)
    except (KeyError, IndexError, ValueError) as e:
        raise CheckpointError(f"not a BSQ VAE state dict: missing {e}") from None


def _check_zero_buffers(path, sd):
    for k, v in sd.items():
        if k.endswith(_ZERO_BUFFERS) and bool(v.float().abs().max() > 0):
            raise CheckpointError(f"{path}: buffer {k} must be zero (the official constant), the file holds other values")


def load_infinity_transformer(path, *, pn: str = "1M", device="cpu", dtype=torch.float32,
                              mmap: bool = True) -> InfinityTransformer:
    """An Infinity transformer from a flat state dict file. Raises CheckpointError naming `path` for a file that is
    not one, or whose keys or shapes differ from the inferred model (counts and first keys named)."""
    sd = read_state_dict(path, dtype, mmap=mmap)
    try:
        cfg = infer_infinity_config(sd, pn)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    with torch.device("meta"):
        model = InfinityTransformer(cfg)
    check_keys(path, model, sd)
    _check_zero_buffers(path, sd)
    return materialise(model, sd, device, dtype)


def load_bsq_vae(path, *, device="cpu", dtype=torch.float32, mmap: bool = True) -> BSQVAE:
    """A BSQ VAE from a flat state dict file (the official .pth nests it under 'vae': not read here yet). Raises
    CheckpointError naming `path` as `load_infinity_transformer`; the lfq mask buffers must be 2^(d-1..0)."""
    sd = read_state_dict(path, None, mmap=mmap)
    try:
        cfg = infer_bsq_vae_config(sd)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    with torch.device("meta"):
        model = BSQVAE(cfg)
    check_keys(path, model, sd)
    expected = 2 ** torch.arange(cfg.bits - 1, -1, -1)
    for k in ("quantizer.lfq.mask", "quantize.lfq.mask"):
        if not torch.equal(sd[k].long(), expected):
            raise CheckpointError(f"{path}: buffer {k} must be 2^(d-1..0) for d = {cfg.bits}")
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}
    return materialise(model, sd, device, dtype)


def load_infinity(transformer_path, vae_path, *, pn: str = "1M", device="cpu", dtype=torch.float32,
                  mmap: bool = True, temperature: float = 1.0) -> InfinityModel:
    """Transformer + VAE as an `InfinityModel`. Raises CheckpointError (see the two loaders) and ValueError when the
    transformer's bits differ from the VAE's."""
    t = load_infinity_transformer(transformer_path, pn=pn, device=device, dtype=dtype, mmap=mmap)
    v = load_bsq_vae(vae_path, device=device, dtype=dtype, mmap=mmap)
    return InfinityModel(t, v, temperature)


__all__ = ["infer_bsq_vae_config", "infer_infinity_config", "load_bsq_vae", "load_infinity",
           "load_infinity_transformer"]
