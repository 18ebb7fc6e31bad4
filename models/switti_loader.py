"""Build Switti / Switti-AR from the official `model.safetensors` (+ optional `config.json`)."""
from __future__ import annotations

import json
import os

import torch

from .checkpoint import CheckpointError, check_keys, count_indices, expect_kind, materialise, read_state_dict
from .vqvae_loader import load_vqvae
from .switti import SwittiConfig, SwittiModel, SwittiTransformer
from .var import SCHEDULES

MASK_KEY = "attn_bias_for_masking"
BUFFERS = ("lvl_1L", MASK_KEY)


def _resolve(path) -> tuple[str, dict]:
    """The weights file and the config.json beside it (or {}): accepts the file or its folder."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = [f for f in ("model.safetensors", "model_state_dict.pt") if os.path.isfile(os.path.join(path, f))]
        if not found:
            raise CheckpointError(f"{path}: folder holds no model.safetensors")
        path = os.path.join(path, found[0])
    config_path = os.path.join(os.path.dirname(path), "config.json")
    config = {}
    if os.path.isfile(config_path):
        try:
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
        except ValueError as e:
            raise CheckpointError(f"{config_path}: not valid JSON ({e})") from None
    return path, config


def _read(path: str) -> tuple[dict, float | None]:
    """State dict without the big training mask, and the mask's last-row first element (AR detection)."""
    try:
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            keys = list(f.keys())
            probe = None
            if MASK_KEY in keys:
                sl = f.get_slice(MASK_KEY)
                last = sl.get_shape()[2] - 1
                probe = float(sl[0:1, 0:1, last:last + 1, 0:1].flatten()[0])
            return {k: f.get_tensor(k) for k in keys if k != MASK_KEY}, probe
    except Exception:  # not a readable safetensors file: the generic reader explains what it is
        sd = read_state_dict(path)
        mask = sd.pop(MASK_KEY, None)
        return sd, None if mask is None else float(mask[0, 0, -1, 0])


def _patch_nums(sd: dict, config: dict) -> tuple[int, ...]:
    if "lvl_1L" in sd:
        counts = torch.bincount(sd["lvl_1L"].flatten())
        return tuple(round(float(c) ** 0.5) for c in counts)
    if "reso" in config:
        return SCHEDULES[int(config["reso"])]
    scales = sd["lvl_embed.weight"].shape[0]
    return {10: SCHEDULES[512], 14: SCHEDULES[1024]}[scales]


def infer_switti_config(path: str, sd: dict, config: dict, mask_probe: float | None) -> SwittiConfig:
    """The configuration of an official Switti state dict from its tensors and `config.json` (may be {}).
    Switti and Switti-AR have the same parameters: `use_ar` in config.json decides, else the stored attention
    mask's last row (0 = block-causal, Switti-AR; -inf = block-diagonal, Switti). Heads = width / 64 (all released
    models). Raises CheckpointError naming `path` when neither source tells the variant or the layout is not
    SwiGLU's."""
    width = sd["word_embed.weight"].shape[0]
    if "use_ar" in config:
        autoregressive = bool(config["use_ar"])
    elif mask_probe is not None:
        autoregressive = mask_probe == 0.0  # block-causal mask (AR) vs block-diagonal (non-AR)
    else:
        raise CheckpointError(f"{path}: cannot tell Switti from Switti-AR: put the model's config.json beside it")
    if "blocks.0.ffn.gate_proj.weight" not in sd:
        raise CheckpointError(f"{path}: only the SwiGLU Switti layout (all released models) is supported")
    return SwittiConfig(
        depth=count_indices(sd, r"blocks\.(\d+)\."),
        width=width,
        heads=width // 64,
        patch_nums=_patch_nums(sd, config),
        autoregressive=autoregressive,
        crop_condition="crop_embed.weight" in sd,
        vocab_size=sd["head.weight"].shape[0],
        latent_channels=sd["word_embed.weight"].shape[1],
        context_dim=sd["blocks.0.cross_attn.to_kv.weight"].shape[1],
        pooled_dim=sd["text_pooler.weight"].shape[1],
        rope_theta=float(config.get("rope_theta", 10000)),
        rope_size=float(config.get("rope_size", 128)),
    )


def load_switti_transformer(path, *, device="cpu", dtype=torch.float32) -> SwittiTransformer:
    """Load an official Switti / Switti-AR transformer (`model.safetensors` or its folder, with `config.json`
    beside it when present) in eval mode on `device` in `dtype`. The stored training mask (357 MB at 1024 px) is
    never loaded: one element of it tells the variant. `lvl_1L` is checked against the schedule. Raises
    CheckpointError naming the file for an unreadable, foreign, incomplete or inconsistent file."""
    path, config = _resolve(path)
    sd, probe = _read(path)
    expect_kind(path, sd, "switti")
    try:
        cfg = infer_switti_config(path, sd, config, probe)
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"{path}: incomplete Switti checkpoint (missing {e})") from None
    levels = sd.pop("lvl_1L", None)
    if levels is not None:
        expected = torch.cat([torch.full((p * p,), k) for k, p in enumerate(cfg.patch_nums)])
        if not torch.equal(levels.flatten(), expected):
            raise CheckpointError(f"{path}: stored lvl_1L disagrees with the schedule {cfg.patch_nums}")
    with torch.device("meta"):
        model = SwittiTransformer(cfg)
    check_keys(path, model, sd)
    model.levels = torch.cat([torch.full((p * p,), k) for k, p in enumerate(cfg.patch_nums)])  # off the meta device
    return materialise(model, sd, device, dtype)


def load_switti(path, vae_path, *, device="cpu", dtype=torch.float32) -> SwittiModel:
    """Load an official Switti or Switti-AR `model.safetensors` (or its folder; a `config.json` beside it is
    read when present) and the VQ-VAE-Switti weights."""
    transformer = load_switti_transformer(path, device=device, dtype=dtype)
    vae_file, _ = _resolve(vae_path) if os.path.isdir(os.fspath(vae_path)) else (os.fspath(vae_path), None)
    vae = load_vqvae(vae_file, device=device, dtype=dtype)
    t, v = transformer.config, vae.config
    if (t.vocab_size, t.latent_channels) != (v.vocab_size, v.z_channels):
        raise CheckpointError(f"{vae_file}: a {v.vocab_size}x{v.z_channels} codebook does not match the Switti "
                              f"model's {t.vocab_size} codes of {t.latent_channels} channels")
    return SwittiModel(transformer, vae)


def switti_official_state_dict(transformer: SwittiTransformer) -> dict:
    """Parameters plus the two buffers the official files carry, in the official layout."""
    cfg = transformer.config
    levels = torch.cat([torch.full((p * p,), k) for k, p in enumerate(cfg.patch_nums)])
    allowed = levels[None, :] <= levels[:, None] if cfg.autoregressive else levels[None, :] == levels[:, None]
    sd = {"pos_start": transformer.pos_start.detach(), "lvl_1L": levels[None],
          MASK_KEY: torch.where(allowed, 0.0, float("-inf"))[None, None]}
    sd.update((k, v.detach()) for k, v in transformer.state_dict().items() if k != "pos_start")
    return sd

