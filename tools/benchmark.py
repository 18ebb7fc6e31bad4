"""Sampling benchmark: VAR and Switti models of the official shapes with random weights, every guider vs CFG.

    python tools/benchmark.py [--device cuda|cpu] [--models d16,d30,d36 | switti | switti-512,...]
                              [--batches 1,8,32] [--guiders cfg,igg,softcfg,ssg,ssg+igg]
                              [--dtype fp16|bf16|fp32] [--warmup 2] [--repeat 5] [--tiny] [--full-size]
                              [--agreement] [--out FILE.jsonl]

Prints one JSON object per line on stdout (and to --out), one per (model, batch, guider); notes and a
summary table go to stderr. Fields:

  model            "var-d30", "switti-512-ar", ...; tiny models are "var-tiny-256" (d16-d30 layout) /
                   "var-tiny-512" (d36 layout) / "switti-tiny-512", "switti-tiny-1024" (+ "-ar")
  model_family     var | switti
  resolution       image side in pixels (256, 512 or 1024)
  batch            images per sample() call
  guider           cfg | igg | softcfg | ssg | ssg+igg
  s_per_batch      mean seconds per sample() call (class labels or text embeddings -> decoded images),
                   over --repeat runs
  s_per_batch_min  fastest of those runs
  img_per_s        batch / s_per_batch
  peak_gib         peak memory in GiB, see peak_kind
  peak_kind        "cuda_max_allocated": torch.cuda.max_memory_allocated() after reset_peak_memory_stats()
                   (weights included, as in the reference measurements of the official samplers on an H100);
                   "cpu_rss_delta": process peak RSS during the run (VmHWM, reset through
                   /proc/self/clear_refs) minus the RSS before it (weights excluded);
                   "none": peak_gib is null (no way to measure on this platform)
  rel_time_vs_cfg  s_per_batch / s_per_batch of cfg, same model and batch, same process
  rel_peak_vs_cfg  peak_gib / peak_gib of cfg (null where either is null or zero)
  device           GPU name (torch.cuda.get_device_name()) or the CPU model
  device_type      cuda | cpu
  dtype            weights' dtype (the library casts weights once; no autocast)
  tiny             true when small models of the official layouts were used
  error            present only when a configuration failed (e.g. "out of memory"); numbers are null then

VAR settings (as our measurement of the official `autoregressive_infer_cfg`): random class labels, top-k 900,
top-p 0.96, more_smooth off, VQ-VAE decode included. Guiders: cfg = CFG(1.5); igg = IGG(1.85); softcfg =
SoftCFG(base=CFG(1.5)); ssg = SSG(0.1, base=CFG(1.5)); ssg+igg = SSG(0.1, base=IGG(1.85)).

Switti settings (as our measurement of the official `SwittiPipeline`): text encoding excluded -- random
embeddings are fed directly (hidden [B, 77, 2048], pooled [B, 1280], a mask of 8-12 valid tokens; the
negative is an "empty prompt" of 2 valid tokens), drawn before each timed run; cfg 6, top-k 400, top-p 0.95,
Gumbel smoothing from scale 2 (more_smooth, smooth_start_scale 2), CFG off from scale 8 (512 px) / 11
(1024 px), last-scale temperature 0.1, VQ-VAE decode included. Guiders (stop = 8 or 11): cfg =
CFG(6, start_scale=0, end_scale=stop); igg = IGG(6, end_scale=stop); softcfg = SoftCFG(base=that CFG),
only for the -ar models (the library refuses SoftCFG on non-autoregressive Switti: skipped with a note, no
row); ssg = SSG(0.1, base=that CFG); ssg+igg = SSG(0.1, base=that IGG).

CFG is always measured (it is the reference) even when not listed. Each model is primed with one untimed
CFG run after it is built (first-call costs); --warmup adds untimed runs per guider and batch. Runs of the
guiders of one (model, batch) are interleaved round-robin so that drift (clocks, temperature) hits every
guider alike.

--agreement: instead of timing, greedy sampling (top_k 1, no smoothing) of the same models (the bf16 and
fp16 weights are the fp32 ones rounded) on the same inputs in fp32, bf16 and fp16, one line per (model,
batch, guider, dtype) with mode "agreement", dtype, reference_dtype "fp32", token_agreement (the fraction
of all tokens equal to fp32's), agreement_per_scale (the same per scale, coarse to fine),
first_diverging_scale (null when identical) and model/resolution/batch/guider/device/tiny as above. A
token that differs changes the inputs of every later scale, so the figures are end-to-end agreement. A
dtype that fails on the device (an operation without a kernel in that precision) gets "error" and null
figures instead of stopping the run.

Models (--models, comma list; default d16,d30,d36, i.e. VAR only):
  VAR     d16/d20/d24/d30 at 256 px (patch_nums 1,2,3,4,5,6,8,10,13,16), d36 at 512 px
          (1,2,3,4,6,9,13,18,24,32) with shared AdaLN; width 64*depth, heads = depth.
  Switti  switti-512, switti-512-ar (512 schedule 1,2,3,4,6,9,13,18,24,32), switti-1024, switti-1024-ar
          (1024 schedule 1,2,3,4,5,7,9,12,16,21,27,36,48,64); depth 30, width 1920, heads 30; -ar =
          Switti-AR (attends to cached earlier scales). "switti" stands for all four.
Every model has the VQ-VAE of ch 160, ch_mult (1,1,2,2,4) (the 1024 px decode costs 4x the 512 px one).
The transformer is built on the meta device and each parameter is materialised directly on the target
device in the target dtype (no full fp32 copy), with random weights of the statistics of tools/tiny_weights.py
(those of the tests).

dtype: --dtype for every model; by default fp16 for VAR and bf16 for Switti (as the official pipeline
loads it) on CUDA, fp32 on the CPU.

Without CUDA (or with --tiny) small models of the same layouts are used instead (depth 2, width 128,
VQ-VAE ch 32): for VAR one with the 256 schedule and one with the d36 layout (shared AdaLN, 512 schedule);
for Switti one per schedule (512, 1024) and variant (non-AR, AR). Batches 1 and 2, one timed run, no
warm-up, so a CI smoke test finishes in seconds. --full-size forces the official shapes on the CPU (slow:
minutes per batch).
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (makes the repository importable as `scalewise`)

import torch  # noqa: E402

from scalewise.guidance import CFG, Draw, Generation, IGG, SSG, SoftCFG, sample  # noqa: E402
from scalewise.models import SCHEDULES, SwittiConfig, SwittiModel, TextCondition, VARConfig  # noqa: E402
from scalewise.models.var import VARModel  # noqa: E402
from scalewise.tools import tiny_weights  # noqa: E402  (the random weights, shared with tests/tiny.py)

GIB = 1024 ** 3
CFG_SCALE, IGG_SCALE, SSG_BETA = 1.5, 1.85, 0.1
TOP_K, TOP_P = 900, 0.96

# name -> (depth, resolution, shared AdaLN)
OFFICIAL = {
    "d16": (16, 256, False),
    "d20": (20, 256, False),
    "d24": (24, 256, False),
    "d30": (30, 256, False),
    "d36": (36, 512, True),
}
TINY = {  # resolution -> model name; layouts of d16-d30 (256) and d36 (512, shared AdaLN)
    256: "var-tiny-256",
    512: "var-tiny-512",
}
TINY_DEPTH, TINY_HEADS, TINY_VAE_CH = 2, 2, 32
VAE_CH, VAE_MULT = 160, (1, 1, 2, 2, 4)

# Switti: the four released models (yresearch/Switti, -AR, -1024, -1024-AR). name -> (resolution, autoregressive)
SWITTI = {
    "switti-512": (512, False),
    "switti-512-ar": (512, True),
    "switti-1024": (1024, False),
    "switti-1024-ar": (1024, True),
}
SWITTI_ALIAS = "switti"  # --models switti = all four
SWITTI_DEPTH, SWITTI_WIDTH, SWITTI_HEADS = 30, 1920, 30
SWITTI_CFG_SCALE, SWITTI_IGG_SCALE = 6.0, 6.0
SWITTI_CFG_STOP = {512: 8, 1024: 11}  # CFG off from this scale on (the uncond rows are dropped)
SWITTI_TOP_K, SWITTI_TOP_P = 400, 0.95
SWITTI_SMOOTH_START, SWITTI_LAST_TEMPERATURE = 2, 0.1
TEXT_TOKENS, TEXT_VALID, NEGATIVE_VALID = 77, (8, 12), 2  # CLIP context; valid tokens per prompt (range), empty prompt

GUIDERS = {  # VAR
    "cfg": lambda: CFG(CFG_SCALE),
    "igg": lambda: IGG(IGG_SCALE, base=None),
    "softcfg": lambda: SoftCFG(base=CFG(CFG_SCALE)),
    "ssg": lambda: SSG(SSG_BETA, base=CFG(CFG_SCALE)),
    "ssg+igg": lambda: SSG(SSG_BETA, base=IGG(IGG_SCALE)),
}


def switti_guider(name: str, stop: int):
    """The Switti guiders (the same names as GUIDERS), guidance off from scale `stop` on."""
    cfg = lambda: CFG(SWITTI_CFG_SCALE, start_scale=0, end_scale=stop)  # noqa: E731
    igg = lambda: IGG(SWITTI_IGG_SCALE, end_scale=stop, base=None)  # noqa: E731
    return {
        "cfg": cfg,
        "igg": igg,
        "softcfg": lambda: SoftCFG(base=cfg()),
        "ssg": lambda: SSG(SSG_BETA, base=cfg()),
        "ssg+igg": lambda: SSG(SSG_BETA, base=igg()),
    }[name]()


DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
DEFAULT_CUDA_DTYPE = {"var": "fp16", "switti": "bf16"}  # VAR: the official fp16 autocast; Switti: its pipeline's bf16


def note(msg: str) -> None:
    print(f"[benchmark] {msg}", file=sys.stderr, flush=True)


def csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


# -- models ------------------------------------------------------------------------------------

def var_config(depth: int, heads: int, resolution: int, shared_adaln: bool) -> VARConfig:
    return tiny_weights.var_config(depth, heads, SCHEDULES[resolution], shared_adaln)


def build_model(spec: dict, device, dtype):
    """The model of a model_plan() entry with random weights (tools/tiny_weights.py: the VQ-VAE of random_vqvae,
    the transformer materialised on `device` in `dtype` one parameter at a time)."""
    vae = tiny_weights.random_vqvae(ch=spec["vae_ch"], ch_mult=VAE_MULT, device=device, dtype=dtype)
    if spec["family"] == "switti":
        cfg = SwittiConfig(depth=spec["depth"], width=spec["width"], heads=spec["heads"],
                           patch_nums=SCHEDULES[spec["resolution"]], autoregressive=spec["autoregressive"])
        return SwittiModel(tiny_weights.materialised_switti(cfg, device, dtype), vae).eval()
    cfg = var_config(spec["depth"], spec["heads"], spec["resolution"], spec["shared_adaln"])
    return VARModel(tiny_weights.materialised_var(cfg, device, dtype), vae).eval()


def model_names(text: str) -> list[str]:
    """--models: a comma list; "switti" stands for the four Switti models. Unknown names are refused."""
    names = []
    for name in csv(text):
        names += list(SWITTI) if name == SWITTI_ALIAS else [name]
    for name in names:
        if name not in OFFICIAL and name not in SWITTI:
            raise ValueError(f"unknown model {name!r}: choose from {', '.join(OFFICIAL)}, {', '.join(SWITTI)} "
                             f"or {SWITTI_ALIAS} (= all Switti models)")
    return list(dict.fromkeys(names))


def model_plan(names: list[str], tiny: bool) -> list[dict]:
    """What to build: the official shapes, or one tiny model per distinct layout asked for."""
    plan, seen = [], set()
    for name in names:
        if name in SWITTI:
            resolution, ar = SWITTI[name]
            suffix = "-ar" if ar else ""
            if tiny:
                if ("switti", resolution, ar) in seen:
                    continue
                seen.add(("switti", resolution, ar))
                plan.append(dict(model=f"switti-tiny-{resolution}{suffix}", family="switti", depth=TINY_DEPTH,
                                 width=64 * TINY_HEADS, heads=TINY_HEADS, resolution=resolution, autoregressive=ar,
                                 vae_ch=TINY_VAE_CH))
            else:
                plan.append(dict(model=name, family="switti", depth=SWITTI_DEPTH, width=SWITTI_WIDTH,
                                 heads=SWITTI_HEADS, resolution=resolution, autoregressive=ar, vae_ch=VAE_CH))
            continue
        depth, resolution, shared = OFFICIAL[name]
        if tiny:
            if ("var", resolution) in seen:
                continue
            seen.add(("var", resolution))
            plan.append(dict(model=TINY[resolution], family="var", depth=TINY_DEPTH, heads=TINY_HEADS,
                             resolution=resolution, shared_adaln=shared, vae_ch=TINY_VAE_CH))
        else:
            plan.append(dict(model=f"var-{name}", family="var", depth=depth, heads=depth, resolution=resolution,
                             shared_adaln=shared, vae_ch=VAE_CH))
    return plan


def model_guiders(spec: dict, guiders: list[str]) -> list[str]:
    """The guiders that apply to a model: SoftCFG needs cached earlier scales (not non-AR Switti)."""
    if spec["family"] == "switti" and not spec["autoregressive"] and "softcfg" in guiders:
        note(f"{spec['model']}: softcfg skipped (the library refuses SoftCFG on non-autoregressive Switti: "
             "it attends to no earlier scale); use the -ar model")
        return [g for g in guiders if g != "softcfg"]
    return guiders


# -- measurement -------------------------------------------------------------------------------

def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


class PeakMemory:
    """Peak memory of one run: CUDA allocator peak, or the process's peak RSS over its starting RSS."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            self.kind = "cuda_max_allocated"
        elif self._can_reset_rss():
            self.kind = "cpu_rss_delta"
        else:
            self.kind = "none"
        self.base = 0

    @staticmethod
    def _status(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise OSError(field)

    @classmethod
    def _can_reset_rss(cls) -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM (the peak RSS) to the current RSS, Linux >= 4.0
            cls._status("VmHWM")
            return True
        except OSError:
            return False

    def start(self):
        if self.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.kind == "cpu_rss_delta":
            _malloc_trim()  # hand memory freed by earlier runs back, so the base RSS is what is live
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.base = self._status("VmRSS")

    def stop(self) -> float | None:
        if self.kind == "cuda_max_allocated":
            return torch.cuda.max_memory_allocated(self.device) / GIB
        if self.kind == "cpu_rss_delta":
            return max(self._status("VmHWM") - self.base, 0) / GIB
        return None


def _malloc_trim():
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_text(batch: int, gen: torch.Generator, device, dtype) -> TextCondition:
    """Random CLIP-like embeddings in place of the text encoders (excluded from the timing, as in our
    measurement of the official pipeline): hidden [B, 77, 2048], pooled [B, 1280], 8-12 valid tokens per
    prompt, and an "empty prompt" negative of batch 1 with 2 valid tokens (the sampler repeats it per image);
    tools/tiny_weights.py `text_condition`."""
    lengths = torch.randint(TEXT_VALID[0], TEXT_VALID[1] + 1, (batch,), generator=gen)
    return tiny_weights.text_condition(lengths, gen, TEXT_TOKENS, NEGATIVE_VALID, device, dtype)


class Runner:
    """Draws the inputs of one sample() call (untimed) and runs it with a named guider."""

    def __init__(self, spec: dict, model):
        self.spec, self.model, self.family = spec, model, spec["family"]

    def inputs(self, batch: int, gen: torch.Generator):
        if self.family == "switti":
            return random_text(batch, gen, self.model.weight_device, self.model.dtype)
        return torch.randint(0, self.model.num_classes, (batch,), generator=gen).tolist()

    def run(self, guider_name: str, inputs, batch: int, seed: int):
        if self.family == "switti":
            guider = switti_guider(guider_name, SWITTI_CFG_STOP[self.spec["resolution"]])
            out = sample(self.model, guider, Generation(inputs, seed=seed, batch_size=batch,
                                                        draw=Draw(top_k=SWITTI_TOP_K, top_p=SWITTI_TOP_P,
                                                                  more_smooth=True, smooth_start_scale=SWITTI_SMOOTH_START, last_scale_temperature=SWITTI_LAST_TEMPERATURE)))
        else:
            out = sample(self.model, GUIDERS[guider_name](), Generation(inputs, seed=seed, draw=Draw(top_k=TOP_K,
                                                                                                     top_p=TOP_P, more_smooth=False)))
        assert out.images.shape[0] == batch
        return out

    def run_greedy(self, guider_name: str, inputs, batch: int):
        """Greedy decoding (top_k 1, no smoothing), for the --agreement comparison of dtypes."""
        if self.family == "switti":
            guider = switti_guider(guider_name, SWITTI_CFG_STOP[self.spec["resolution"]])
            return sample(self.model, guider, Generation(inputs, seed=0, batch_size=batch, draw=Draw(top_k=1)))
        return sample(self.model, GUIDERS[guider_name](), Generation(inputs, seed=0, draw=Draw(top_k=1)))


def bench_batch(runner: Runner, guiders: list[str], batch: int, warmup: int, repeat: int, device,
                memory: PeakMemory):
    """Times and peaks per guider for one (model, batch); guiders are interleaved round-robin. The
    inputs (labels, text embeddings) are drawn before each run, outside the timing."""
    inputs_gen = torch.Generator().manual_seed(1234 + batch)
    times = {g: [] for g in guiders}
    peaks = {g: None for g in guiders}
    errors = {}
    seed = 0
    for phase, count in (("warmup", warmup), ("timed", repeat)):
        for _ in range(count):
            for g in guiders:
                if g in errors:
                    continue
                seed += batch
                inputs = None
                try:
                    inputs = runner.inputs(batch, inputs_gen)
                    if phase == "warmup":
                        runner.run(g, inputs, batch, seed)
                        continue
                    memory.start()
                    sync(device)
                    t0 = time.perf_counter()
                    runner.run(g, inputs, batch, seed)
                    sync(device)
                    times[g].append(time.perf_counter() - t0)
                    peak = memory.stop()
                    if peak is not None:
                        peaks[g] = peak if peaks[g] is None else max(peaks[g], peak)
                except torch.cuda.OutOfMemoryError:
                    errors[g] = "out of memory"
                except RuntimeError as e:  # e.g. CPU allocation failure
                    if "out of memory" not in str(e).lower() and "can't allocate" not in str(e).lower():
                        raise
                    errors[g] = "out of memory"
                del inputs
                if g in errors:  # outside the except block, so the failed run's tensors are unreachable
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    return times, peaks, errors


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def rounded(x, digits=5):
    return None if x is None else round(x, digits)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), default=None,
                   help="default: cuda when available, else cpu (which implies --tiny unless --full-size)")
    p.add_argument("--models", default="d16,d30,d36",
                   help=f"comma list of {','.join(OFFICIAL)} (VAR), {','.join(SWITTI)} (Switti), "
                        f"{SWITTI_ALIAS} (= all Switti models)")
    p.add_argument("--batches", default=None, help="comma list of batch sizes (default 1,8,32; tiny 1,2)")
    p.add_argument("--guiders", default=",".join(GUIDERS), help=f"comma list of {','.join(GUIDERS)}")
    p.add_argument("--dtype", choices=tuple(DTYPES), default=None,
                   help="default on cuda: fp16 for VAR, bf16 for Switti; fp32 on cpu")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs per guider and batch (default 2; tiny 0)")
    p.add_argument("--repeat", type=int, default=None, help="timed runs per guider and batch (default 5; tiny 1)")
    p.add_argument("--tiny", action="store_true", help="small models of the official layouts (CI smoke test)")
    p.add_argument("--full-size", action="store_true", help="official shapes even on the CPU (slow)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on the CPU")
    p.add_argument("--agreement", action="store_true",
                   help="greedy tokens of bf16 and fp16 against fp32 instead of timing (see above)")
    p.add_argument("--out", default=None, help="also write the JSON lines to this file")
    args = p.parse_args(argv)
    if args.tiny and args.full_size:
        p.error("--tiny and --full-size exclude each other")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here (leave --device out to fall back to the CPU)")
    try:
        args.models = model_names(args.models)
    except ValueError as e:
        p.error(str(e))
    if not args.models:
        p.error("--models lists no model")
    if args.device == "cpu" and not args.tiny and not args.full_size:
        note("no CUDA device: using tiny models of the official layouts on the CPU (tiny: true); "
             "--full-size forces the official shapes")
        args.tiny = True
    if args.tiny:
        tiny_names = ", ".join(spec["model"] for spec in model_plan(args.models, True))
        note(f"tiny mode: depth 2, width 128, VQ-VAE ch 32, the official layouts and schedules ({tiny_names}). "
             "Times are a smoke test, not a performance figure.")
    args.batches = [int(b) for b in csv(args.batches or ("1,2" if args.tiny else "1,8,32"))]
    if not args.batches or min(args.batches) < 1:
        p.error("--batches must list positive integers")
    args.warmup = args.warmup if args.warmup is not None else (0 if args.tiny else 2)
    args.repeat = args.repeat if args.repeat is not None else (1 if args.tiny else 5)
    if args.warmup < 0 or args.repeat < 1:
        p.error("--warmup must be >= 0 and --repeat >= 1")
    guiders = csv(args.guiders)
    for g in guiders:
        if g not in GUIDERS:
            p.error(f"unknown guider {g!r}: choose from {', '.join(GUIDERS)}")
    args.guiders = ["cfg"] + [g for g in dict.fromkeys(guiders) if g != "cfg"]
    # None = the family's default (see model_dtype)
    return args


def model_dtype(args, family: str) -> str:
    if args.dtype:
        return args.dtype
    return DEFAULT_CUDA_DTYPE[family] if args.device == "cuda" else "fp32"


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for fp32 runs, as the reference measurement
    dev_name = device_name(device)
    memory = PeakMemory(device)
    if memory.kind == "none":
        note("peak memory cannot be measured on this platform: peak_gib is null")
    families = list(dict.fromkeys("switti" if m in SWITTI else "var" for m in args.models))
    dtypes = ", ".join(f"{model_dtype(args, f)} ({f})" for f in families)
    note(f"device: {dev_name} ({device.type}), dtype {dtypes}, torch {torch.__version__}, "
         f"{torch.get_num_threads()} CPU threads; guiders {','.join(args.guiders)}; batches "
         f"{args.batches}; warmup {args.warmup}, repeat {args.repeat}")
    out_file = open(args.out, "w") if args.out else None
    rows = []
    timed = () if args.agreement else model_plan(args.models, args.tiny)  # --agreement: no timing runs
    try:
        if args.agreement:
            agreement(args, device, dev_name, lambda row: emit(row, out_file))
        for spec in timed:
            dtype_name = model_dtype(args, spec["family"])
            guiders = model_guiders(spec, args.guiders)
            t0 = time.perf_counter()
            model = build_model(spec, device, DTYPES[dtype_name])
            sync(device)
            params = sum(p.numel() for p in model.transformer.parameters())
            runner = Runner(spec, model)
            prime_gen = torch.Generator().manual_seed(0)
            runner.run("cfg", runner.inputs(args.batches[0], prime_gen), args.batches[0], 0)  # prime (untimed)
            sync(device)
            note(f"built and primed {spec['model']} ({params / 1e6:.1f}M transformer parameters, "
                 f"{spec['resolution']} px, {dtype_name}) in {time.perf_counter() - t0:.1f} s")
            for batch in args.batches:
                times, peaks, errors = bench_batch(runner, guiders, batch, args.warmup, args.repeat,
                                                   device, memory)
                ref_t = statistics.fmean(times["cfg"]) if times["cfg"] else None
                for g in guiders:
                    s = statistics.fmean(times[g]) if times[g] else None
                    row = {
                        "model": spec["model"], "model_family": spec["family"], "resolution": spec["resolution"],
                        "batch": batch, "guider": g,
                        "s_per_batch": rounded(s), "s_per_batch_min": rounded(min(times[g]) if times[g] else None),
                        "img_per_s": rounded(batch / s if s else None, 3),
                        "peak_gib": rounded(peaks[g], 4), "peak_kind": memory.kind,
                        "rel_time_vs_cfg": rounded(ratio(s, ref_t), 4),
                        "rel_peak_vs_cfg": rounded(ratio(peaks[g], peaks["cfg"]), 4),
                        "device": dev_name, "device_type": device.type, "dtype": dtype_name,
                        "tiny": bool(args.tiny), "warmup": args.warmup, "repeat": args.repeat,
                        "torch": torch.__version__,
                    }
                    if g in errors:
                        row["error"] = errors[g]
                    emit(row, out_file)
                    rows.append(row)
            del model, runner
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        if out_file:
            out_file.close()
    summary(rows)
    return 0


def emit(row: dict, out_file) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    if out_file:
        out_file.write(line + "\n")
        out_file.flush()


AGREEMENT_DTYPES = ("bf16", "fp16")


def greedy_tokens(spec, device, dtype, cases) -> dict:
    """(batch, guider) -> greedy token maps of a model built in `dtype` (same seed: same weights, rounded)."""
    model = build_model(spec, device, dtype)
    runner = Runner(spec, model)
    out = {}
    for batch, guider in cases:
        inputs = runner.inputs(batch, torch.Generator().manual_seed(1234 + batch))
        out[(batch, guider)] = [t.cpu() for t in runner.run_greedy(guider, inputs, batch).tokens]
    return out


def agreement(args, device, dev_name, emit_row) -> None:
    """--agreement: token agreement of bf16 and fp16 weights with fp32 under greedy decoding."""
    for spec in model_plan(args.models, args.tiny):
        cases = [(b, g) for b in args.batches for g in model_guiders(spec, args.guiders)]
        reference = greedy_tokens(spec, device, torch.float32, cases)
        for name in AGREEMENT_DTYPES:
            try:
                tokens, error = greedy_tokens(spec, device, DTYPES[name], cases), None
            except (RuntimeError, NotImplementedError) as e:  # e.g. no kernel for this dtype on the device
                tokens, error = None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                note(f"{spec['model']} {name} failed on {device.type}: {error}")
            for batch, guider in cases:
                row = {"mode": "agreement", "model": spec["model"], "model_family": spec["family"],
                       "resolution": spec["resolution"], "batch": batch, "guider": guider, "dtype": name,
                       "reference_dtype": "fp32", "token_agreement": None, "agreement_per_scale": None,
                       "first_diverging_scale": None, "device": dev_name, "device_type": device.type,
                       "tiny": bool(args.tiny), "torch": torch.__version__}
                if error:
                    row["error"] = error
                else:
                    ref, got = reference[(batch, guider)], tokens[(batch, guider)]
                    same = [(a == b).float().mean().item() for a, b in zip(ref, got)]
                    total = sum((a == b).sum().item() for a, b in zip(ref, got)) / sum(a.numel() for a in ref)
                    row.update(token_agreement=round(total, 6), agreement_per_scale=[round(x, 6) for x in same],
                               first_diverging_scale=next((k for k, x in enumerate(same) if x < 1), None))
                emit_row(row)
            del tokens
            gc.collect()


def summary(rows):
    """Human-readable table on stderr: every guider relative to CFG."""
    if not rows:
        return
    head = f"{'model':<20}{'px':>5}{'batch':>6}  {'guider':<9}{'s/batch':>9}{'img/s':>9}{'peak GiB':>10}" \
           f"{'time/cfg':>10}{'peak/cfg':>10}"
    lines = [head, "-" * len(head)]
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in rows:
        lines.append(f"{r['model']:<20}{r['resolution']:>5}{r['batch']:>6}  {r['guider']:<9}"
                     f"{fmt(r['s_per_batch'], '9.3f')}{fmt(r['img_per_s'], '9.2f')}{fmt(r['peak_gib'], '10.3f')}"
                     f"{fmt(r['rel_time_vs_cfg'], '10.2f')}{fmt(r['rel_peak_vs_cfg'], '10.2f')}"
                     + (f"  {r['error']}" if "error" in r else ""))
    print("\n".join(lines), file=sys.stderr, flush=True)
    print(f"[benchmark] peak_kind: {rows[0]['peak_kind']}; device: {rows[0]['device']}"
          f"{' (tiny models)' if rows[0]['tiny'] else ''}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
