"""flan-t5-xl's encoder files, for Infinity's text path: reading them (one file, encoder-only or the full
encoder-decoder, or the Hugging Face download as it is: an index JSON and its shards), recognising the layout and
the sizes. The network itself is ComfyUI's T5 (comfy/text_encoders/t5.py, built by nodes/infinity_text.py): this
module only deals with files and names, so the converter (tools/convert_flan_t5.py) needs no ComfyUI.

Sizes: google/flan-t5-xl's config.json on the Hugging Face hub (d_model 2048, d_ff 5120, 24 layers, 32 heads of
d_kv 64, feed_forward_proj "gated-gelu" = gelu_new, the tanh GELU, on wi_0 times the linear wi_1, relative attention
with 32 buckets and max distance 128 in the first block only (T5 v1.1 layout; umT5 has one per block), RMS layer norm
eps 1e-6 and a final layer norm, vocab 32128). Infinity reads the encoder's `last_hidden_state` (official
tools/run_infinity.py `load_tokenizer`, `encode_prompt`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .checkpoint import (DESCRIPTIONS, CheckpointError, checkpoint_kind, count_indices,
                         read_sharded_state_dict, read_state_dict)

BUCKETS = 32  # relative_attention_num_buckets (ComfyUI's T5 fixes 32 buckets, max distance 128, as flan-t5 has)
SHARED = "shared.weight"
TIED = "encoder.embed_tokens.weight"  # the same tensor as shared.weight, stored again by .bin files
_BIAS = "encoder.block.{}.layer.0.SelfAttention.relative_attention_bias.weight"


@dataclass(frozen=True)
class T5EncoderConfig:
    """Sizes of a T5 v1.1-style encoder (gated GELU feed-forward, position bias in block 0 only): width d_model,
    feed-forward d_ff, num_layers blocks of num_heads heads of width d_kv, vocab_size rows of `shared`."""

    d_model: int
    d_ff: int
    num_layers: int
    num_heads: int
    d_kv: int
    vocab_size: int

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of the encoder, name -> shape, in the Hugging Face / ComfyUI key layout."""
        inner = self.num_heads * self.d_kv
        out = {SHARED: (self.vocab_size, self.d_model)}
        for i in range(self.num_layers):
            b = f"encoder.block.{i}.layer."
            for name in "qkv":
                out[f"{b}0.SelfAttention.{name}.weight"] = (inner, self.d_model)
            out[f"{b}0.SelfAttention.o.weight"] = (self.d_model, inner)
            if i == 0:
                out[_BIAS.format(0)] = (BUCKETS, self.num_heads)
            out[f"{b}0.layer_norm.weight"] = (self.d_model,)
            out[f"{b}1.DenseReluDense.wi_0.weight"] = (self.d_ff, self.d_model)
            out[f"{b}1.DenseReluDense.wi_1.weight"] = (self.d_ff, self.d_model)
            out[f"{b}1.DenseReluDense.wo.weight"] = (self.d_model, self.d_ff)
            out[f"{b}1.layer_norm.weight"] = (self.d_model,)
        out["encoder.final_layer_norm.weight"] = (self.d_model,)
        return out

    def parameters(self) -> int:
        """Number of weights (1.22 G for flan-t5-xl's encoder: 2.45 GB in fp16)."""
        total = 0
        for shape in self.shapes().values():
            n = 1
            for s in shape:
                n *= s
            total += n
        return total


FLAN_T5_XL = T5EncoderConfig(d_model=2048, d_ff=5120, num_layers=24, num_heads=32, d_kv=64, vocab_size=32128)
T5_XXL_WIDTH = 4096  # SD3's / Flux's t5xxl: the file users most often have in models/text_encoders


def is_encoder_key(key: str) -> bool:
    """The tensors the encoder needs: `shared.weight` (the token table) and `encoder.*` (the decoder, `lm_head`
    and the decoder's copy of the table are left out)."""
    return key == SHARED or key.startswith("encoder.")


def read_t5_encoder(path: str, dtype: torch.dtype | None = None, *, mmap: bool = True) -> dict[str, torch.Tensor]:
    """The encoder tensors (`is_encoder_key`) of a T5 file or Hugging Face download, on the CPU, floating ones in
    `dtype` (None: as stored), under the key names of `T5EncoderConfig.shapes` (a `.bin` file's
    `encoder.embed_tokens.weight` is the token table when `shared.weight` is absent, else dropped).

    path: a .safetensors / PyTorch file (encoder-only or the full model), a `*.index.json`, or a folder holding
    one. A sharded download is read by `checkpoint.read_sharded_state_dict` (shard by shard; pickles checked by
    the pack's scan, then weights_only) with `keep=is_encoder_key`: a shard of decoder tensors only is never
    opened, the others give their encoder tensors only, and pickled ones are memory-mapped whatever `mmap` says,
    so a 9 GB shard holding mostly the decoder never sits in memory. Raises CheckpointError naming the file for
    unreadable files or indexes, missing shards, tensors the index promises but its shard lacks, and files without
    any T5 encoder tensor (saying what they look like)."""
    path = os.fspath(path)
    sharded = os.path.isdir(path) or path.endswith(".index.json")
    if sharded:
        sd = read_sharded_state_dict(path, dtype, mmap=mmap, keep=is_encoder_key)
    else:
        sd = read_state_dict(path, dtype, mmap=mmap, keep=is_encoder_key)
    if TIED in sd:
        tied = sd.pop(TIED)
        sd.setdefault(SHARED, tied)
    if not any(k.startswith("encoder.block.") for k in sd):
        kind = "unknown" if sharded else checkpoint_kind(read_state_dict(path, mmap=True))
        raise CheckpointError(f"{path}: no T5 encoder tensors (encoder.block.*) in this file; it looks like "
                              f"{DESCRIPTIONS[kind]}. Infinity's text encoder is google/flan-t5-xl")
    return sd


def infer_t5_config(path: str, sd: dict) -> T5EncoderConfig:
    """The sizes of the T5 encoder `sd` (from `read_t5_encoder`) and a strict check of every key and shape against
    them. Raises CheckpointError naming `path` for another layout: umT5 (a position bias in every block: AuraFlow's
    pile-T5-XL, Wan's umT5-XXL), T5 v1.0 (an ungated `wi`), ComfyUI's fp8-scaled T5-XXL, a bucket count other
    than 32, missing, unexpected or wrongly shaped tensors."""
    if _BIAS.format(1) in sd:
        raise CheckpointError(f"{path}: a umT5-style encoder (a position bias in every block, as AuraFlow's "
                              "pile-T5-XL or Wan's umT5 have), not flan-t5-xl (one bias, in block 0)")
    if "encoder.block.0.layer.1.DenseReluDense.wi.weight" in sd:
        raise CheckpointError(f"{path}: a T5 v1.0-style encoder (ungated feed-forward `wi`), not flan-t5-xl "
                              "(gated wi_0/wi_1)")
    if any(k.endswith("scale_weight") or k == "scaled_fp8" for k in sd):
        raise CheckpointError(f"{path}: ComfyUI's fp8-scaled T5 (a t5xxl_fp8_*_scaled file for Flux/SD3), not "
                              "flan-t5-xl")
    try:
        bias = sd[_BIAS.format(0)]
        cfg = T5EncoderConfig(
            d_model=sd[SHARED].shape[1], vocab_size=sd[SHARED].shape[0],
            d_ff=sd["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0],
            num_layers=count_indices(sd, r"^encoder\.block\.(\d+)\."), num_heads=bias.shape[1],
            d_kv=sd["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0] // bias.shape[1])
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"{path}: not a T5 v1.1 encoder as flan-t5-xl's: missing {e}") from None
    if bias.shape[0] != BUCKETS:
        raise CheckpointError(f"{path}: {bias.shape[0]} relative-position buckets; flan-t5-xl (and ComfyUI's T5) "
                              f"use {BUCKETS}")
    want = cfg.shapes()
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {want[k]})" for k in want if k in sd and tuple(sd[k].shape) != want[k]]
    if missing or unexpected or wrong:
        parts = [f"{len(v)} {label}: {', '.join(v[:4])}{' ...' if len(v) > 4 else ''}"
                 for label, v in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if v]
        raise CheckpointError(f"{path}: does not match a T5 encoder's layout; " + "; ".join(parts))
    return cfg


def size_notes(path: str, cfg: T5EncoderConfig) -> list[str]:
    """What the user should know about sizes other than flan-t5-xl's (an empty list for flan-t5-xl's). Raises
    CheckpointError naming `path` for T5-XXL (d_model 4096), whose features Infinity cannot read."""
    if cfg == FLAN_T5_XL:
        return []
    if cfg.d_model == T5_XXL_WIDTH:
        raise CheckpointError(f"{path}: T5-XXL (d_model {T5_XXL_WIDTH}, the text encoder of Flux/SD3), not "
                              f"flan-t5-xl (d_model {FLAN_T5_XL.d_model}), which Infinity was trained with")
    diff = ", ".join(f"{k} {getattr(cfg, k)} (flan-t5-xl: {getattr(FLAN_T5_XL, k)})"
                     for k in FLAN_T5_XL.__dataclass_fields__ if getattr(cfg, k) != getattr(FLAN_T5_XL, k))
    return [f"{os.path.basename(path)}: a T5 encoder of other sizes than flan-t5-xl ({diff}); Infinity was "
            "trained on flan-t5-xl's features"]


__all__ = ["BUCKETS", "FLAN_T5_XL", "T5EncoderConfig", "infer_t5_config", "is_encoder_key",
           "read_t5_encoder", "size_notes"]
