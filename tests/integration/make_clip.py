"""Random-weight clip_l.safetensors and clip_g.safetensors with the exact layout of ComfyUI's SDXL text
encoders, written by ComfyUI's own classes. ComfyUI builds these encoders from fixed configs, so the files
must be full size (about 1.6 GB in fp16); no weights are downloaded.

    python make_clip.py COMFY_DIR OUT_DIR       (run with the ComfyUI venv's interpreter)
"""
import os
import sys

comfy_dir, out_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, comfy_dir)
from comfy.cli_args import args  # noqa: E402

args.cpu = True
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import comfy.sdxl_clip  # noqa: E402

torch.manual_seed(0)
with torch.device("meta"):
    model = comfy.sdxl_clip.SDXLClipModel(device="meta", dtype=torch.float16)
os.makedirs(out_dir, exist_ok=True)
for name in ("clip_l", "clip_g"):
    prefix = f"{name}.transformer."
    sd = {}
    for key, t in model.state_dict().items():
        if not key.startswith(prefix):
            continue
        if key.endswith("norm.weight") or key.endswith("layer_norm1.weight") or key.endswith("layer_norm2.weight"):
            value = torch.ones(t.shape)
        elif key.endswith(".bias"):
            value = torch.zeros(t.shape)
        else:
            value = torch.randn(t.shape) * 0.02
        sd[key[len(prefix):]] = value.to(torch.float16).contiguous()
    save_file(sd, os.path.join(out_dir, f"{name}.safetensors"))
print("ok", out_dir)
