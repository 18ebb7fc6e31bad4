"""Build VAR-CLIP transformers from the released training dump (`ar-ckpt-last.pth`: the model under
['trainer']['var_wo_ddp']), from the model's state dict alone (.pth) or from .safetensors of it, and write the model
alone back in the official layout (tools/convert_var_clip.py)."""
from __future__ import annotations

import torch

from .checkpoint import CheckpointError, checkpoint_kind, expect_kind, read_state_dict
from .var_clip import VARCLIPConfig, VARCLIPModel, VARCLIPTransformer
from .var import VARModel
from .var_loader import (TRAINER_ENTRY, infer_var_config, pair_var_with_vqvae, transformer_from,
                         var_official_state_dict, var_transformer_from)


def infer_var_clip_config(sd: dict) -> VARCLIPConfig:
    """The configuration of a VAR-CLIP state dict from its tensors: VAR's sizes (`infer_var_config`, without
    classes) and the text width D from `cond_proj.weight` [C, D] (768 for the released model). Raises
    KeyError/IndexError for a missing tensor, CheckpointError when no schedule fits or noise and cond_proj
    disagree."""
    var_sd = {k: v for k, v in sd.items() if k not in ("noise.weight", "cond_proj.weight", "cond_proj.bias")}
    var_sd["class_emb.weight"] = torch.empty(1, 0, device="meta")  # infer_var_config reads only its row count
    base = infer_var_config(var_sd)
    width = sd["cond_proj.weight"].shape[1]
    if tuple(sd["noise.weight"].shape) != (1, width):
        raise CheckpointError(f"noise.weight is {tuple(sd['noise.weight'].shape)} but cond_proj takes {width}-wide "
                              f"text vectors: expected [1, {width}]")
    fields = {f: getattr(base, f) for f in ("depth", "width", "heads", "patch_nums", "shared_adaln", "vocab_size",
                                             "latent_channels", "mlp_ratio")}
    return VARCLIPConfig(**fields, num_classes=0, text_width=width)


def build_var_clip_transformer(cfg: VARCLIPConfig, device="cpu") -> VARCLIPTransformer:
    """An untrained VARCLIPTransformer of `cfg` built on `device` (e.g. "meta": shapes only, no memory)."""
    with torch.device(device):
        return VARCLIPTransformer(cfg)


def var_clip_official_state_dict(transformer: VARCLIPTransformer) -> dict[str, torch.Tensor]:
    """The model's state dict in the official layout (`VAR.state_dict()` of VAR-CLIP: parameters plus the buffers
    lvl_1L, attn_bias_for_masking and each block's zero attn.zero_k_bias), as ['trainer']['var_wo_ddp'] holds it."""
    return var_official_state_dict(transformer)


def read_var_clip_state_dict(path, dtype: torch.dtype | None = None, *, mmap: bool = True) -> dict:
    """The VAR-CLIP model's tensors of `path` (the training dump's ['trainer']['var_wo_ddp'], or a flat state dict /
    .safetensors), on the CPU, floating tensors in `dtype` (None: as stored). The dump's optimizer state, VQ-VAE
    copy and arguments are never read into memory (`read_state_dict` with `entry`). Raises CheckpointError
    naming the file for an unreadable or unsafe file and for one that holds another model (a VAR file: use
    load_var)."""
    sd = read_state_dict(path, dtype, mmap=mmap, entry=TRAINER_ENTRY)
    if checkpoint_kind(sd) == "var":
        raise CheckpointError(f"{path}: this is a class-conditional VAR transformer (it has class_emb, no cond_proj), "
                              "not VAR-CLIP: load it as a VAR model (load_var; the Load VAR Model node takes both)")
    expect_kind(path, sd, "var-clip")
    return sd


def load_var_clip_transformer(path, *, device="cpu", dtype=torch.float32, mmap: bool = True) -> VARCLIPTransformer:
    """Load a VAR-CLIP transformer (see `read_var_clip_state_dict` for the files) in eval mode on `device` in
    `dtype`. The stored buffers (lvl_1L, attn_bias_for_masking, zero attn.zero_k_bias) are checked against the
    inferred schedule and dropped. Raises CheckpointError naming the file for an unreadable, unsafe, foreign,
    incomplete or inconsistent file."""
    sd = read_var_clip_state_dict(path, dtype, mmap=mmap)
    return var_clip_transformer_from(path, sd, device=device, dtype=dtype)


def var_clip_transformer_from(path, sd: dict, *, device="cpu", dtype=torch.float32) -> VARCLIPTransformer:
    """A VARCLIPTransformer from the tensors `sd` read from `path` (named in errors), checked as in
    `load_var_clip_transformer`."""
    return transformer_from(path, sd, "VAR-CLIP", infer_var_clip_config, build_var_clip_transformer, device=device,
                            dtype=dtype)


def load_var_clip(var_path, vae_path, *, device="cpu", dtype=torch.float32, mmap: bool = True,
                  vae_dtype: torch.dtype | None = None) -> VARCLIPModel:
    """Load a VAR-CLIP transformer (the released `ar-ckpt-last.pth`, the model alone, or .safetensors of it) and
    VAR's VQ-VAE (`vae_ch160v4096z32.pth`) as one model; `dtype`, `vae_dtype` and `mmap` as in `load_var`. Raises
    CheckpointError naming the file for a file either loader refuses (a VAR file given here is named as such), or
    when the VQ-VAE's codebook (V x Cvae) does not match what the transformer predicts."""
    transformer = load_var_clip_transformer(var_path, device=device, dtype=dtype, mmap=mmap)
    return pair_var_with_vqvae(transformer, var_path, vae_path, device=device, dtype=vae_dtype or dtype, mmap=mmap,
                               model_class=VARCLIPModel)


def load_var_or_var_clip(var_path, vae_path, *, device="cpu", dtype=torch.float32, mmap: bool = True,
                         vae_dtype: torch.dtype | None = None) -> VARModel:
    """A VAR model (`load_var`) or a VAR-CLIP model (`load_var_clip`), whichever `var_path` holds (told by its keys:
    class_emb, or noise and cond_proj), with the VQ-VAE of `vae_path`: both families live in models/var and share
    VAR's VQ-VAE. The file is read once. Raises CheckpointError naming the file for one that holds neither."""
    sd = read_state_dict(var_path, dtype, mmap=mmap, entry=TRAINER_ENTRY)
    if checkpoint_kind(sd) == "var-clip":
        transformer = var_clip_transformer_from(var_path, sd, device=device, dtype=dtype)
        return pair_var_with_vqvae(transformer, var_path, vae_path, device=device, dtype=vae_dtype or dtype,
                                   mmap=mmap, model_class=VARCLIPModel)
    expect_kind(var_path, sd, "var")
    transformer = var_transformer_from(var_path, sd, device=device, dtype=dtype)
    return pair_var_with_vqvae(transformer, var_path, vae_path, device=device, dtype=vae_dtype or dtype, mmap=mmap)
