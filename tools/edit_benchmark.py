"""Editing benchmark on the built-in tiny-shapes model: in-painting a star into circle pictures.

    python tools/edit_benchmark.py [--pictures 200] [--seed 0]

Pictures: `--pictures` circles from the pack's shape generator (tools/shapes/data.py, numpy seed `--seed`), each
with its exact object mask as the edit mask (1 = regenerate). Each is in-painted as a "star" with CFG 3 (constant
and VAR's linear ramp), top_k 900 (off for this 512-code model), top_p 0.8 (the built-in model's example setting),
image i with seed i, under both mask rules. Printed per configuration (one JSON line each):

  star            share of the edits the shipped judge classifies as a star
  kept_change     mean |edit - picture| over the pixels of the kept finest-scale tokens (RGB in [0, 1])
  kept_recon      the VQ-VAE's own reconstruction error |decode(encode(picture)) - picture| over the same pixels
  kept_vs_recon   mean |edit - reconstruction| there (what the regenerated tokens change through the decoder)
  recon_whole     the reconstruction error over the whole picture
  kept_tokens     mean share of the finest scale's tokens kept
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (makes the repository importable as `scalewise`)

from safetensors.torch import load_file  # noqa: E402

from scalewise.guidance import CFG, Draw, Edit, Generation, sample  # noqa: E402
from scalewise.guidance.editing import plan_edit  # noqa: E402
from scalewise.models.shapes import CLASS_NAMES, load_shapes_model  # noqa: E402
from scalewise.tools.shapes import JUDGE_FILE  # noqa: E402
from scalewise.tools.shapes.data import render  # noqa: E402
from scalewise.models.judge import Judge, judge_images  # noqa: E402

CHUNK = 100


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pictures", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0, help="numpy seed of the circle pictures")
    args = ap.parse_args(argv)
    model = load_shapes_model()
    judge = Judge(len(CLASS_NAMES))
    judge.load_state_dict({k: v.float() for k, v in load_file(JUDGE_FILE).items()})
    judge.eval()
    star = CLASS_NAMES.index("star")
    images, masks = render(np.full(args.pictures, CLASS_NAMES.index("circle")), np.random.default_rng(args.seed))
    images, masks = torch.from_numpy(images), torch.from_numpy(masks).float()
    side = model.patch_nums[-1]
    factor = model.image_size // side
    recon = torch.cat([model.vae.tokens_to_image(model.vae.image_to_tokens(part, model.patch_nums), model.patch_nums)
                       for part in images.split(CHUNK)])
    recon_whole = float((recon - images).abs().mean())
    for rule in ("official", "strict"):
        for schedule in ("constant", "linear"):
            start = time.time()
            labels, kept_change, kept_recon, kept_vs_recon, kept_share = [], [], [], [], []
            for first in range(0, args.pictures, CHUNK):
                part, part_mask = images[first:first + CHUNK], masks[first:first + CHUNK]
                n = part.shape[0]
                out = sample(model, CFG(3.0, schedule=schedule), Generation([star], seed=first, batch_size=n,
                                                                            draw=Draw(top_k=900, top_p=0.8), edit=Edit(part, mask=part_mask, mask_rule=rule)))
                labels.append(judge_images(judge, out.images)["labels"])
                keep = plan_edit(model, Edit(part, part_mask, 1.0, rule), n).keep[-1]
                pixels = keep.repeat_interleave(factor, 1).repeat_interleave(factor, 2)
                kept_share.append(keep.float().mean((1, 2)))
                rec = recon[first:first + n]
                kept_change.append((out.images - part).abs().mean(1)[pixels])
                kept_recon.append((rec - part).abs().mean(1)[pixels])
                kept_vs_recon.append((out.images - rec).abs().mean(1)[pixels])
            row = {"rule": rule, "cfg": 3.0, "schedule": schedule, "pictures": args.pictures,
                   "star": round(float((torch.cat(labels) == star).float().mean()), 4),
                   "kept_change": round(float(torch.cat(kept_change).mean()), 5),
                   "kept_recon": round(float(torch.cat(kept_recon).mean()), 5),
                   "kept_vs_recon": round(float(torch.cat(kept_vs_recon).mean()), 5),
                   "recon_whole": round(recon_whole, 5),
                   "kept_tokens": round(float(torch.cat(kept_share).mean()), 4),
                   "seconds": round(time.time() - start, 1)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
