"""Shared pieces of the GPU scripts (tools/gpu_var_bench.py, tools/gpu_switti_bench.py); no pack import.

The official repositories are imported by the scripts from a folder given on the command line (by default `.gpu-ref/VAR` and `.gpu-ref/switti` of this checkout: ignored by git, filled by the
`git archive` commands of tools/README.md and carried to the device machine). Timing uses CUDA events on
a GPU and the wall clock on the CPU; peak memory is torch.cuda.max_memory_allocated over one run, minus what
other models resident at that time hold (so two implementations can stay loaded side by side and be
interleaved). JSON lines go to $OUT (the device tool's folder) or `--out`.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1024 ** 3


def require_repo(path: str, name: str, marker: str) -> str:
    path = os.path.abspath(path)
    if not os.path.exists(os.path.join(path, marker)):
        raise SystemExit(f"the official {name} code is not at {path} (no {marker}): extract it first, see "
                         "tools/README.md (`git archive` of the fetched repository into .gpu-ref/), or pass "
                         "its folder with --repo")
    return path


def out_dir(cli_value: str | None) -> str:
    path = cli_value or os.environ.get("OUT") or os.path.join(ROOT, ".gpu-out")
    os.makedirs(path, exist_ok=True)
    return path


class Emitter:
    """JSON lines to a file (and counted); notes to stderr. The table is printed by the caller, last."""

    def __init__(self, path: str, common: dict):
        self.path, self.common, self.rows = path, common, []
        self.file = open(path, "w")

    def __call__(self, row: dict) -> dict:
        row = {**row, **self.common}
        self.rows.append(row)
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        return row

    def close(self):
        self.file.close()


def note(tag: str, msg: str) -> None:
    print(f"[{tag}] {msg}", file=sys.stderr, flush=True)


def module_bytes(*modules) -> int:
    """Bytes of the parameters and buffers of these modules (shared tensors once)."""
    seen, total = set(), 0
    for m in modules:
        for t in (*m.parameters(), *m.buffers()):
            if t.data_ptr() in seen or t.is_meta:
                continue
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


class Timer:
    """One run's time (CUDA events on a GPU, else the wall clock) and peak memory of its own.

    peak = max_memory_allocated during the run - memory_allocated before it + `own_bytes` (the measured
    model's resident weights): everything else resident (another implementation kept loaded for
    interleaving) is excluded, the model's own weights are included (as the published tables)."""

    def __init__(self, torch, device):
        self.torch, self.device = torch, device
        self.cuda = device.type == "cuda"

    def run(self, fn, own_bytes: int = 0):
        torch = self.torch
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0 = time.perf_counter()
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            wall = time.perf_counter() - t0
            seconds = start.elapsed_time(end) / 1000.0
            peak = (torch.cuda.max_memory_allocated(self.device) - base + own_bytes) / GIB
            return out, seconds, wall, peak
        t0 = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
        return out, wall, wall, None


def free(torch, device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def agreement_figures(ref, got) -> dict:
    """Token agreement of two lists of per-scale token maps (same shapes), coarse to fine."""
    same = [(a.cpu() == b.cpu()).float().mean().item() for a, b in zip(ref, got)]
    total = sum((a.cpu() == b.cpu()).sum().item() for a, b in zip(ref, got)) / sum(a.numel() for a in ref)
    return {"token_agreement": round(total, 6), "agreement_per_scale": [round(x, 6) for x in same],
            "first_diverging_scale": next((k for k, x in enumerate(same) if x < 1), None),
            "tokens_equal": all(x == 1 for x in same)}


def fmt(v, spec: str) -> str:
    """format(v, spec), or "-" in the same width for a missing figure."""
    if v is None:
        digits = spec.split(".")[0]
        return "-".rjust(int(digits) if digits.isdigit() else 0)
    return format(v, spec)


def stats(times: list[float]) -> tuple[float | None, float | None]:
    if not times:
        return None, None
    return sum(times) / len(times), min(times)


class Deadline:
    """A soft overall time limit: work that would start after it is skipped and reported as skipped."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def passed(self) -> bool:
        return self.left() <= 0


def interleaved(timer: Timer, configs: dict, own_bytes: dict, *, warmup: int, repeat: int, budget_s: float,
                deadline: Deadline, is_oom) -> dict:
    """Time each of `configs` (name -> callable returning a batch of images) round-robin, so that drift
    (clocks, temperature) hits every configuration alike: `warmup` untimed rounds (the second and later
    only while a run takes under 1 s), then up to `repeat` timed rounds, stopping once `budget_s` is spent
    after at least 2 (1 once the deadline passed). A configuration that raises is not run again and its error
    is recorded ("out of memory", or the exception; its traceback goes to stderr), so one broken configuration
    cannot cost a device call its other figures. Returns name -> {"times", "walls", "peak", "error"}."""
    res = {c: {"times": [], "walls": [], "peak": None, "error": None} for c in configs}

    def one(c):
        try:
            images, s, wall, peak = timer.run(configs[c], own_bytes.get(c, 0))
            del images
            return s, wall, peak
        except Exception as e:  # noqa: BLE001 -- recorded in the row, see above
            if is_oom(e):
                res[c]["error"] = "out of memory"
            else:
                traceback.print_exc()
                res[c]["error"] = error_text(e)
            free(timer.torch, timer.device)
            return None

    for _ in range(warmup):
        slow = False
        for c in configs:
            if res[c]["error"] is None:
                r = one(c)
                slow |= r is not None and r[1] > 1.0
        if slow:
            break
    t0 = time.monotonic()
    for i in range(repeat):
        if (i >= 2 and time.monotonic() - t0 > budget_s) or (i >= 1 and deadline.passed()):
            break
        for c in configs:
            if res[c]["error"] is not None:
                continue
            r = one(c)
            if r is not None:
                res[c]["times"].append(r[0])
                res[c]["walls"].append(r[1])
                if r[2] is not None:
                    res[c]["peak"] = max(res[c]["peak"] or 0.0, r[2])
    return res


def rounded(x, digits=5):
    return None if x is None else round(x, digits)


def dtype_name(dtype) -> str:
    import torch
    return {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}.get(dtype, str(dtype))


def error_text(e: BaseException) -> str:
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first}"[:300]


def guarded(emit, row: dict, fn, *args, **kwargs):
    """Run one step; if it raises, print the traceback and emit `row` with the error instead of stopping."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 -- reported in the JSON lines and the table
        traceback.print_exc()
        emit({**row, "error": error_text(e)})
        return None


def run_sections(runners: dict, args, device, emit, deadline, note) -> None:
    """Run `args.sections` in order (runners: name -> fn(args, device, emit, deadline)): past the deadline a section
    is a "skipped" row; an error of one section (SystemExit included) is printed and becomes its row, and the others
    still run; `note` gets each section's seconds; the device's memory is freed between sections."""
    import torch
    for name in args.sections:
        if deadline.passed():
            emit({"section": "skipped", "model": name, "error": "deadline"})
            continue
        t0 = time.monotonic()
        try:
            runners[name](args, device, emit, deadline)
        except (Exception, SystemExit) as e:  # noqa: BLE001 -- reported; the other sections still run
            traceback.print_exc()
            emit({"section": name, "model": name, "error": error_text(e)})
        note(f"section {name}: {time.monotonic() - t0:.1f} s")
        free(torch, device)


def exit_status(rows: list[dict]) -> int:
    """1 when a row holds an error other than the deadline, else 0."""
    return 1 if any(r.get("error", "deadline") != "deadline" for r in rows) else 0
