"""Area resizing: torch's native F.interpolate(mode="area") against the matrix form of models/resize.py (issue 13.5),
for the resizes of VAR's 256 px schedule, on the CPU (and CUDA/MPS when present). Prints microseconds per call.

    python tools/benchmark_resize.py [--batch 4] [--repeat 200]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (the repository as the package `scalewise`)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    from scalewise.models import SCHEDULES
    from scalewise.models.resize import area_resize, native_area_supported

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + \
        (["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else [])
    pns = SCHEDULES[256]
    print("| device | resize 16 -> n, all n of the schedule | native (us) | matrix (us) |")
    print("|---|---|---|---|")
    for device in devices:
        x = torch.randn(args.batch, 32, pns[-1], pns[-1], device=device)
        timings = {}
        for label, matrix in (("native", False), ("matrix", True)):
            if not matrix and not all(native_area_supported(x, (n, n)) for n in pns[1:]):
                timings[label] = None
                continue
            for n in pns[1:]:
                area_resize(x, (n, n), matrix=matrix)
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.repeat):
                for n in pns[1:]:
                    area_resize(x, (n, n), matrix=matrix)
            if device == "cuda":
                torch.cuda.synchronize()
            timings[label] = (time.perf_counter() - start) / args.repeat * 1e6
        cells = [f"{timings[k]:.0f}" if timings[k] is not None else "refused" for k in ("native", "matrix")]
        print(f"| {device} | [{args.batch}, 32, 16, 16] -> {', '.join(map(str, pns[1:]))} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
