"""Train a built-in model (VQ-VAE, VAR, judge) and write it as fp16 safetensors.

    python tools/train_shapes.py                 # tiny-shapes: everything (about 85 min on 2 CPU cores) into
                                                 # models/shapes/ (the model and its judge)
    python tools/train_shapes.py --model scenes  # scenes-128 into models/scenes/ (stages vqvae, vqvae_more, var,
                                                 # judge; times in tools/benchmark_results/NOTEBOOK.md)
    python tools/train_shapes.py --only judge    # one stage; the VAR stage reuses the VQ-VAE already written
    python tools/train_shapes.py --out /tmp/x --scale 0.05   # a quick smoke run with 5 % of the steps

Seeded: the same command on the same torch build gives the same weights.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (makes the repository importable as `scalewise`)

from scalewise.models import load_var_transformer, load_vqvae, var_official_state_dict, vqvae_official_state_dict  # noqa: E402
from scalewise.models import scenes as scenes_files  # noqa: E402
from scalewise.models import shapes as shapes_files  # noqa: E402
from scalewise.tools.shapes import train as T  # noqa: E402
from scalewise.tools.scenes import train as scenes_train  # noqa: E402
from scalewise.models.judge import judge_images  # noqa: E402

STAGES = ("vqvae", "vqvae_more", "decoder", "var", "var_more", "judge")
# var_more: the VAR trained by the var stage, continued on twice as many fresh images at a lower rate
MORE_STEPS, MORE_LR, MORE_COUNT, MORE_SEED_OFFSET = 2400, 6e-4, 32_000, 1000

# Per built-in model: its training spec, its files and the settings of each stage (steps at --scale 1).
MODELS = {
    "shapes": dict(spec=T.SHAPES_SPEC, files=shapes_files, stages=("vqvae", "decoder", "var", "var_more", "judge"),
                   vqvae=dict(steps=1500, batch=32),
                   var=dict(steps=1000, batch=128, count=16_000), judge=dict(steps=1000, batch=64, pool=0),
                   init=None),
    # scenes-128: times per stage in tools/benchmark_results/NOTEBOOK.md; no decoder or var_more stage; vqvae_more continues the VQ-VAE on
    # new images with the colour term (tools/shapes/train.py train_vqvae)
    "scenes": dict(spec=scenes_train.SCENES_SPEC, files=scenes_files, stages=("vqvae", "vqvae_more", "var", "judge"),
                   vqvae=dict(steps=600, batch=16), vqvae_more=dict(steps=500, lr=5e-4, colour_weight=4.0),
                   var=dict(steps=1500, batch=48, count=10_000),
                   judge=dict(steps=1800, batch=48, pool=4_000), init=scenes_train.warm_start_from_tiny),
}


def channel_mse(recon: torch.Tensor, images: torch.Tensor) -> list[float]:
    """Mean squared error per RGB channel between two image batches [N, 3, H, W] in [0, 1]."""
    return torch.mean((recon.float() - images.float()) ** 2, dim=(0, 2, 3)).tolist()


def save_vqvae(vae, path, held_images, stage, patch_nums):
    """Write `vae` as fp16 safetensors in the official layout and print its held-out reconstruction MSE (all, per
    channel) through the fp16 file's weights."""
    save_file(T.fp16_state_dict(vqvae_official_state_dict(vae, len(patch_nums))), path)
    vae = load_vqvae(path)
    with torch.no_grad():
        recon = torch.cat([vae.tokens_to_image(vae.image_to_tokens(part, patch_nums), patch_nums)
                           for part in held_images.split(100)])
    per_channel = ", ".join(f"{c} {m:.5f}" for c, m in zip("RGB", channel_mse(recon, held_images)))
    print(f"{stage}: held-out reconstruction MSE {torch.mean((recon - held_images) ** 2).item():.5f} "
          f"({per_channel})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=tuple(MODELS), default="shapes", help="which built-in model (default shapes)")
    ap.add_argument("--only", choices=STAGES, action="append", help="stages to run (default: all of the model's)")
    ap.add_argument("--out", help="one folder for all .safetensors files (default: where the pack keeps them)")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the training steps (smoke runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--vqvae-steps", type=int, help="default: the model's (shapes 1500)")
    ap.add_argument("--var-steps", type=int, help="default: the model's (shapes 1000)")
    ap.add_argument("--var-lr", type=float, default=1e-3)
    ap.add_argument("--var-count", type=int, help="rendered images in the VAR's token set (shapes 16 000)")
    ap.add_argument("--judge-steps", type=int, help="default: the model's (shapes 1000)")
    ap.add_argument("--resume-vqvae", help="continue training this VQ-VAE file (new schedule, new images)")
    ap.add_argument("--resume-offset", type=int, default=1200, help="data offset of the continued run")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = MODELS[args.model]
    spec, files = plan["spec"], plan["files"]
    patch_nums = spec.patch_nums
    stages = args.only or plan["stages"]
    if set(stages) - set(plan["stages"]):
        ap.error(f"--model {args.model} has the stages {', '.join(plan['stages'])}")
    paths = {name: os.path.join(args.out or os.path.dirname(f), os.path.basename(f))
             for name, f in (("var", files.VAR_FILE), ("vqvae", files.VAE_FILE), ("judge", files.JUDGE_FILE))}
    for folder in {os.path.dirname(p) for p in paths.values()}:
        os.makedirs(folder, exist_ok=True)
    steps = lambda n: max(1, round(n * args.scale))  # noqa: E731
    held_images, _, held_labels = T.held_out(max(50, round(500 * min(1.0, args.scale * 4))), spec)
    t0 = time.time()
    clock = lambda stage, start: print(f"{stage}: stage took {time.time() - start:.0f} s")  # noqa: E731
    if "vqvae" in stages:
        start = time.time()
        resume = load_vqvae(args.resume_vqvae) if args.resume_vqvae else None
        vae = T.train_vqvae(steps=steps(args.vqvae_steps or plan["vqvae"]["steps"]), batch=plan["vqvae"]["batch"],
                            seed=args.seed, resume=resume, spec=spec, init=plan["init"],
                            first_step=args.resume_offset if resume is not None else 0)
        save_vqvae(vae, paths["vqvae"], held_images, "vqvae", patch_nums)
        clock("vqvae", start)
    if "vqvae_more" in stages:
        start, more = time.time(), plan["vqvae_more"]
        vae = T.train_vqvae(steps=steps(more["steps"]), batch=plan["vqvae"]["batch"], lr=more["lr"], seed=args.seed,
                            resume=load_vqvae(paths["vqvae"]), first_step=plan["vqvae"]["steps"], spec=spec,
                            colour_weight=more["colour_weight"])
        save_vqvae(vae, paths["vqvae"], held_images, "vqvae_more", patch_nums)
        clock("vqvae_more", start)
    if "decoder" in stages:
        start = time.time()
        vae = T.train_decoder(load_vqvae(paths["vqvae"]), steps=steps(400), seed=args.seed, spec=spec)
        save_vqvae(vae, paths["vqvae"], held_images, "decoder", patch_nums)
        clock("decoder", start)
    for stage in ("var", "var_more"):
        if stage not in stages:
            continue
        start = time.time()
        more = stage == "var_more"
        vae = load_vqvae(paths["vqvae"])  # the fp16 file users get, so tokens match what ships
        count = MORE_COUNT if more else (args.var_count or plan["var"]["count"])
        count = max(100, round(count * min(1.0, args.scale * 4)))
        labels, tokens, inputs = T.encode_tokens(vae, count, seed=T.VAR_SEED + (MORE_SEED_OFFSET if more else 0),
                                                 spec=spec)
        used = [len(torch.unique(tokens[:, o:o + p * p])) for o, p in
                zip(spec.var_config.scale_offsets, patch_nums)]
        print(f"{stage}: {len(labels)} token sequences; distinct codes per scale {used}; "
              f"encoded in {time.time() - start:.0f} s")
        resume = load_var_transformer(paths["var"]) if more else None
        var = T.train_var(labels, tokens, inputs, steps=steps(MORE_STEPS if more else
                                                              (args.var_steps or plan["var"]["steps"])),
                          batch=plan["var"]["batch"], seed=args.seed, resume=resume,
                          lr=MORE_LR if more else args.var_lr, spec=spec)
        save_file(T.fp16_state_dict(var_official_state_dict(var)), paths["var"])
        clock(stage, start)
    if "judge" in stages:
        start = time.time()
        pool_size = max(100, round(plan["judge"]["pool"] * min(1.0, args.scale * 4))) if plan["judge"]["pool"] else 0
        batches = scenes_train.Pool(pool_size).batch if pool_size else None
        judge = T.train_judge(steps=steps(args.judge_steps or plan["judge"]["steps"]), batch=plan["judge"]["batch"],
                              seed=args.seed, spec=spec, batches=batches)
        save_file(T.fp16_state_dict(judge.state_dict()), paths["judge"])
        acc = (judge_images(judge, held_images)["labels"] == held_labels).float().mean().item()
        print(f"judge: held-out accuracy {acc:.4f}")
        if os.path.exists(paths["vqvae"]):  # the ceiling for generated images: the VQ-VAE's reconstructions
            vae = load_vqvae(paths["vqvae"])
            with torch.no_grad():
                recon = torch.cat([vae.tokens_to_image(vae.image_to_tokens(part, patch_nums), patch_nums)
                                   for part in held_images.split(100)])
            acc = (judge_images(judge, recon)["labels"] == held_labels).float().mean().item()
            print(f"judge: accuracy on the VQ-VAE's reconstructions of the held-out images {acc:.4f}")
        clock("judge", start)
    print(f"done in {time.time() - t0:.0f} s: {', '.join(paths[s] for s in stages if s in paths)}")


if __name__ == "__main__":
    main()
