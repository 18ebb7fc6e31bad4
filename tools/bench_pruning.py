"""Token pruning (FastVAR) benchmark: exact vs every preset, side by side in one run.

    python tools/bench_pruning.py [--device cpu|cuda] [--depth 2] [--repeat 3] [--samples 1000] [--skip-quality]
                                  [--schedules var-256,switti-512,switti-1024] [--out FILE.jsonl]
                                  [--policies exact,fastvar] [--skip-cost]

One policy per process (`--policies fastvar --skip-cost --skip-quality`) makes a whole-process command to time
from outside, pair by pair against `--policies exact`.

Speed: for each schedule (VAR d16 and d30 at 256 px, Switti 512 and 1024 px; random weights of the official
width, `--depth` blocks: pruning changes what each block costs, so a few blocks show the ratio of the blocks'
work; `--depth 0` = the official depth, for a GPU) the seconds per image of `sample` (guided as the official demos:
VAR CFG 4 linear, Switti CFG 6 constant stopped where the benchmark of tools/benchmark.py stops it; tiny VQ-VAE,
so the decode does not hide the transformer's time) and its peak memory (tools/benchmark.py `PeakMemory`), exact
and under each preset, with the speed-up. Also the guidance cost: rows x tokens each guider makes the model
compute, relative to unguided, on the same schedules (counted, not timed).

Quality: the built-in scenes-128 model and its judge (tools/guidance_sweep.py `measure`): accuracy, Fréchet
distance, evenness E and divergence D of `--samples` images, CFG 2 linear, the same seeds for every preset; the
noise level is the exact sampler measured again on another seed set.

Prints one JSON object per row on stdout (and to --out), a table on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (makes the repository importable as `scalewise`)

from scalewise.guidance import CFG, IGG, SSG, Draw, Generation, SoftCFG, sample  # noqa: E402
from scalewise.models import SCHEDULES, SwittiConfig, SwittiModel, VARModel  # noqa: E402
from scalewise.models.pruning import PRESETS, with_pruning  # noqa: E402
from scalewise.tools import tiny_weights  # noqa: E402
from scalewise.tools.benchmark import SWITTI_CFG_STOP, PeakMemory, random_text, sync  # noqa: E402

SCHEDULE_SPECS = {  # name -> (family, resolution, official width, official depth)
    "var-d16-256": ("var", 256, 1024, 16), "var-d30-256": ("var", 256, 1920, 30),
    "switti-512": ("switti", 512, 1920, 20), "switti-1024": ("switti", 1024, 1920, 20),
}
POLICIES = {"exact": None, **PRESETS}


def build(name: str, depth: int, device, dtype):
    family, resolution, width, official_depth = SCHEDULE_SPECS[name]
    depth = depth or official_depth
    vae = tiny_weights.random_vqvae(ch=32, device=device, dtype=dtype)
    if family == "switti":
        cfg = SwittiConfig(depth=depth, width=width, heads=width // 64, patch_nums=SCHEDULES[resolution])
        return SwittiModel(tiny_weights.materialised_switti(cfg, device, dtype), vae).eval()
    cfg = tiny_weights.var_config(depth, width // 64, SCHEDULES[resolution], False)
    return VARModel(tiny_weights.materialised_var(cfg, device, dtype), vae).eval()


def demo_guider(model):
    if model.family == "switti":
        return CFG(6.0, "constant", end_scale=SWITTI_CFG_STOP[model.image_size])
    return CFG(4.0)


def conditioning(model, batch, device, dtype):
    if model.family == "switti":
        return random_text(batch, torch.Generator().manual_seed(0), device, dtype)
    return torch.arange(batch) % model.config.num_classes


def time_policies(model, guider, cond, batch, repeat, device, policies=POLICIES) -> dict:
    """Seconds per image of every policy (median of `repeat` rounds, the policies in turn within each round, so a
    machine whose speed drifts slows all alike), peak memory, and the speed-up: the median of the per-round ratios
    exact / policy."""
    generation = Generation(cond, seed=0, batch_size=batch, draw=Draw(top_k=900, top_p=0.95))
    models = {name: with_pruning(model, policy) for name, policy in policies.items()}
    times, peaks = {name: [] for name in models}, {}
    for name, m in models.items():  # warm-up, and the peak memory of one run
        peak = PeakMemory(device)
        peak.start()
        sample(m, guider, generation)
        peaks[name] = (peak.stop(), peak.kind)
    for _ in range(repeat):
        for name, m in models.items():
            sync(device)
            t0 = time.perf_counter()
            sample(m, guider, generation)
            sync(device)
            times[name].append(time.perf_counter() - t0)
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return {name: {"s_per_image": median(times[name]) / batch, "peak_gib": peaks[name][0], "peak_kind": peaks[name][1],
                   **(_speedups(times["exact"], times[name]) if "exact" in times else {})}
            for name in models}


def _speedups(exact: list[float], timed: list[float]) -> dict:
    ratios = [e / t for e, t in zip(exact, timed)]
    return {"speedup": round(sorted(ratios)[len(ratios) // 2], 3),
            "speedup_range": [round(min(ratios), 3), round(max(ratios), 3)]}


class Counting:
    """The model, adding up rows x tokens of every forward_scale call (the work the blocks do, up to attention)."""

    def __init__(self, model):
        self.model, self.work = model, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def forward_scale(self, state, k, latent, value_weights=None):
        self.work += state.rows * self.model.patch_nums[k] ** 2
        return self.model.forward_scale(state, k, latent, value_weights)


def guidance_cost(model, cond) -> dict:
    """rows x tokens of each guider relative to unguided (1 = no extra work)."""
    guiders = {"cfg": demo_guider(model), "igg": IGG(4.0), "ssg": SSG(0.4), "ssg+cfg": SSG(0.4, base=demo_guider(model))}
    if model.autoregressive:
        guiders["softcfg"] = SoftCFG(1.0, base=demo_guider(model))
    out = {}
    for name, guider in {"unguided": None, **guiders}.items():
        counting = Counting(model)
        sample(counting, guider, Generation(cond, seed=0, draw=Draw(top_k=1)))
        out[name] = counting.work
    return {k: round(v / out["unguided"], 3) for k, v in out.items() if k != "unguided"}


def speed(args, device, dtype, emit):
    depths = [int(d) for d in args.depths.split(",")] if args.depths else [args.depth] * len(args.schedules)
    for name, depth in zip(args.schedules, depths):
        model = build(name, depth, device, dtype)
        cond = conditioning(model, args.batch, device, dtype)
        policies = {n: POLICIES[n] for n in args.policies}
        timed = time_policies(model, demo_guider(model), cond, args.batch, args.repeat, device, policies)
        for policy_name, row in timed.items():
            emit({"kind": "speed", "schedule": name, "policy": policy_name, "depth": model.config.depth,
                  "width": model.config.width, "batch": args.batch, "device": str(device), **row})
        if not args.skip_cost:
            emit({"kind": "guidance_cost", "schedule": name, "autoregressive": model.autoregressive,
                  **guidance_cost(model, conditioning(model, 1, device, dtype))})
        del model


def quality(args, device, emit):
    from scalewise.models.builtin import SCENES_MODEL
    from scalewise.models.judge import judge_images
    from scalewise.tools.guidance_sweep import REFERENCE_SEED, SEED, measure
    from scalewise.tools.scenes.data import sample as scenes_images
    model = SCENES_MODEL.load(device=device)
    judge = SCENES_MODEL.load_judge(device)
    reference = judge_images(judge, torch.from_numpy(scenes_images(2000, REFERENCE_SEED)[0]).to(device))["features"]
    guider = CFG(2.0)
    for policy_name, policy in POLICIES.items():
        row = measure(with_pruning(model, policy), judge, guider, args.samples, reference)
        emit({"kind": "quality", "model": "scenes-128", "policy": policy_name, "guider": guider.describe(),
              "samples": args.samples, "seed": SEED, **row})
    noise = measure(model, judge, guider, args.samples, reference, seed=SEED + 10 ** 6)
    emit({"kind": "quality", "model": "scenes-128", "policy": "exact (other seeds: noise)",
          "guider": guider.describe(), "samples": args.samples, "seed": SEED + 10 ** 6, **noise})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="bf16 on CUDA, fp32 on the CPU by default")
    ap.add_argument("--depth", type=int, default=2, help="blocks per model (0 = the official depth)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--schedules", default=",".join(SCHEDULE_SPECS))
    ap.add_argument("--depths", help="per schedule, comma-separated (overrides --depth), e.g. 2,2,2,1")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--policies", default=",".join(POLICIES), help=f"comma-separated, of {', '.join(POLICIES)}")
    ap.add_argument("--skip-cost", action="store_true", help="no guidance-cost count")
    args = ap.parse_args(argv)
    args.schedules = [s for s in args.schedules.split(",") if s]
    args.policies = [p for p in args.policies.split(",") if p]
    unknown = [p for p in args.policies if p not in POLICIES]
    if unknown:
        ap.error(f"--policies: unknown {unknown}, choose from {', '.join(POLICIES)}")
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    out = open(args.out, "a", encoding="utf-8") if args.out else None

    def emit(row):
        line = json.dumps(row)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()
    torch.manual_seed(0)
    with torch.inference_mode():
        if not args.skip_speed:
            speed(args, device, dtype, emit)
    if not args.skip_quality:
        quality(args, device, emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
