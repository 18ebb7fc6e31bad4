"""Hugging Face style downloads (index JSON + shards, the full encoder-decoder) of the tiny random T5 v1.1 encoders in
flan-t5-xl's layout, written by hand: no `transformers` needed. The random tensors come from tools/tiny_weights.py
(re-exported here under their usual names)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from scalewise.tools.tiny_weights import SERVER_T5, TINY_T5, decoder_tensors, tiny_t5_encoder

__all__ = ["SERVER_T5", "TINY_T5", "decoder_tensors", "tiny_t5_encoder", "write_download"]


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
