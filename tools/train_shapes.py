"""Train the built-in shapes models (VQ-VAE, VAR, judge) and write them as fp16 safetensors.

    python tools/train_shapes.py                 # everything (about 85 min on 2 CPU cores) into
                                                 # models/shapes/ (the model and its judge)
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
from scalewise.models.shapes import PATCH_NUMS, VAE_FILE, VAR_FILE  # noqa: E402
from scalewise.models.shapes import JUDGE_FILE  # noqa: E402
from scalewise.tools.shapes import train as T  # noqa: E402
from scalewise.models.shapes.judge import judge_images  # noqa: E402

STAGES = ("vqvae", "decoder", "var", "var_more", "judge")
# var_more: the VAR trained by the var stage, continued on twice as many fresh images at a lower rate
MORE_STEPS, MORE_LR, MORE_COUNT, MORE_SEED_OFFSET = 2400, 6e-4, 32_000, 1000


def save_vqvae(vae, path, held_images, stage):
    save_file(T.fp16_state_dict(vqvae_official_state_dict(vae, len(PATCH_NUMS))), path)
    with torch.no_grad():
        recon = vae.tokens_to_image(vae.image_to_tokens(held_images, PATCH_NUMS), PATCH_NUMS)
    print(f"{stage}: held-out reconstruction MSE {torch.mean((recon - held_images) ** 2).item():.5f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=STAGES, action="append", help="stages to run (default: all)")
    ap.add_argument("--out", help="one folder for all .safetensors files (default: where the pack keeps them)")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the training steps (smoke runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vqvae-steps", type=int, default=1500)
    ap.add_argument("--var-steps", type=int, default=1000)
    ap.add_argument("--var-lr", type=float, default=1e-3)
    ap.add_argument("--var-count", type=int, default=16_000, help="rendered images in the VAR's token set")
    ap.add_argument("--resume-vqvae", help="continue training this VQ-VAE file (new schedule, new images)")
    ap.add_argument("--resume-offset", type=int, default=1200, help="data offset of the continued run")
    args = ap.parse_args(argv)
    stages = args.only or STAGES
    paths = {name: os.path.join(args.out or os.path.dirname(f), os.path.basename(f))
             for name, f in (("var", VAR_FILE), ("vqvae", VAE_FILE), ("judge", JUDGE_FILE))}
    for folder in {os.path.dirname(p) for p in paths.values()}:
        os.makedirs(folder, exist_ok=True)
    steps = lambda n: max(1, round(n * args.scale))  # noqa: E731
    held_images, _, held_labels = T.held_out(500)
    t0 = time.time()
    if "vqvae" in stages:
        resume = load_vqvae(args.resume_vqvae) if args.resume_vqvae else None
        vae = T.train_vqvae(steps=steps(args.vqvae_steps), seed=args.seed, resume=resume,
                            first_step=args.resume_offset if resume is not None else 0)
        save_vqvae(vae, paths["vqvae"], held_images, "vqvae")
    if "decoder" in stages:
        vae = T.train_decoder(load_vqvae(paths["vqvae"]), steps=steps(400), seed=args.seed)
        save_vqvae(vae, paths["vqvae"], held_images, "decoder")
    for stage in ("var", "var_more"):
        if stage not in stages:
            continue
        more = stage == "var_more"
        vae = load_vqvae(paths["vqvae"])  # the fp16 file users get, so tokens match what ships
        count = MORE_COUNT if more else args.var_count
        count = max(100, round(count * min(1.0, args.scale * 4)))
        labels, tokens, inputs = T.encode_tokens(vae, count, seed=T.VAR_SEED + (MORE_SEED_OFFSET if more else 0))
        used = [len(torch.unique(tokens[:, o:o + p * p])) for o, p in
                zip(T.VAR_CONFIG.scale_offsets, PATCH_NUMS)]
        print(f"{stage}: {len(labels)} token sequences; distinct codes per scale {used}")
        resume = load_var_transformer(paths["var"]) if more else None
        var = T.train_var(labels, tokens, inputs, steps=steps(MORE_STEPS if more else args.var_steps),
                          seed=args.seed, resume=resume, lr=MORE_LR if more else args.var_lr)
        save_file(T.fp16_state_dict(var_official_state_dict(var)), paths["var"])
    if "judge" in stages:
        judge = T.train_judge(steps=steps(1000), seed=args.seed)
        save_file(T.fp16_state_dict(judge.state_dict()), paths["judge"])
        acc = (judge_images(judge, held_images)["labels"] == held_labels).float().mean().item()
        print(f"judge: held-out accuracy {acc:.4f}")
    print(f"done in {time.time() - t0:.0f} s: {', '.join(paths[s] for s in stages if s in paths)}")


if __name__ == "__main__":
    main()
