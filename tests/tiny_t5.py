"""Tiny random T5 v1.1 encoders in flan-t5-xl's layout (models/flan_t5.py), and Hugging Face style downloads of them
(index JSON + shards, the full encoder-decoder), written by hand: no `transformers` needed."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from scalewise.models.flan_t5 import T5EncoderConfig

# The real vocabulary size: ComfyUI's T5 tokenizer gives ids up to 32099.
TINY_T5 = T5EncoderConfig(d_model=64, d_ff=96, num_layers=3, num_heads=4, d_kv=16, vocab_size=32128)
# The test server's: as wide as the tiny Infinity model's text_channels (tools/tiny_weights.py INFINITY_TINY)
SERVER_T5 = T5EncoderConfig(d_model=256, d_ff=96, num_layers=2, num_heads=4, d_kv=16, vocab_size=32128)


def tiny_t5_encoder(seed: int = 0, cfg: T5EncoderConfig = TINY_T5) -> dict[str, torch.Tensor]:
    """Random encoder tensors (float32) of `cfg`, scaled so that activations stay of order 1 through the layers."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in cfg.shapes().items():
        if name.endswith("layer_norm.weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        elif name == "shared.weight" or "relative_attention_bias" in name:
            t = torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        out[name] = t
    return out


def decoder_tensors(cfg: T5EncoderConfig = TINY_T5, seed: int = 1) -> dict[str, torch.Tensor]:
    """Stand-ins for what a full encoder-decoder file holds beside the encoder (decoder block, table copy, lm_head;
    small: they are never read)."""
    g = torch.Generator().manual_seed(seed)
    d, inner = cfg.d_model, cfg.num_heads * cfg.d_kv
    return {"decoder.embed_tokens.weight": torch.randn(16, d, generator=g),
            "decoder.block.0.layer.1.EncDecAttention.q.weight": torch.randn(inner, d, generator=g),
            "decoder.final_layer_norm.weight": torch.ones(d),
            "lm_head.weight": torch.randn(16, d, generator=g)}


def write_download(folder: Path, encoder: dict, fmt: str = "safetensors", tie: bool = False) -> Path:
    """A Hugging Face style download of the full model in `folder`: 3 shards (encoder split over the first two,
    the decoder stand-ins alone in the third) and the index JSON (returned). fmt: "safetensors" or "bin"
    (torch.save shards, as pytorch_model-0000N-of-00003.bin). tie: store the token table also as
    encoder.embed_tokens.weight (as .bin files do)."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(encoder)
    half = len(keys) // 2
    parts = [{k: encoder[k] for k in keys[:half]}, {k: encoder[k] for k in keys[half:]}, decoder_tensors()]
    if tie:
        parts[1]["encoder.embed_tokens.weight"] = encoder["shared.weight"].clone()
    stem, ext = ("model", "safetensors") if fmt == "safetensors" else ("pytorch_model", "bin")
    weight_map = {}
    for i, part in enumerate(parts):
        name = f"{stem}-{i + 1:05d}-of-{len(parts):05d}.{ext}"
        if fmt == "safetensors":
            save_file({k: v.contiguous() for k, v in part.items()}, str(folder / name), metadata={"format": "pt"})
        else:
            torch.save(part, folder / name)
        weight_map.update({k: name for k in part})
    index = folder / f"{stem}.{ext}.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": TINY_T5.d_model}))
    return index
