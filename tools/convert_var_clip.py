"""Write VAR-CLIP's model alone as .safetensors, from the released training dump (or a .pth of the model).

The released `ar-ckpt-last.pth` holds the model under ['trainer']['var_wo_ddp'] beside a whole VQ-VAE copy and the
optimizer state (about three times the model). This reads it the way the pack does (the pickle checked first, then
torch.load with weights_only=True, memory-mapped: the rest of the dump is never read into memory), checks the model
against the VAR-CLIP layout, and writes its tensors (buffers included, as the official state dict has them) in
float32 unless --dtype says otherwise. The Load VAR Model node reads the result like the dump.

    python tools/convert_var_clip.py ar-ckpt-last.pth ComfyUI/models/var/var_clip_d16.safetensors [--dtype bf16]
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (the repository as the package `scalewise`)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def convert(source: str, target: str, dtype: torch.dtype = torch.float32) -> dict:
    """Read VAR-CLIP's model from `source` and write it to `target` (.safetensors) with floating tensors in
    `dtype`; returns {"tensors": n, "parameters": count, "config": VARCLIPConfig}. Raises CheckpointError (from
    the pack's loader) for a file that is not VAR-CLIP, ValueError for a target that is not .safetensors."""
    from safetensors.torch import save_file
    from scalewise.models.var_clip_loader import (infer_var_clip_config, read_var_clip_state_dict,
                                                  var_clip_transformer_from)

    if not target.endswith(".safetensors"):
        raise ValueError(f"{target}: the target must be a .safetensors file")
    sd = read_var_clip_state_dict(source, dtype)
    var_clip_transformer_from(source, sd, device="meta", dtype=dtype)  # the layout checks, without the memory
    cfg = infer_var_clip_config(sd)
    save_file({k: v.contiguous() for k, v in sd.items()}, target,
              metadata={"format": "pt", "source": "daixiangzi/VAR-CLIP ar-ckpt-last.pth ['trainer']['var_wo_ddp']"})
    parameters = sum(v.numel() for k, v in sd.items() if k not in ("lvl_1L", "attn_bias_for_masking")
                     and not k.endswith("zero_k_bias"))
    return {"tensors": len(sd), "parameters": parameters, "config": cfg}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="ar-ckpt-last.pth (the training dump) or a .pth of the model")
    parser.add_argument("target", help="the .safetensors file to write, e.g. ComfyUI/models/var/var_clip_d16.safetensors")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="floating-point precision (fp32)")
    args = parser.parse_args(argv)
    info = convert(args.source, args.target, DTYPES[args.dtype])
    cfg = info["config"]
    print(f"wrote {args.target}: {info['tensors']} tensors, {info['parameters']:,} parameters (depth {cfg.depth}, "
          f"width {cfg.width}, text width {cfg.text_width}, patch_nums {cfg.patch_nums})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
