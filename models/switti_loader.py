"""Build Switti / Switti-AR from the official `model.safetensors` (+ optional `config.json`)."""
from __future__ import annotations

import json
import os

import torch

from .checkpoint import (CheckpointError, check_keys, count_indices, expect_kind, materialise, name_claims,
                         read_state_dict, warn_disagreement)
from .vqvae_loader import load_vqvae
from .schedule import SCHEDULES, Schedule
from .switti import SwittiConfig, SwittiModel, SwittiTransformer

MASK_KEY = "attn_bias_for_masking"
BUFFERS = ("lvl_1L", MASK_KEY)


def _resolve(path) -> tuple[str, dict, str]:
    """The weights file, the config.json beside it (or {}) and that config's path: accepts the file or its
    folder."""
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
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object of settings, found {type(config).__name__}")
    return path, config, config_path


def _read(path: str, dtype, mmap: bool) -> tuple[dict, float | None]:
    """State dict (floating tensors in `dtype`) without the big training mask, and the mask's last-row first
    element (AR detection)."""
    try:
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            probe = None
            if MASK_KEY in f.keys():
                sl = f.get_slice(MASK_KEY)
                last = sl.get_shape()[2] - 1
                probe = float(sl[0:1, 0:1, last:last + 1, 0:1].flatten()[0])
    except Exception:  # not a readable safetensors file: the generic reader explains what it is
        sd = read_state_dict(path, dtype, mmap=mmap)
        mask = sd.pop(MASK_KEY, None)
        return sd, None if mask is None else float(mask[0, 0, -1, 0])
    return read_state_dict(path, dtype, mmap=mmap, skip=(MASK_KEY,)), probe


SCALES_TO_RESO = {10: 512, 14: 1024}    # Switti's two trained schedules, told apart by their number of scales


def _patch_nums(path: str, sd: dict, config: dict) -> tuple[int, ...]:
    """The schedule the weights record: the stored lvl_1L, else the number of level embeddings; config.json's
    "reso" only picks among schedules with that number of scales."""
    stored = Schedule.from_levels(sd["lvl_1L"]) if "lvl_1L" in sd else None
    if stored is not None:  # else the lvl_1L check of load_switti_transformer names the file
        return stored.patch_nums
    scales = sd["lvl_embed.weight"].shape[0]
    if "reso" in config and len(SCHEDULES.get(int(config["reso"]), ())) == scales:
        return SCHEDULES[int(config["reso"])]
    if scales not in SCALES_TO_RESO:
        raise CheckpointError(f"{path}: {scales} level embeddings match no trained Switti schedule (10 scales = 512 "
                              "px, 14 = 1024 px) and the file has no lvl_1L buffer to read its own schedule from")
    return SCHEDULES[SCALES_TO_RESO[scales]]


def _autoregressive(path: str, config: dict, config_path: str, mask_probe: float | None) -> bool:
    """Switti-AR or Switti: the stored attention mask decides (block-causal = AR: its last row sees the first
    token); without one, config.json's use_ar, then an explicit name; config and name disagreeing is refused."""
    if mask_probe is not None:
        return mask_probe == 0.0
    claims = name_claims(path)
    if "use_ar" in config:
        said = bool(config["use_ar"])
        if claims.get("ar", said) != said:
            raise CheckpointError(f"{path}: cannot tell Switti from Switti-AR: the file stores no attention mask, "
                                  f"{config_path} says use_ar {str(said).lower()} but the folder/file name "
                                  f"'{claims['sources']['ar']}' says AR; fix or remove the wrong one")
        return said
    if claims.get("ar"):
        return True
    raise CheckpointError(f"{path}: cannot tell Switti from Switti-AR (no attention mask stored, no config.json "
                          "use_ar): put the model's config.json beside it")


def check_switti_records(path: str, config: dict, config_path: str, cfg: SwittiConfig, mask_probe) -> None:
    """The weights' own record wins over config.json and the folder/file name (a config.json left by another
    download, a renamed folder): a CheckpointWarning names the file, what each says and what is used."""
    model = "Switti-AR" if cfg.autoregressive else "Switti (non-AR)"
    reso = cfg.schedule.image_size()  # the official names' resolution: 16 px per token
    stored = {"use_ar": (cfg.autoregressive, f"its stored attention mask is that of {model}"),
              "depth": (cfg.depth, f"it holds {cfg.depth} blocks"),
              "reso": (reso, f"it holds the {reso} px schedule ({len(cfg.patch_nums)} scales)"),
              "use_crop_cond": (cfg.crop_condition, f"it {'holds' if cfg.crop_condition else 'lacks'} the crop "
                                                    "embedding")}
    for key, (value, what) in stored.items():
        if key in config and (bool(config[key]) if isinstance(value, bool) else int(config[key])) != value:
            if key == "use_ar" and mask_probe is None:
                continue  # no mask: config.json decided
            warn_disagreement(f"{path}: {config_path} says {key} {json.dumps(config[key])}, but {what}: using the "
                              f"weights ({key} {json.dumps(value)}; a config.json left by another download?)")
    claims = name_claims(path)
    for key, value, what in (("ar", cfg.autoregressive, model), ("reso", reso, f"the {reso} px schedule")):
        if key in claims and claims[key] != value:
            said = "AR" if key == "ar" else f"{claims[key]} px"
            warn_disagreement(f"{path}: the name '{claims['sources'][key]}' says {said}, but the weights are "
                              f"{what}: using the weights (a renamed file or folder?)")


def infer_switti_config(path: str, sd: dict, config: dict, mask_probe: float | None,
                        config_path: str = "config.json") -> SwittiConfig:
    """The configuration of an official Switti state dict from its tensors and `config.json` (may be {}, read
    from `config_path`). Switti and Switti-AR have the same parameters: the stored attention mask's last row
    decides (0 = block-causal, Switti-AR; -inf = block-diagonal, Switti), else config.json's `use_ar`, else an
    explicit name. Heads = width / 64 (all released models). The weights' own record wins over config.json and
    names (a CheckpointWarning names the file). Raises CheckpointError naming `path` when no source tells the
    variant, config and name disagree without a stored mask, or the layout is not SwiGLU's."""
    width = sd["word_embed.weight"].shape[0]
    autoregressive = _autoregressive(path, config, config_path, mask_probe)
    if "blocks.0.ffn.gate_proj.weight" not in sd:
        raise CheckpointError(f"{path}: only the SwiGLU Switti layout (all released models) is supported")
    cfg = SwittiConfig(
        depth=count_indices(sd, r"blocks\.(\d+)\."),
        width=width,
        heads=width // 64,
        patch_nums=_patch_nums(path, sd, config),
        autoregressive=autoregressive,
        crop_condition="crop_embed.weight" in sd,
        vocab_size=sd["head.weight"].shape[0],
        latent_channels=sd["word_embed.weight"].shape[1],
        context_dim=sd["blocks.0.cross_attn.to_kv.weight"].shape[1],
        pooled_dim=sd["text_pooler.weight"].shape[1],
        rope_theta=float(config.get("rope_theta", 10000)),
        rope_size=float(config.get("rope_size", 128)),
    )
    check_switti_records(path, config, config_path, cfg, mask_probe)
    return cfg


def load_switti_transformer(path, *, device="cpu", dtype=torch.float32, mmap: bool = True) -> SwittiTransformer:
    """Load an official Switti / Switti-AR transformer (`model.safetensors` or its folder, with `config.json`
    beside it when present) in eval mode on `device` in `dtype`. The stored training mask (357 MB at 1024 px) is
    never loaded: one element of it tells the variant. `lvl_1L` is checked against the schedule. Raises
    CheckpointError naming the file for an unreadable, foreign, incomplete or inconsistent file."""
    path, config, config_path = _resolve(path)
    sd, probe = _read(path, dtype, mmap)
    expect_kind(path, sd, "switti")
    try:
        cfg = infer_switti_config(path, sd, config, probe, config_path)
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"{path}: incomplete Switti checkpoint (missing {e})") from None
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{config_path}: a setting has the wrong type ({e})") from None
    levels = sd.pop("lvl_1L", None)
    if levels is not None:
        if not torch.equal(levels.flatten(), cfg.schedule.levels()):
            raise CheckpointError(f"{path}: stored lvl_1L disagrees with the schedule {cfg.patch_nums}")
    with torch.device("meta"):
        model = SwittiTransformer(cfg)
    check_keys(path, model, sd)
    model.levels = cfg.schedule.levels()  # off the meta device
    return materialise(model, sd, device, dtype)


def load_switti(path, vae_path, *, device="cpu", dtype=torch.float32, mmap: bool = True,
                vae_dtype: torch.dtype | None = None) -> SwittiModel:
    """Load an official Switti or Switti-AR `model.safetensors` (or its folder; a `config.json` beside it is
    read when present) and the VQ-VAE-Switti weights. `mmap=False` (ComfyUI's --disable-mmap) reads the files
    instead of mapping them (see `read_state_dict`). `dtype` is the transformer's, `vae_dtype` the VQ-VAE's
    (default: `dtype`). Raises CheckpointError naming the file for a file either loader refuses, or when the
    VQ-VAE's codebook (V x Cvae) does not match what the transformer predicts."""
    transformer = load_switti_transformer(path, device=device, dtype=dtype, mmap=mmap)
    vae_file = _resolve(vae_path)[0] if os.path.isdir(os.fspath(vae_path)) else os.fspath(vae_path)
    vae = load_vqvae(vae_file, device=device, dtype=vae_dtype or dtype, mmap=mmap)
    t, v = transformer.config, vae.config
    if (t.vocab_size, t.latent_channels) != (v.vocab_size, v.z_channels):
        raise CheckpointError(f"{vae_file}: a {v.vocab_size}x{v.z_channels} codebook does not match the Switti "
                              f"model's {t.vocab_size} codes of {t.latent_channels} channels")
    return SwittiModel(transformer, vae)


def switti_official_state_dict(transformer: SwittiTransformer) -> dict:
    """Parameters plus the two buffers the official files carry, in the official layout: `lvl_1L` [1, L] (the
    scale of each position) and the attention mask float32 [1, 1, L, L] (0 = allowed, -inf = masked; block-causal
    for Switti-AR, block-diagonal for Switti)."""
    cfg = transformer.config
    sd = {"pos_start": transformer.pos_start.detach(), "lvl_1L": cfg.schedule.levels()[None],
          MASK_KEY: cfg.schedule.attention_mask(causal=cfg.autoregressive)[None, None]}
    sd.update((k, v.detach()) for k, v in transformer.state_dict().items() if k != "pos_start")
    return sd

