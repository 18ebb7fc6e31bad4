"""VAR on a GPU: the pack against the official sampler, side by side in one process (issue 18).

    python tools/gpu_var_bench.py [--tiny] [--repo .gpu-ref/VAR] [--models d16,d30,d36] [--batches 1,8,32]
                                  [--guiders cfg,igg,softcfg,ssg,ssg+igg] [--deadline-s 330] [--out DIR]

For each model (official shapes with random weights: d16 and d30 at 256 px, d36 at 512 px; --tiny: depth 2,
width 128, VQ-VAE ch 32 with the same layouts and schedules) it

1. draws the weights once (the statistics of tools/tiny_weights.py) and loads the very same weights into the official
   `VAR`/`VQVAE` classes of the fetched repository (its key layout, through var_official_state_dict);
2. parity: fp32 greedy decoding (top_k 1, CFG 1.5, TF32 off) of both on the same class labels; the tokens
   must be equal at every scale (recorded from the official `sample_with_top_k_top_p_`);
3. speed: the official `autoregressive_infer_cfg` under fp16 autocast with fp32 weights (as its demo runs it)
   and the pack's `sample` with fp16 weights (cast once) and every guider, at each batch size; settings as the
   reference measurement of var.md 6.4 (random labels, CFG 1.5, top-k 900, top-p 0.96, decode included).
   Both stay loaded; runs are interleaved round-robin after warm-up; CUDA events time each run; the peak is
   torch.cuda.max_memory_allocated of the run minus what else is resident plus the model's own weights;
4. agreement: greedy tokens of the pack in bf16 and fp16 (the fp32 weights rounded) against the pack in fp32
   on the same inputs, every guider; and the official under fp16 autocast against the official in fp32.

JSON lines go to $OUT/gpu_var_bench.jsonl (OUT: the device tool's folder; else --out, else .gpu-out/);
a short table is printed LAST on stdout, with the issue's targets checked. Row fields: section (parity |
speed | agreement | skipped), impl (official | pack), model, resolution, batch, guider, dtype, and per
section: tokens_equal / agreement_per_scale / first_diverging_scale / token_agreement; s_per_batch (CUDA
event time, mean), s_per_batch_min, wall_s_per_batch, img_per_s, peak_gib, runs, speedup_vs_official
(official s / pack s, same batch), rel_time_vs_cfg (pack guider / pack cfg).

--deadline-s bounds the whole run (soft: work that would start later is reported as skipped), so the script
fits one device call. The official code is never committed: see tools/README.md for how to extract it.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (makes the repository importable as `scalewise`)
from scalewise.tools import benchmark as bm  # noqa: E402  (official-shape random models, guider settings)
from scalewise.tools import gpu_common as gc_  # noqa: E402
import torch  # noqa: E402

from scalewise.guidance import CFG, Draw, Generation, sample  # noqa: E402
from scalewise.models import SCHEDULES, var_official_state_dict, vqvae_official_state_dict  # noqa: E402

TAG = "gpu_var_bench"
CFG_SCALE, TOP_K, TOP_P = bm.CFG_SCALE, bm.TOP_K, bm.TOP_P
NUM_CLASSES = 1000
TARGETS = {"batch1_speedup": 4.0, "batch32_speedup": 2.5, "d36_batch8_speedup": 2.7, "guider_256": 1.10,
           "igg_512": 1.15, "d30_batch1_s": 0.050, "d30_batch1_peak_gib": 6.0}


def note(msg):
    gc_.note(TAG, msg)


# -- the official code ---------------------------------------------------------------------------

class Official:
    """The fetched repository's classes, imported from `repo` (its top-level `models` and `dist`)."""

    def __init__(self, repo: str):
        sys.path.insert(0, repo)
        import models as official_models  # noqa: F401  (the repository's package, not the pack's)
        import models.var as var_module
        from models.var import VAR
        from models.vqvae import VQVAE
        if not os.path.abspath(var_module.__file__).startswith(repo):
            raise SystemExit(f"`models` was imported from {var_module.__file__}, not from {repo}")
        self.VAR, self.VQVAE, self.var_module = VAR, VQVAE, var_module
        self.tokens = None

    def build(self, spec: dict, pack_model, device):
        """The official VQVAE and VAR of this shape holding the pack model's weights (fp32).

        Built with the classes directly (build_vae_var would switch off PyTorch's default initialisation
        for the whole process)."""
        patch_nums = SCHEDULES[spec["resolution"]]
        with torch.device(device):
            vae = self.VQVAE(vocab_size=4096, z_channels=32, ch=spec["vae_ch"], test_mode=True, share_quant_resi=4,
                             v_patch_nums=patch_nums)
            var = self.VAR(vae_local=vae, num_classes=NUM_CLASSES, depth=spec["depth"], embed_dim=64 * spec["heads"],
                           num_heads=spec["heads"], drop_rate=0.0, attn_drop_rate=0.0,
                           drop_path_rate=0.1 * spec["depth"] / 24, norm_eps=1e-6, shared_aln=spec["shared_adaln"],
                           cond_drop_rate=0.1, attn_l2_norm=True, patch_nums=patch_nums, flash_if_available=True,
                           fused_if_available=True)
        vae.load_state_dict({k: v.float() for k, v in
                             vqvae_official_state_dict(pack_model.vae, len(patch_nums)).items()}, strict=True)
        var.load_state_dict({k: v.float() for k, v in var_official_state_dict(pack_model.transformer).items()},
                            strict=True)
        return var.eval().requires_grad_(False), vae.eval().requires_grad_(False)

    def sample(self, var, labels: torch.Tensor, *, seed: int, top_k: int, top_p: float, autocast,
               record: bool = False):
        """autoregressive_infer_cfg as the official demo calls it; with `record`, the drawn tokens per scale."""
        wrapped = self.var_module.sample_with_top_k_top_p_
        if record:
            tokens = []

            def recording(*a, **kw):
                out = wrapped(*a, **kw)
                tokens.append(out[:, :, 0].clone())
                return out
            self.var_module.sample_with_top_k_top_p_ = recording
        try:
            with torch.inference_mode(), torch.autocast(labels.device.type, dtype=autocast or torch.float32,
                                                        enabled=autocast is not None, cache_enabled=True):
                images = var.autoregressive_infer_cfg(B=labels.shape[0], label_B=labels, g_seed=seed, cfg=CFG_SCALE,
                                                      top_k=top_k, top_p=top_p, more_smooth=False)
        finally:
            self.var_module.sample_with_top_k_top_p_ = wrapped
        if record:
            pns = var.patch_nums
            return images, [t.view(-1, p, p) for t, p in zip(tokens, pns)]
        return images


# -- steps ---------------------------------------------------------------------------------------

def labels_for(batch: int, seed: int) -> list[int]:
    return torch.randint(0, NUM_CLASSES, (batch,), generator=torch.Generator().manual_seed(seed)).tolist()


def set_tf32(on: bool):
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on


def parity(official: Official, var, pack32, spec, batch, device, emit):
    """fp32 greedy: tokens of the official sampler and of the pack on the same labels (TF32 off)."""
    set_tf32(False)
    try:
        labels = labels_for(batch, 7)
        _, ref = official.sample(var, torch.tensor(labels, device=device), seed=0, top_k=1, top_p=0.0,
                                 autocast=None, record=True)
        got = sample(pack32, CFG(CFG_SCALE), Generation(labels, seed=0, draw=Draw(top_k=1))).tokens
    finally:
        set_tf32(True)
    figures = gc_.agreement_figures(ref, got)
    emit({"section": "parity", "impl": "pack", "reference": "official", "model": spec["model"],
          "resolution": spec["resolution"], "batch": batch, "guider": "cfg", "dtype": "fp32", **figures})
    note(f"{spec['model']}: fp32 greedy parity with the official sampler: "
         f"{'tokens equal at every scale' if figures['tokens_equal'] else figures}")


def agreement(official: Official, var, pack32, spec, batch, guiders, device, emit, deadline):
    """Greedy tokens in bf16 / fp16 against fp32 on the same inputs: the pack (weights rounded), and the
    official under fp16 autocast (as its demo) against itself in fp32."""
    labels = labels_for(batch, 11)
    set_tf32(False)
    try:
        ref = {g: sample(pack32, bm.GUIDERS[g](), Generation(labels, seed=0,
                                                             draw=Draw(top_k=1))).tokens for g in guiders}
        _, off_ref = official.sample(var, torch.tensor(labels, device=device), seed=0, top_k=1, top_p=0.0,
                                     autocast=None, record=True)
    finally:
        set_tf32(True)
    base = {"section": "agreement", "model": spec["model"], "resolution": spec["resolution"], "batch": batch,
            "reference_dtype": "fp32"}
    for name in ("bf16", "fp16"):
        if deadline.passed():
            emit({**base, "section": "skipped", "impl": "pack", "dtype": name, "error": "deadline"})
            continue
        try:
            half = copy.deepcopy(pack32).to(bm.DTYPES[name])
            for g in guiders:
                got = sample(half, bm.GUIDERS[g](), Generation(labels, seed=0, draw=Draw(top_k=1))).tokens
                emit({**base, "impl": "pack", "guider": g, "dtype": name, **gc_.agreement_figures(ref[g], got)})
            del half
        except (RuntimeError, NotImplementedError) as e:  # no kernel for this dtype on this device
            emit({**base, "impl": "pack", "dtype": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"})
        gc_.free(torch, device)
    if device.type == "cuda":  # the official autocast on the CPU would be bf16 only: not its configuration
        _, got = official.sample(var, torch.tensor(labels, device=device), seed=0, top_k=1, top_p=0.0,
                                  autocast=torch.float16, record=True)
        emit({**base, "impl": "official", "guider": "cfg", "dtype": "fp16-autocast",
              **gc_.agreement_figures(off_ref, got)})


def speed(official: Official, var, vae, packh, spec, batches, guiders, args, device, emit, deadline):
    """Interleaved timing of the official sampler (CFG) and the pack (every guider), per batch."""
    timer = gc_.Timer(torch, device)
    autocast = torch.float16 if device.type == "cuda" else None  # the CPU runs the official in fp32
    dtypes = {"official": "fp32+autocast-fp16" if autocast else "fp32", "pack": gc_.dtype_name(packh.dtype)}
    own = {("official", "cfg"): gc_.module_bytes(var, vae)}
    own.update({("pack", g): gc_.module_bytes(packh) for g in guiders})
    for batch in batches:
        if deadline.passed():
            emit({"section": "skipped", "model": spec["model"], "batch": batch, "error": "deadline"})
            continue
        seed = [0]

        def labels():
            seed[0] += 1
            return labels_for(batch, 1000 + seed[0])

        configs = {("official", "cfg"): lambda: official.sample(
            var, torch.tensor(labels(), device=device), seed=seed[0], top_k=TOP_K, top_p=TOP_P, autocast=autocast)}
        for g in guiders:
            configs[("pack", g)] = (lambda g=g: sample(packh, bm.GUIDERS[g](), Generation(labels(), seed=seed[0],
                                                                                          draw=Draw(top_k=TOP_K,
                                                                                                    top_p=TOP_P))).images)
        t0 = time.monotonic()
        res = gc_.interleaved(timer, configs, own, warmup=args.warmup, repeat=args.repeat, budget_s=args.budget_s,
                              deadline=deadline, is_oom=is_oom)
        ref_s = gc_.stats(res[("official", "cfg")]["times"])[0]
        cfg_s = gc_.stats(res[("pack", "cfg")]["times"])[0]
        for (impl, g), r in res.items():
            s, s_min = gc_.stats(r["times"])
            row = {"section": "speed", "impl": impl, "model": spec["model"], "resolution": spec["resolution"],
                   "batch": batch, "guider": g, "dtype": dtypes[impl], "s_per_batch": _r(s),
                   "s_per_batch_min": _r(s_min), "wall_s_per_batch": _r(gc_.stats(r["walls"])[0]),
                   "img_per_s": _r(batch / s if s else None, 3), "peak_gib": _r(r["peak"], 4),
                   "runs": len(r["times"]),
                   "speedup_vs_official": _r(ref_s / s if s and ref_s and impl == "pack" else None, 3),
                   "rel_time_vs_cfg": _r(s / cfg_s if s and cfg_s and impl == "pack" else None, 4)}
            if r["error"]:
                row["error"] = r["error"]
            emit(row)
        note(f"{spec['model']} batch {batch}: {time.monotonic() - t0:.1f} s")


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def _r(x, digits=5):
    return None if x is None else round(x, digits)


# -- the table -----------------------------------------------------------------------------------

def table(rows, tiny: bool) -> str:
    out = []
    speed_rows = [r for r in rows if r["section"] == "speed"]
    if speed_rows:
        head = (f"{'model':<14}{'px':>5}{'batch':>6} {'impl':<9}{'guider':<8}{'dtype':<19}{'s/batch':>9}{'img/s':>9}"
                f"{'peak GiB':>9}{'x offic.':>9}{'t/cfg':>7}")
        out += [head, "-" * len(head)]
        for r in speed_rows:
            out.append(f"{r['model']:<14}{r['resolution']:>5}{r['batch']:>6} {r['impl']:<9}{r['guider']:<8}"
                       f"{r['dtype']:<19}{gc_.fmt(r['s_per_batch'], '9.4f')}{gc_.fmt(r['img_per_s'], '9.2f')}"
                       f"{gc_.fmt(r['peak_gib'], '9.2f')}{gc_.fmt(r['speedup_vs_official'], '9.2f')}"
                       f"{gc_.fmt(r['rel_time_vs_cfg'], '7.2f')}" + (f"  {r['error']}" if "error" in r else ""))
    for r in rows:
        if r["section"] == "parity" and "error" not in r:
            out.append(f"parity {r['model']} batch {r['batch']} fp32 greedy vs official: "
                       + ("EQUAL at every scale" if r["tokens_equal"]
                          else f"DIFFER from scale {r['first_diverging_scale']} ({r['token_agreement']:.4f})"))
    agree = [r for r in rows if r["section"] == "agreement" and "error" not in r]
    for r in agree:
        out.append(f"agreement {r['impl']:<8} {r['model']:<13} b{r['batch']:<3} {r.get('guider', '-'):<8}"
                   f"{r['dtype']:<14} vs fp32: {r['token_agreement']:.4f} (first diverging scale "
                   f"{r['first_diverging_scale']})")
    for r in rows:
        if "error" in r and r["section"] != "speed":
            out.append(f"{r['section']} {r.get('impl', '')} {r['model']} {r.get('batch', '')} {r.get('dtype', '')}: "
                       f"{r['error']}")
    out += targets(speed_rows, rows, tiny)
    return "\n".join(out)


def targets(speed_rows, rows, tiny) -> list[str]:
    """The issue's targets against what was measured (tiny models: shown, not judged)."""
    def get(model_suffix, batch, impl="pack", guider="cfg"):
        for r in speed_rows:
            if r["model"].endswith(model_suffix) and r["batch"] == batch and r["impl"] == impl and r["guider"] == guider:
                return r
        return None

    lines, T = ["targets (issue 18)" + (" -- tiny models: figures shown, not judged" if tiny else "")], TARGETS
    verdict = lambda ok: "n/a" if ok is None else ("ok" if ok else "MISSED")  # noqa: E731
    for r in speed_rows:
        if r["impl"] != "pack" or r["guider"] != "cfg" or r["speedup_vs_official"] is None:
            continue
        want = {1: T["batch1_speedup"], 32: T["batch32_speedup"]}.get(r["batch"])
        if r["batch"] == 8 and r["resolution"] == 512:
            want = T["d36_batch8_speedup"]
        if want:
            ok = None if tiny else r["speedup_vs_official"] >= want
            lines.append(f"  {r['model']} batch {r['batch']}: {r['speedup_vs_official']:.2f}x the official "
                         f"(target >= {want}x) {verdict(ok)}")
    for r in speed_rows:
        if r["impl"] != "pack" or r["guider"] == "cfg" or r["rel_time_vs_cfg"] is None:
            continue
        limit = T["guider_256"] if r["resolution"] == 256 else (T["igg_512"] if r["guider"] == "igg" else None)
        if limit:
            ok = None if tiny else r["rel_time_vs_cfg"] <= limit
            lines.append(f"  {r['model']} batch {r['batch']} {r['guider']}: {r['rel_time_vs_cfg']:.2f}x CFG's time "
                         f"(target <= {limit}x) {verdict(ok)}")
    d30 = get("d30", 1)
    if d30 and d30["s_per_batch"] is not None:
        lines.append(f"  var-d30 batch 1: {d30['s_per_batch'] * 1000:.1f} ms (target <= 50 ms on an H100-class GPU) "
                     f"{verdict(d30['s_per_batch'] <= T['d30_batch1_s'])}")
        if d30["peak_gib"] is not None:
            lines.append(f"  var-d30 batch 1 peak: {d30['peak_gib']:.2f} GiB (target <= 6 GiB) "
                         f"{verdict(d30['peak_gib'] <= T['d30_batch1_peak_gib'])}")
    for r in rows:
        if r["section"] == "parity" and "error" not in r:
            lines.append(f"  {r['model']} fp32 greedy parity: {verdict(r['tokens_equal'])}")
    return lines


# -- main ----------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=os.path.join(gc_.ROOT, ".gpu-ref", "VAR"), help="the official VAR code")
    p.add_argument("--tiny", action="store_true", help="depth-2 models of the official layouts (CPU check)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None)
    p.add_argument("--models", default="d16,d30,d36")
    p.add_argument("--batches", default=None, help="default 1,8,32 (tiny: 1,2)")
    p.add_argument("--guiders", default=",".join(bm.GUIDERS))
    p.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None,
                   help="the pack's weights in the timing (default fp16 on CUDA, fp32 on the CPU)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up rounds (the 2nd only where a run takes < 1 s)")
    p.add_argument("--repeat", type=int, default=5, help="timed rounds at most")
    p.add_argument("--budget-s", type=float, default=20.0,
                   help="timed rounds stop after this many seconds per (model, batch), 2 rounds at least")
    p.add_argument("--parity-batch", type=int, default=2)
    p.add_argument("--agreement-batch", type=int, default=8)
    p.add_argument("--no-agreement", action="store_true")
    p.add_argument("--deadline-s", type=float, default=330.0, help="soft limit of the whole run")
    p.add_argument("--out", default=None, help="folder of the JSON lines (default $OUT, else .gpu-out/)")
    args = p.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cpu" and not args.tiny:
        p.error("the official shapes on the CPU take hours: pass --tiny (or run on a GPU)")
    args.models = bm.model_names(args.models)
    if any(m not in bm.OFFICIAL for m in args.models):
        p.error("VAR models only (d16, d20, d24, d30, d36)")
    args.batches = [int(b) for b in bm.csv(args.batches or ("1,2" if args.tiny else "1,8,32"))]
    guiders = bm.csv(args.guiders)
    for g in guiders:
        if g not in bm.GUIDERS:
            p.error(f"unknown guider {g!r}: choose from {', '.join(bm.GUIDERS)}")
    args.guiders = ["cfg"] + [g for g in dict.fromkeys(guiders) if g != "cfg"]
    args.agreement_guiders = args.guiders
    if args.tiny:
        args.warmup, args.repeat = min(args.warmup, 1), min(args.repeat, 1)
        args.agreement_batch = min(args.agreement_batch, 2)
        if args.device == "cpu":  # fp16 convolutions (the decode) crawl on most CPUs: one guider is the check
            args.agreement_guiders = ["cfg"]
    args.dtype = args.dtype or ("fp16" if args.device == "cuda" else "fp32")
    return args


def one_model(official, spec, args, device, emit, deadline):
    """Build, parity, agreement and speed of one model; each step's failure is reported, the next still runs."""
    t0 = time.monotonic()
    pack32 = bm.build_model(spec, device, torch.float32)
    var, vae = official.build(spec, pack32, device)
    note(f"built {spec['model']} (pack and official, fp32) in {time.monotonic() - t0:.1f} s")
    row = {"model": spec["model"], "resolution": spec["resolution"]}
    gc_.guarded(emit, {**row, "section": "parity"}, parity, official, var, pack32, spec, args.parity_batch, device,
                emit)
    if not args.no_agreement:
        gc_.guarded(emit, {**row, "section": "agreement"}, agreement, official, var, pack32, spec,
                    args.agreement_batch, args.agreement_guiders, device, emit, deadline)
    packh = copy.deepcopy(pack32).to(bm.DTYPES[args.dtype])
    del pack32
    gc_.free(torch, device)
    speed(official, var, vae, packh, spec, args.batches, args.guiders, args, device, emit, deadline)


def main(argv=None) -> int:
    args = parse_args(argv)
    deadline = gc_.Deadline(args.deadline_s)
    repo = gc_.require_repo(args.repo, "VAR", os.path.join("models", "var.py"))
    device = torch.device(args.device)
    official = Official(repo)
    set_tf32(True)  # the official demo's setting, for the timed runs
    out = gc_.out_dir(args.out)
    dev_name = bm.device_name(device)
    emit = gc_.Emitter(os.path.join(out, "gpu_var_bench.jsonl"),
                       {"device": dev_name, "device_type": device.type, "tiny": args.tiny, "torch": torch.__version__})
    note(f"{dev_name}, torch {torch.__version__}, official code from {repo}, output {emit.path}")
    try:
        for spec in bm.model_plan(args.models, args.tiny):
            if deadline.passed():
                emit({"section": "skipped", "model": spec["model"], "error": "deadline"})
                continue
            gc_.guarded(emit, {"section": "model", "model": spec["model"]}, one_model, official, spec, args,
                        device, emit, deadline)
            gc_.free(torch, device)
    finally:
        emit.close()
    print(table(emit.rows, args.tiny), flush=True)
    return gc_.exit_status(emit.rows)


if __name__ == "__main__":
    sys.exit(main())
