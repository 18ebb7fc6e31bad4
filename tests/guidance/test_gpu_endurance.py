"""Issue 6, GPU endurance (runs only where CUDA is available; skipped otherwise, e.g. in the CPU CI).

The library sampler on the GPU, tiny model of the official 256 px schedule: 50 runs cancelled from the per-scale
callback (what the node's Cancel does) and 100 complete runs must leave torch.cuda.memory_allocated where it was,
and a fixed-seed run after them gives the same tokens as before. The ComfyUI test server always runs with --cpu,
so this check drives the library directly. Figures: artifacts/reliability/gpu_endurance.json.
"""
import json
import os
from pathlib import Path

import pytest
import torch

from scalewise.guidance import CFG, Draw, Generation, sample
from scalewise.models import SCHEDULES
from tiny import tiny_model

ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR") or Path(__file__).resolve().parents[2] / "artifacts") / "reliability"
CANCELS, RUNS = 50, 100


class Cancelled(Exception):
    pass


def endurance(device: str) -> dict:
    model = tiny_model(patch_nums=SCHEDULES[256], seed=5).to(device)
    cuda = device.startswith("cuda")
    mem = (lambda: torch.cuda.memory_allocated(device)) if cuda else (lambda: 0)
    first = sample(model, CFG(3.0), Generation([207], seed=7, batch_size=2, draw=Draw(top_k=50, top_p=0.95)))
    sample(model, CFG(3.0), Generation([1], seed=0, batch_size=4, draw=Draw(top_k=50, top_p=0.95)))      # warm-up at the batch used below
    if cuda:
        torch.cuda.synchronize(device)
    before = mem()
    for i in range(CANCELS):
        def cancel(progress, at=1 + i % 8):
            if progress.k >= at:
                raise Cancelled
        with pytest.raises(Cancelled):
            sample(model, CFG(3.0), Generation([i % 1000], seed=i, batch_size=4, draw=Draw(top_k=50, top_p=0.95)),
                   callback=cancel)
    after_cancels = mem()
    peak = 0
    for i in range(RUNS):
        out = sample(model, CFG(3.0), Generation([i % 1000], seed=100 + i, batch_size=4,
                                                 draw=Draw(top_k=50, top_p=0.95)))
        del out
        peak = max(peak, torch.cuda.max_memory_allocated(device) if cuda else 0)
    after_runs = mem()
    again = sample(model, CFG(3.0), Generation([207], seed=7, batch_size=2, draw=Draw(top_k=50, top_p=0.95)))
    same = all(torch.equal(a, b) for a, b in zip(first.tokens, again.tokens))
    del first, again
    return {"device": torch.cuda.get_device_name(device) if cuda else device, "cancels": CANCELS, "runs": RUNS,
            "allocated_before_mib": before / 2**20, "allocated_after_cancels_mib": after_cancels / 2**20,
            "allocated_after_runs_mib": after_runs / 2**20, "peak_allocated_mib": peak / 2**20,
            "same_tokens_after": same}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here: the GPU endurance check needs one")
def test_gpu_cancels_and_runs_leave_memory_where_it_was():
    figures = endurance("cuda")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "gpu_endurance.json").write_text(json.dumps(figures, indent=1))
    print(f"\n[endurance] gpu: {json.dumps(figures)}")
    assert figures["same_tokens_after"]
    # nothing stays allocated: 1 MiB of slack for allocator bookkeeping, far below one run's tensors
    assert figures["allocated_after_cancels_mib"] - figures["allocated_before_mib"] < 1
    assert figures["allocated_after_runs_mib"] - figures["allocated_before_mib"] < 1
