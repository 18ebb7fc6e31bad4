"""Host memory while loading Infinity (issue 27.7: the peak must stay within 1.1x the loaded model): the peak growth of
the process while `load_infinity` reads an Infinity transformer at the 2B's width (C 2048, 16 heads, FFN 8192,
flan-t5 text 2048 x 512, 32 bits; 4 blocks instead of 32, since the blocks are alike and the ratio is what counts)
and the full-size 2B BSQ VAE (nested under "vae", as the released infinity_vae_d32reg.pth), per transformer format
(flat .pth, .safetensors, a Hugging Face sharded checkpoint of .safetensors or .bin shards), dtype and mmap setting;
dtype fp8 is Load Infinity Model's fp8_e4m3fn: the block linear weights stored in float8_e4m3fn, the rest in bf16.
Each case runs in a fresh subprocess, measured as tools/benchmark_loading.py measures VAR (VmHWM and a 1 ms sampler).

    python tools/benchmark_infinity_loading.py [--dir DIR] [--keep]     # writes ~5 GB of random files to DIR
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (the repository as the package `scalewise`)
from benchmark_loading import DTYPES, measure_peak, model_bytes, parse_args, run_child, work_folder  # noqa: E402

SIZES = dict(width=2048, depth=4, heads=16, block_chunks=2, ffn_hidden=8192, text_channels=2048, text_maxlen=512,
             bits=32)
SHARDS = 3


def _sharded(sd: dict, folder: Path, ext: str) -> None:
    """A Hugging Face sharded checkpoint of `sd`: SHARDS files of whole tensors and the index JSON."""
    from safetensors.torch import save_file
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(sd)
    prefix, index = ("model", "model.safetensors.index.json") if ext == "safetensors" else \
        ("pytorch_model", "pytorch_model.bin.index.json")
    weight_map = {}
    for i in range(SHARDS):
        part = {k: sd[k].contiguous() for k in keys[i::SHARDS]}
        name = f"{prefix}-{i + 1:05d}-of-{SHARDS:05d}.{ext}"
        save_file(part, str(folder / name)) if ext == "safetensors" else torch.save(part, folder / name)
        weight_map.update({k: name for k in part})
    total = sum(t.numel() * t.element_size() for t in sd.values())
    (folder / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))


def write_files(folder: Path) -> dict[str, Path]:
    """The transformer in every format (keys as the official state dict) and the nested VAE; returns name -> path."""
    from safetensors.torch import save_file

    from scalewise.models.bsq_vae import BSQVAE, BSQVAEConfig
    from scalewise.models.infinity import InfinityConfig, InfinityTransformer, square_scales
    from scalewise.tools.tiny_weights import randomise_infinity

    paths = {"pth": folder / "infinity_w2048.pth", "safetensors": folder / "infinity_w2048.safetensors",
             "sharded safetensors": folder / "sharded_st", "sharded bin": folder / "sharded_bin",
             "vae": folder / "infinity_vae_d32reg.pth"}
    if all(p.exists() for p in paths.values()):
        return paths
    transformer = randomise_infinity(InfinityTransformer(InfinityConfig(**SIZES, scales=square_scales("0.06M"))))
    sd = {k: v.clone() for k, v in transformer.state_dict().items()}
    vae = {k: v.clone() for k, v in randomise_infinity(BSQVAE(BSQVAEConfig()), 1).state_dict().items()}
    torch.save(sd, paths["pth"])
    save_file({k: v.contiguous() for k, v in sd.items()}, str(paths["safetensors"]))
    _sharded(sd, paths["sharded safetensors"], "safetensors")
    _sharded(sd, paths["sharded bin"], "bin")
    torch.save({"vae": vae, "epoch": 1}, paths["vae"])
    return paths


def child(transformer: str, vae: str, dtype: str, mmap: bool) -> dict:
    from scalewise.models.infinity import InfinityConfig, InfinityTransformer, square_scales
    from scalewise.models.infinity_loader import load_infinity

    with torch.device("meta"):  # torch's one-time lazy initialisation, not loading (see benchmark_loading.py)
        InfinityTransformer(InfinityConfig(**{**SIZES, "width": 64, "heads": 1, "ffn_hidden": 64, "depth": 2},
                                           scales=square_scales("0.06M")))
    compute, weight = (torch.bfloat16, torch.float8_e4m3fn) if dtype == "fp8" else (DTYPES[dtype], None)
    model, growth, seconds = measure_peak(lambda: load_infinity(transformer, vae, pn="0.06M", dtype=compute,
                                                                mmap=mmap, weight_dtype=weight))
    return {"model": model_bytes(model), "growth": growth, "seconds": seconds}


def main():
    args = parse_args(__doc__, 4)
    if args.child:
        transformer, vae, dtype, mmap = args.child
        print(json.dumps(child(transformer, vae, dtype, mmap == "1")))
        return
    with work_folder(args, "scalewise_infinity_load_") as folder:
        paths = write_files(folder)
        print("| transformer file | dtype | mmap | model (MB) | peak growth (MB) | growth / model | s |")
        print("|---|---|---|---|---|---|---|")
        for fmt in ("pth", "safetensors", "sharded safetensors", "sharded bin"):
            for dtype in ("fp32", "bf16", "fp8"):
                for mmap in (True, False):
                    r, stderr = run_child(__file__, paths[fmt], paths["vae"], dtype, int(mmap), check=False)
                    if r is None:
                        print(f"| {fmt} | {dtype} | {'on' if mmap else 'off'} | failed: {stderr.strip()[-300:]} |")
                        continue
                    print(f"| {fmt} | {dtype} | {'on' if mmap else 'off'} | {r['model'] / 1e6:.0f} | "
                          f"{r['growth'] / 1e6:.0f} | {r['growth'] / r['model']:.2f} | {r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
