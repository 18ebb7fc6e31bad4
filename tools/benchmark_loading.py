"""Memory while loading (issue 13.8): peak growth of the process while `load_var` loads a full-size random VAR-d16
(310 M parameters) and the official-size VQ-VAE, per file format, dtype and mmap setting, against the loaded
model's own size. Each case runs in a fresh subprocess; the peak is the kernel's high-water mark of the resident
size (VmHWM, reset through /proc/self/clear_refs just before loading; getrusage's ru_maxrss would carry the parent's
size across fork/exec) and a 1 ms sampler of /proc/self/statm, minus the resident size just before loading (Linux),
after a warm-up that builds a tiny model on the meta device (torch's one-time lazy initialisation).

    python tools/benchmark_loading.py [--dir DIR] [--keep]     # writes ~3.4 GB of files to DIR (a temp dir)

`old` rows reproduce the loader before issue 13 (whole state dict read in the stored dtype, then module.to(dtype)).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (the repository as the package `scalewise`)

PAGE = os.sysconf("SC_PAGE_SIZE")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def write_files(folder: Path) -> dict[str, tuple[Path, Path]]:
    from safetensors.torch import save_file

    from scalewise.models import SCHEDULES, var_official_state_dict, vqvae_official_state_dict
    from scalewise.tools.tiny_weights import random_var, random_vqvae, var_config

    var = random_var(var_config(depth=16, heads=16, patch_nums=SCHEDULES[256]))  # the d16's layout, width 1024
    vae = random_vqvae(ch=160)  # the official VQ-VAE's sizes
    out = {}
    for fmt in ("pth", "safetensors"):
        paths = folder / f"var_d16.{fmt}", folder / f"vae_ch160v4096z32.{fmt}"
        for path, sd in zip(paths, (var_official_state_dict(var), vqvae_official_state_dict(vae))):
            if not path.exists():
                if fmt == "pth":
                    torch.save(sd, path)
                else:
                    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        out[fmt] = paths
    return out


def measure_peak(load):
    """(load()'s result, peak growth of the resident size in bytes, seconds): the kernel's high-water mark (VmHWM,
    reset just before) and a 1 ms sampler of /proc/self/statm, minus the resident size before `load` (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size
    except OSError:
        pass
    before = rss()
    peak, stop = [before], threading.Event()

    def sampler():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    start = time.perf_counter()
    result = load()
    seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    return result, max(peak[0], hwm) - before, seconds


def model_bytes(model) -> int:
    """Bytes of a loaded model's transformer and VAE tensors (parameters and buffers)."""
    return sum(t.numel() * t.element_size() for part in (model.transformer, model.vae)
               for t in [*part.parameters(), *part.buffers()])


def child(var_path: str, vae_path: str, dtype: str, mmap: bool, old: bool) -> dict:
    from scalewise.models import SCHEDULES, VQVAE, VARConfig, VQVAEConfig, checkpoint, load_var
    from scalewise.models.var import VARTransformer

    # One-time lazy initialisation of torch's meta-device construction (about 80 MB of code and allocator pages,
    # paid once per process and already paid in a running ComfyUI) is not loading: done before measuring.
    with torch.device("meta"):
        VARTransformer(VARConfig(depth=1, width=64, heads=1, patch_nums=SCHEDULES[256]))
        VQVAE(VQVAEConfig(ch=32))
    if old:  # the loader before issue 13: the whole state dict as stored, then module.to(dtype)
        real = checkpoint.read_state_dict
        checkpoint_read = (lambda path, dtype=None, *, mmap=True, skip=():  # noqa: E731
                           real(path, None, mmap=path.endswith(".safetensors"), skip=skip))
        import scalewise.models.var_loader as vl
        import scalewise.models.vqvae_loader as ql
        vl.read_state_dict = ql.read_state_dict = checkpoint_read
    model, growth, seconds = measure_peak(lambda: load_var(var_path, vae_path, dtype=DTYPES[dtype], mmap=mmap))
    files = os.path.getsize(var_path) + os.path.getsize(vae_path)
    return {"files": files, "model": model_bytes(model), "growth": growth, "seconds": seconds}


def parse_args(doc: str, child_fields: int) -> argparse.Namespace:
    """The loading benchmarks' command line: --dir, --keep and the hidden --child of `child_fields` values."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", help="where to write the files (default: a temp dir, removed afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--child", nargs=child_fields, help=argparse.SUPPRESS)
    return parser.parse_args()


@contextlib.contextmanager
def work_folder(args: argparse.Namespace, prefix: str):
    """The folder the files are written to: --dir, or a temp dir removed afterwards unless --keep."""
    folder = Path(args.dir or tempfile.mkdtemp(prefix=prefix))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    if not args.keep and not args.dir:
        shutil.rmtree(folder)


def run_child(script: str, *child_args, check: bool = True) -> tuple[dict | None, str]:
    """One case in a fresh interpreter (`python script --child ARGS`, the peak is the process's own): (the JSON
    line it printed, or None when it failed, and its stderr). check: raise CalledProcessError when it fails."""
    run = subprocess.run([sys.executable, script, "--child", *map(str, child_args)], check=check,
                         capture_output=True, text=True)
    return (None if run.returncode else json.loads(run.stdout)), run.stderr


def main():
    args = parse_args(__doc__, 5)
    if args.child:
        var_path, vae_path, dtype, mmap, old = args.child
        print(json.dumps(child(var_path, vae_path, dtype, mmap == "1", old == "1")))
        return
    with work_folder(args, "scalewise_load_") as folder:
        files = write_files(folder)
        print("| file format | dtype | mmap | loader | files (MB) | model (MB) | peak growth (MB) | growth / model | s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for fmt, (var_path, vae_path) in files.items():
            for dtype in DTYPES:
                for mmap, old in ((True, True), (True, False), (False, False)):
                    r, _ = run_child(__file__, var_path, vae_path, dtype, int(mmap), int(old))
                    print(f"| .{fmt} | {dtype} | {'on' if mmap else 'off'} | {'before' if old else 'now'} | "
                          f"{r['files'] / 1e6:.0f} | {r['model'] / 1e6:.0f} | {r['growth'] / 1e6:.0f} | "
                          f"{r['growth'] / r['model']:.2f} | {r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
