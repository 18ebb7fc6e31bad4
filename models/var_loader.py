"""Build VAR transformers from official checkpoints (`var_d16.pth` ... `var_d36.pth`), inferring every size from
the tensors, and write them back in the official layout."""
from __future__ import annotations

import torch

from .checkpoint import (CheckpointError, check_keys, checkpoint_kind, count_indices, expect_kind, materialise,
                         name_claims, read_state_dict, warn_disagreement)
from .schedule import SCHEDULES, Schedule
from .var import VARConfig, VARModel, VARTransformer
from .vqvae_loader import load_vqvae

VAR_BUFFERS = ("lvl_1L", "attn_bias_for_masking")


def _patch_nums_from(sd: dict) -> tuple[int, ...]:
    seq_len = sd["pos_1LC"].shape[1]
    stored = Schedule.from_levels(sd["lvl_1L"]) if "lvl_1L" in sd else None
    if stored is not None and stored.seq_len == seq_len:
        return stored.patch_nums
    for pns in SCHEDULES.values():
        if Schedule(pns).seq_len == seq_len:
            return pns
    trained = ", ".join(f"{reso} px = {Schedule(pns).seq_len}" for reso, pns in SCHEDULES.items())
    raise CheckpointError(f"sequence length {seq_len} (pos_1LC) matches no trained scale schedule ({trained} "
                          "tokens) and the file has no usable lvl_1L buffer to read its own schedule from")


def infer_var_config(sd: dict) -> VARConfig:
    """The configuration of an official VAR state dict from its tensors: depth, width, heads, shared AdaLN (d36),
    classes, vocabulary, latent channels, MLP ratio, and the scale schedule (read from `lvl_1L`, else the trained
    schedule whose sum of pn^2 equals `pos_1LC`'s length). Raises KeyError/IndexError for a missing tensor and
    CheckpointError when no schedule fits."""
    width = sd["pos_start"].shape[-1]
    return VARConfig(
        depth=count_indices(sd, r"blocks\.(\d+)\."),
        width=width,
        heads=sd["blocks.0.attn.scale_mul_1H11"].shape[1],
        patch_nums=_patch_nums_from(sd),
        shared_adaln="shared_ada_lin.1.weight" in sd,
        num_classes=sd["class_emb.weight"].shape[0] - 1,
        vocab_size=sd["head.weight"].shape[0],
        latent_channels=sd["word_embed.weight"].shape[1],
        mlp_ratio=sd["blocks.0.ffn.fc1.weight"].shape[0] / width,
    )


def var_buffers(cfg: VARConfig) -> dict[str, torch.Tensor]:
    """The persistent buffers the official files carry, recomputed from the configuration: `lvl_1L` int64 [1, L]
    (the scale of each position), `attn_bias_for_masking` float32 [1, 1, L, L] (0 where the key's scale <= the
    query's, else -inf: block-causal) and each block's zero `attn.zero_k_bias` [width]."""
    schedule = cfg.schedule
    out = {"lvl_1L": schedule.levels()[None], "attn_bias_for_masking": schedule.attention_mask(causal=True)[None, None]}
    for i in range(cfg.depth):
        out[f"blocks.{i}.attn.zero_k_bias"] = torch.zeros(cfg.width)
    return out


def var_official_state_dict(transformer: VARTransformer) -> dict[str, torch.Tensor]:
    """State dict in the official file layout (parameters plus the buffers the official files carry)."""
    buffers = var_buffers(transformer.config)
    sd = {}
    for k, v in transformer.state_dict().items():  # buffers where the official order has them
        sd[k] = v.detach()
        if k == "pos_1LC":
            sd.update((name, buffers[name]) for name in VAR_BUFFERS)
        elif k.endswith(".attn.v_bias"):
            name = k.replace(".v_bias", ".zero_k_bias")
            sd[name] = buffers[name]
    return sd


def verify_var_buffers(path, sd, cfg: VARConfig) -> dict:
    """`sd` without the buffers the official files carry (lvl_1L, attn_bias_for_masking, zero attn.zero_k_bias),
    after checking them against `cfg`'s schedule: CheckpointError naming `path` when they disagree."""
    expected = var_buffers(cfg)
    for name in VAR_BUFFERS:
        if name in sd and not torch.equal(sd[name].to(expected[name].dtype), expected[name]):
            raise CheckpointError(f"{path}: stored buffer {name} disagrees with the schedule {cfg.patch_nums} "
                                  "(corrupted or modified file)")
    zero_k = [k for k in sd if k.endswith(".attn.zero_k_bias")]
    if any(sd[k].abs().max() != 0 for k in zero_k):
        raise CheckpointError(f"{path}: attn.zero_k_bias buffers are not zero (corrupted or modified file)")
    return {k: v for k, v in sd.items() if k not in VAR_BUFFERS and k not in zero_k}


def check_var_name(path, cfg: VARConfig) -> None:
    """The weights' own record wins over the file name (`var_d16.pth` holding depth-20 weights, `..._512` holding
    the 256 px schedule): a CheckpointWarning names the file and both values."""
    claims = name_claims(path)
    reso = cfg.schedule.image_size()  # the official names' resolution: 16 px per token
    for key, stored, what in (("depth", cfg.depth, f"{cfg.depth} blocks (width {cfg.width})"),
                              ("reso", reso, f"the {reso} px schedule {cfg.patch_nums}")):
        if key in claims and claims[key] != stored:
            said = f"d{claims[key]}" if key == "depth" else f"{claims[key]} px"
            warn_disagreement(f"{path}: the name '{claims['sources'][key]}' says {said}, but the weights hold "
                              f"{what}: using the weights (a renamed file?)")


def build_var_transformer(cfg: VARConfig, device="cpu") -> VARTransformer:
    """An untrained VARTransformer of `cfg` built on `device` (e.g. "meta": shapes only, no memory)."""
    with torch.device(device):
        return VARTransformer(cfg)


TRAINER_ENTRY = ("trainer", "var_wo_ddp")  # where VAR's and VAR-CLIP's train.py dumps keep the model


def load_var_transformer(path, *, device="cpu", dtype=torch.float32, mmap: bool = True) -> VARTransformer:
    """Load an official VAR transformer (`var_d16.pth` ... `var_d36.pth`, the same tensors as .safetensors, or a
    train.py dump holding the model under ['trainer']['var_wo_ddp']) in eval mode on `device` in `dtype`. The
    buffers the file carries (`lvl_1L`, `attn_bias_for_masking`, zero `attn.zero_k_bias`) are checked against the
    inferred schedule and dropped. Raises CheckpointError naming the file for an unreadable, unsafe, foreign
    (a VAR-CLIP file is named as such), incomplete or inconsistent file."""
    sd = read_state_dict(path, dtype, mmap=mmap, entry=TRAINER_ENTRY)  # cast tensor by tensor: peak = model + one
    if checkpoint_kind(sd) == "var-clip":
        raise CheckpointError(f"{path}: this is a VAR-CLIP text-to-image transformer (cond_proj and noise instead "
                              "of class_emb), not a class-conditional VAR: load it as VAR-CLIP (load_var_clip; the "
                              "Load VAR Model node takes both) and condition it with VAR-CLIP Text Encode")
    expect_kind(path, sd, "var")
    return var_transformer_from(path, sd, device=device, dtype=dtype)


def var_transformer_from(path, sd: dict, *, device="cpu", dtype=torch.float32) -> VARTransformer:
    """A VARTransformer from the VAR tensors `sd` read from `path` (named in errors), checked as in
    `load_var_transformer`."""
    return transformer_from(path, sd, "VAR", infer_var_config, build_var_transformer, device=device, dtype=dtype)


def transformer_from(path, sd: dict, family: str, infer, build, *, device="cpu", dtype=torch.float32):
    """The transformer `build(infer(sd), "meta")` of a VAR-layout family (VAR, VAR-CLIP) materialised from `sd`:
    sizes inferred from the tensors, stored buffers checked against the schedule and dropped, keys checked. Raises
    CheckpointError naming `path` (and `family` for missing tensors)."""
    try:
        cfg = infer(sd)
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"{path}: incomplete {family} checkpoint (missing {e})") from None
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    sd = verify_var_buffers(path, sd, cfg)
    check_var_name(path, cfg)
    model = build(cfg, "meta")
    check_keys(path, model, sd)
    # `levels` is a non-persistent buffer; recreate it on the CPU before moving everything.
    model.levels = cfg.schedule.levels()
    return materialise(model, sd, device, dtype)


def load_var(var_path, vae_path, *, device="cpu", dtype=torch.float32, mmap: bool = True,
             vae_dtype: torch.dtype | None = None, class_names: tuple[str, ...] | None = None,
             class_set: str | None = None) -> VARModel:
    """Load an official VAR transformer and its VQ-VAE (`vae_ch160v4096z32.pth`) as one model. `mmap=False`
    (ComfyUI's --disable-mmap) reads the files instead of mapping them (see `read_state_dict`). `dtype` is the
    transformer's (float32, float16 or bfloat16), `vae_dtype` the VQ-VAE's (default: `dtype`). `class_names` and
    `class_set` name the classes of a model whose ids are not ImageNet's (the built-in models'; `VARModel`). Raises
    CheckpointError naming the file for a file either loader refuses, or when the VQ-VAE's codebook (V x Cvae)
    does not match what the transformer predicts."""
    transformer = load_var_transformer(var_path, device=device, dtype=dtype, mmap=mmap)
    model = pair_var_with_vqvae(transformer, var_path, vae_path, device=device, dtype=vae_dtype or dtype, mmap=mmap)
    if class_names is not None or class_set is not None:
        model.class_names, model.class_set = class_names, class_set
    return model


def pair_var_with_vqvae(transformer, var_path, vae_path, *, device, dtype, mmap: bool, model_class=VARModel):
    """`model_class(transformer, VQ-VAE of vae_path)` (VARModel, or VARCLIPModel for VAR-CLIP's transformer), the
    VQ-VAE loaded on `device` in `dtype`; CheckpointError when its codebook (V x Cvae) does not match what the
    transformer predicts."""
    vae = load_vqvae(vae_path, device=device, dtype=dtype, mmap=mmap)
    t, v = transformer.config, vae.config
    if (t.vocab_size, t.latent_channels) != (v.vocab_size, v.z_channels):
        raise CheckpointError(
            f"{vae_path}: this VQ-VAE has a {v.vocab_size}x{v.z_channels} codebook but {var_path} predicts "
            f"{t.vocab_size} codes of {t.latent_channels} channels; pick the VQ-VAE trained with this transformer")
    return model_class(transformer, vae)
