"""Guidance-quality benchmark on a built-in model (tiny-shapes or scenes-128): what each guider does, measured.

    python tools/guidance_sweep.py                # full sweep -> tools/benchmark_results/shapes_guidance.*
    python tools/guidance_sweep.py --model scenes --samples 300   # -> tools/benchmark_results/scenes_guidance.*
    python tools/guidance_sweep.py --quick --out /tmp/sweep   # a smoke run (few samples, two values per sweep)

For every point, `--samples` images (classes cycling 0..9, image i drawn with seed 1000 + i, sampler-node
defaults top_k 900 = off for these 512-code models, top_p 0.95) are generated and judged by the model's judge:
  accuracy    share judged as the class asked for
  frechet     Fréchet distance between judge features of the samples and of 2000 held-out real images
  evenness    Pielou evenness of the guidance magnitude (guidance/metrics.py), mean over images
  divergence  JS distance of the magnitude vs a background-resampled reference, with the judge's predicted
              foreground mask of each generated image (as the IGG paper used a segmenter), mean over images
Sweeps (x = the guidance scale, VAR's linear ramp unless said): cfg, cfg_constant (CFG with the same weight at
every scale: the linear ramp gives the first scale, which settles the class on a 4-scale model, no guidance),
cfg_cosine (CFG with the cosine ramp), igg, igg_window (IGG with the "auto" square window), softcfg (strength 1
over CFG), ssg (beta and its schedule, over the CFG with the best Fréchet distance of the CFG sweeps),
ssg_over_igg (IGG scale, SSG with the beta schedule the ssg sweep selected). `--sweeps` runs a subset. Writes
<out>/<model>_guidance.jsonl (one line per point), .md (table and findings) and .png (plot).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (makes the repository importable as `scalewise`)

from scalewise.guidance import CFG, Draw, Generation, IGG, SSG, SoftCFG  # noqa: E402
from scalewise.guidance.balance import balance_point, line_chart  # noqa: E402
from scalewise.guidance.heatmap import BACKGROUND  # noqa: E402
from scalewise.guidance.metrics import nanmean  # noqa: E402
from scalewise.guidance.runs import compare  # noqa: E402
from scalewise.models.builtin import SCENES_MODEL, SHAPES_MODEL  # noqa: E402
from scalewise.models.judge import frechet_distance, judge_images  # noqa: E402
from scalewise.tools.scenes.data import sample as scenes_images  # noqa: E402
from scalewise.tools.shapes.data import sample as shapes_images  # noqa: E402

SCALES = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)
BETAS = (0.0, 0.1, 0.2, 0.4, 0.8, 1.5)
BETA_SCHEDULES = ("constant", "linear_decay", "linear_increase")
SEED, REFERENCE_SEED = 1000, 77
TOP_K, TOP_P = 900, 0.95
CHUNK = 500
SCALE_SWEEPS = ("cfg", "cfg_constant", "cfg_cosine", "igg", "igg_window", "softcfg", "ssg_over_igg")
SWEEPS = ("cfg", "cfg_constant", "cfg_cosine", "igg", "igg_window", "softcfg", "ssg", "ssg_over_igg")
# model option -> (built-in model, real-image sampler (count, seed) -> (images, masks, labels))
MODELS = {"shapes": (SHAPES_MODEL, shapes_images), "scenes": (SCENES_MODEL, scenes_images)}


def measure(model, judge, guider, samples: int, reference, seed: int = SEED) -> dict:
    """Accuracy, Fréchet distance to `reference` (judge features float64 [M, D]), mean evenness and mean divergence
    of `samples` images of `guider` (None = unguided), classes cycling 0..num_classes-1, image i with seed
    `seed` + i."""
    labels = torch.arange(samples) % model.num_classes
    device = next(judge.parameters()).device
    verdicts, even, div = [], [], []

    def judged(images):  # the judge's verdict on each chunk; its masks give the divergence
        verdicts.append(judge_images(judge, images.to(device)))
        return verdicts[-1]["masks"]

    for start in range(0, samples, CHUNK):
        generation = Generation(labels[start:start + CHUNK], seed=seed + start, draw=Draw(top_k=TOP_K, top_p=TOP_P))
        (row,) = compare(model, [guider], generation, masks=judged).rows
        even.append(row.evenness)
        div.append(row.divergence)
    predicted = torch.cat([v["labels"].cpu() for v in verdicts])
    return {"accuracy": float((predicted == labels).float().mean()),
            "frechet": frechet_distance(torch.cat([v["features"] for v in verdicts]), reference),
            "evenness": nanmean(torch.cat(even)), "divergence": nanmean(torch.cat(div))}


def crossing(points: list[dict]) -> float | None:
    """Scale where evenness - divergence first changes sign (linear interpolation): guidance.balance's balance
    point when it is a crossing, else None."""
    balance = balance_point([p["x"] for p in points], [p["evenness"] for p in points],
                            [p["divergence"] for p in points])
    return balance.strength if balance is not None and balance.kind == "crossing" else None


def findings(rows: list[dict]) -> dict:
    out = {}
    for sweep in SCALE_SWEEPS:
        pts = [r for r in rows if r["sweep"] == sweep]
        if not pts:
            continue
        best = min(pts, key=lambda r: r["frechet"])
        cross = crossing(pts)
        xs = [p["x"] for p in pts]
        # "predicts" = the best-FD scale is one of the two swept scales around the crossing
        near = cross is not None and any(lo <= cross <= hi and best["x"] in (lo, hi) for lo, hi in zip(xs, xs[1:]))
        out[sweep] = {"best_frechet_x": best["x"], "best_frechet": best["frechet"], "crossing_x": cross,
                      "crossing_predicts_best": bool(near)}
    return out


COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
PANEL = (400, 380)


def _panel(img, index: int, title: str, series: list, xlabel: str) -> None:
    """One chart (guidance.balance.line_chart, y axis fitted) in cell `index` of the 3 x 2 figure."""
    series = [s for s in series if s[1]]
    if series:
        chart = line_chart(series, title=title, xlabel=xlabel, y_range=None, size=PANEL)
        img.paste(chart, (PANEL[0] * (index % 3), PANEL[1] * (index // 3)))


def plot(rows: list[dict], path: str):
    """The figure: accuracy, Fréchet distance, evenness and divergence against the guidance scale (a line per scale
    sweep), and SSG's Fréchet distance and accuracy against beta (a line per beta schedule)."""
    img = Image.new("RGB", (3 * PANEL[0], 2 * PANEL[1]), BACKGROUND)
    for i, metric in enumerate(("accuracy", "frechet", "evenness", "divergence")):
        series = [(s, [(r["x"], r[metric]) for r in rows if r["sweep"] == s], COLOURS[j % len(COLOURS)])
                  for j, s in enumerate(SCALE_SWEEPS)]
        _panel(img, (i // 2) * 3 + i % 2, f"{metric} vs guidance scale", series, "scale")
    for j, metric in enumerate(("frechet", "accuracy")):
        series = [(s, [(r["x"], r[metric]) for r in rows if r["sweep"] == "ssg" and r["beta_schedule"] == s],
                   COLOURS[k]) for k, s in enumerate(BETA_SCHEDULES)]
        _panel(img, 3 * j + 2, f"SSG over best CFG: {metric} vs beta", series, "beta")
    img.save(path)


def table(rows: list[dict], found: dict, meta: dict) -> str:
    """The markdown report: settings, one row per point, the findings per sweep, SSG's selection and (when
    measured) the spread between two seed sets at one point."""
    lines = [f"# Guidance sweep on the built-in {meta.get('model_name', 'tiny shapes')} model", "",
             f"{meta['samples']} samples per point, seeds {SEED}.., top_k {TOP_K} (off), top_p {TOP_P}; "
             f"reference: {meta['reference']} held-out real images; judge held-out accuracy on real images "
             f"{meta['judge_real_accuracy']:.3f}; {meta['seconds']:.0f} s on {meta['device']}.", "",
             "| sweep | guider | x | accuracy | Fréchet | evenness | divergence |", "|---|---|---|---|---|---|---|"]
    order = SWEEPS
    for r in sorted(rows, key=lambda r: order.index(r["sweep"])):  # stable: each sweep in its run order
        lines.append(f"| {r['sweep']} | {r['guider']} | {r['x']:g} | {r['accuracy']:.3f} | {r['frechet']:.2f} | "
                     f"{r['evenness']:.3f} | {r['divergence']:.3f} |")
    lines += ["", "| sweep | best Fréchet at x | best Fréchet | evenness = divergence at x | predicts the best? |",
              "|---|---|---|---|---|"]
    for sweep, f in found.items():
        cross = "no crossing in range" if f["crossing_x"] is None else f"{f['crossing_x']:.2f}"
        lines.append(f"| {sweep} | {f['best_frechet_x']:g} | {f['best_frechet']:.2f} | {cross} | "
                     f"{'yes' if f['crossing_predicts_best'] else 'no'} |")
    sel = meta.get("ssg_selected")
    if sel:
        lines += ["", f"SSG selects beta {sel['beta']:g} with the {sel['schedule']} schedule "
                      f"(best Fréchet distance over CFG {meta['cfg_best_x']:g} {meta['cfg_best_schedule']})."]
    for noise in meta.get("noise", []):
        lines += ["", f"Noise: {noise['guider']} measured again with seeds {noise['seed']}..: accuracy "
                      f"{noise['accuracy']:.3f} (vs {noise['first']['accuracy']:.3f}), Fréchet {noise['frechet']:.2f} "
                      f"(vs {noise['first']['frechet']:.2f}), evenness {noise['evenness']:.3f} (vs "
                      f"{noise['first']['evenness']:.3f}), divergence {noise['divergence']:.3f} (vs "
                      f"{noise['first']['divergence']:.3f})."]
    return "\n".join(lines) + "\n"


def write_outputs(rows: list[dict], meta: dict, out: str, model: str) -> dict:
    """Write <out>/<model>_guidance.{jsonl,md,png} from the rows and meta; returns the findings."""
    found = findings(rows)
    stem = os.path.join(out, f"{model}_guidance")
    with open(f"{stem}.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write(json.dumps({"meta": meta, "findings": found}) + "\n")
    with open(f"{stem}.md", "w") as f:
        f.write(table(rows, found, meta))
    plot(rows, f"{stem}.png")
    return found


def merge(folders: list[str], out: str, model: str) -> None:
    """Combine the <model>_guidance.jsonl of runs over disjoint sweeps (same samples, seeds and reference) into one
    set of outputs in `out`: rows in sweep order, the metas merged (seconds: the longest run; SSG selection, best
    CFG and noise from the run that measured them; the best CFG named with SSG's selection is that of the run that
    ran the ssg sweep). Raises ValueError when the runs' sample counts differ."""
    rows, meta = [], {}
    for folder in folders:
        with open(os.path.join(folder, f"{model}_guidance.jsonl")) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        part = lines[-1]["meta"]
        if meta and (part["samples"], part["reference"]) != (meta["samples"], meta["reference"]):
            raise ValueError(f"{folder}: {part['samples']} samples / {part['reference']} references, the others "
                             f"{meta['samples']} / {meta['reference']}")
        seconds = max(meta.get("seconds", 0.0), part["seconds"])
        ssg_base = {k: meta[k] for k in ("cfg_best_x", "cfg_best_schedule") if k in meta and "ssg_selected" in meta}
        meta = {**meta, **part, "seconds": seconds}  # keys only one run has (ssg_selected, noise, ...) survive
        if ssg_base and "ssg_selected" not in part:
            meta.update(ssg_base)  # the CFG that SSG ran over: the best of the run that ran the ssg sweep
        rows += lines[:-1]
    rows.sort(key=lambda r: SWEEPS.index(r["sweep"]))  # stable: each sweep keeps its run order
    meta["merged_from"] = len(folders)
    os.makedirs(out, exist_ok=True)
    print(json.dumps({"meta": meta, "findings": write_outputs(rows, meta, out, model)}), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=tuple(MODELS), default="shapes", help="which built-in model (default shapes)")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--reference", type=int, default=2000, help="held-out real images for the Fréchet distance")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmark_results"))
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 samples, two values per sweep")
    ap.add_argument("--scales", help="comma-separated guidance scales (default 0, 0.5, 1, 2, 3, 4, 6)")
    ap.add_argument("--betas", help="comma-separated SSG betas (default 0, 0.1, 0.2, 0.4, 0.8, 1.5)")
    ap.add_argument("--sweeps", help=f"comma-separated subset of {', '.join(SWEEPS)} (default all)")
    ap.add_argument("--noise-seed", type=int, help="measure the best CFG point again with this seed set (noise)")
    ap.add_argument("--merge", nargs="+", metavar="DIR",
                    help="combine the .jsonl of runs with disjoint --sweeps (run in parallel) into --out; no sampling")
    args = ap.parse_args(argv)
    if args.merge:
        merge(args.merge, args.out, args.model)
        return
    scales, betas, schedules = SCALES, BETAS, BETA_SCHEDULES
    if args.scales:
        scales = tuple(float(v) for v in args.scales.split(","))
    if args.betas:
        betas = tuple(float(v) for v in args.betas.split(","))
    if args.quick:
        args.samples, args.reference = 20, 100
        scales, betas, schedules = (0.0, 2.0), (0.0, 0.2), ("constant",)
    sweeps = tuple(args.sweeps.split(",")) if args.sweeps else SWEEPS
    if set(sweeps) - set(SWEEPS):
        ap.error(f"--sweeps: unknown {', '.join(sorted(set(sweeps) - set(SWEEPS)))}")
    builtin, real_images = MODELS[args.model]
    os.makedirs(args.out, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    t0 = time.time()
    model = builtin.load(device=device)
    judge = builtin.load_judge(device)
    ref_images, _, ref_labels = real_images(args.reference, REFERENCE_SEED)
    ref = judge_images(judge, torch.from_numpy(ref_images).to(device))
    reference = ref["features"]
    meta = {"model": args.model, "model_name": builtin.class_set, "samples": args.samples,
            "reference": args.reference, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "judge_real_accuracy": float((ref["labels"].cpu() == torch.from_numpy(ref_labels)).float().mean())}
    rows, done = [], {}

    def run(sweep, x, guider, **extra):
        if sweep not in sweeps:
            return
        name = guider.describe() if guider else "unguided"
        if name not in done:  # the same guider in two sweeps (unguided, SSG beta 0) is measured once
            done[name] = measure(model, judge, guider, args.samples, reference)
        row = {"sweep": sweep, "x": x, "guider": name, **extra, **done[name]}
        rows.append(row)
        print(json.dumps(row), flush=True)

    for x in scales:
        run("cfg", x, CFG(x) if x > 0 else None)
    for x in scales:
        run("cfg_constant", x, CFG(x, schedule="constant") if x > 0 else None)
    for x in scales:
        run("cfg_cosine", x, CFG(x, schedule="cosine") if x > 0 else None)
    cfg_rows = [r for r in rows if r["sweep"].startswith("cfg")]
    best_cfg = min(cfg_rows, key=lambda r: r["frechet"]) if cfg_rows else {"x": 0.0, "sweep": "cfg"}
    cfg_best = best_cfg["x"]
    cfg_schedule = {"cfg": "linear", "cfg_constant": "constant", "cfg_cosine": "cosine"}[best_cfg["sweep"]]
    for x in scales:
        run("igg", x, IGG(x))
        run("igg_window", x, IGG(x, window="auto"))
        run("softcfg", x, SoftCFG(base=CFG(x)) if x > 0 else None)
    for schedule in schedules:
        for beta in betas:
            if beta == 0 and schedule != schedules[0]:
                continue  # beta 0 is the same run whatever the schedule
            run("ssg", beta, SSG(beta, schedule=schedule,
                                 base=CFG(cfg_best, schedule=cfg_schedule) if cfg_best > 0 else None),
                beta_schedule=schedule)
    ssg_rows = [r for r in rows if r["sweep"] == "ssg"]
    if ssg_rows:
        best_ssg = min(ssg_rows, key=lambda r: r["frechet"])
        selected = {"beta": best_ssg["x"], "schedule": best_ssg["beta_schedule"]}
        meta.update(ssg_selected=selected)
    else:
        selected = {"beta": 0.1, "schedule": "constant"}  # the SSG node's default
    for x in scales:
        run("ssg_over_igg", x, SSG(selected["beta"], schedule=selected["schedule"], base=IGG(x)))
    if args.noise_seed is not None and cfg_rows:
        guider = CFG(cfg_best, schedule=cfg_schedule) if cfg_best > 0 else None
        again = measure(model, judge, guider, args.samples, reference, seed=args.noise_seed)
        meta["noise"] = [{"guider": best_cfg["guider"], "seed": args.noise_seed, **again,
                          "first": {k: best_cfg[k] for k in ("accuracy", "frechet", "evenness", "divergence")}}]
        print(json.dumps(meta["noise"][0]), flush=True)
    meta.update(seconds=time.time() - t0)
    if cfg_rows:
        meta.update(cfg_best_x=cfg_best, cfg_best_schedule=cfg_schedule)
    found = write_outputs(rows, meta, args.out, args.model)
    print(json.dumps({"meta": meta, "findings": found}), flush=True)


if __name__ == "__main__":
    main()
