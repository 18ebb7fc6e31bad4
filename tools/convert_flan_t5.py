"""Write flan-t5-xl's encoder alone as one fp16 .safetensors file (about 2.4 GB), from the Hugging Face download.

google/flan-t5-xl comes as the full encoder-decoder in shards (model.safetensors.index.json + 2 .safetensors
shards, or pytorch_model.bin.index.json + 2 .bin shards: about 11 GB in fp32); Infinity reads the encoder only.
This reads the download the way Load Infinity Text Encoder does (models/flan_t5.py: shard by shard, only the
encoder's tensors, pickles checked by the pack's scan and read with weights_only=True), checks the T5 layout, and
writes `shared.weight` and `encoder.*` in fp16 unless --dtype says otherwise. The node reads the result like the
download.

    python tools/convert_flan_t5.py path/to/flan-t5-xl ComfyUI/models/text_encoders/flan_t5_xl_encoder_fp16.safetensors
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (the repository as the package `scalewise`)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def convert(source: str, target: str, dtype: torch.dtype = torch.float16) -> dict:
    """Read the T5 encoder of `source` (a download folder, its index JSON, or one file) and write it to `target`
    (.safetensors) with floating tensors in `dtype`; returns {"tensors": n, "parameters": count, "config":
    T5EncoderConfig, "notes": [...]}. Raises CheckpointError (from models/flan_t5.py) for files that are not a T5
    v1.1 encoder or are T5-XXL, ValueError for a target that is not .safetensors or is the source itself."""
    from safetensors.torch import save_file
    from scalewise.models.flan_t5 import infer_t5_config, read_t5_encoder, size_notes

    if not target.endswith(".safetensors"):
        raise ValueError(f"{target}: the target must be a .safetensors file")
    if os.path.exists(source) and os.path.exists(target) and os.path.samefile(source, target):
        raise ValueError(f"{target}: the target is the source file")
    sd = read_t5_encoder(source, dtype)
    cfg = infer_t5_config(source, sd)
    notes = size_notes(source, cfg)
    save_file({k: v.contiguous() for k, v in sorted(sd.items())}, target,
              metadata={"format": "pt", "source": "google/flan-t5-xl, encoder only (shared.weight, encoder.*)"})
    return {"tensors": len(sd), "parameters": sum(v.numel() for v in sd.values()), "config": cfg, "notes": notes}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the flan-t5-xl download folder (or its index .json, or one file)")
    parser.add_argument("target", help="the .safetensors file to write, e.g. "
                                       "ComfyUI/models/text_encoders/flan_t5_xl_encoder_fp16.safetensors")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16", help="floating-point precision (fp16)")
    args = parser.parse_args(argv)
    info = convert(args.source, args.target, DTYPES[args.dtype])
    cfg = info["config"]
    for note in info["notes"]:
        print(f"note: {note}")
    print(f"wrote {args.target}: {info['tensors']} tensors, {info['parameters']:,} parameters (d_model {cfg.d_model}, "
          f"{cfg.num_layers} layers, {cfg.num_heads} heads, d_ff {cfg.d_ff}), {os.path.getsize(args.target):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
