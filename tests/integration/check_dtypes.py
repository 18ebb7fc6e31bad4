"""Prints the loaders' dtype choice (nodes/common.pick_dtypes) for simulated devices as one JSON line.

    python check_dtypes.py COMFY_DIR PACK_DIR      (ComfyUI venv)
"""
import json
import sys

from check_support import comfy_on_cpu, load_pack

comfy_dir, pack_dir = sys.argv[1], sys.argv[2]
comfy_on_cpu(comfy_dir)
import comfy.model_management as mm  # noqa: E402

load_pack(pack_dir)
from scalewise.nodes.common import pick_dtypes  # noqa: E402

DEVICES = {"cpu": (False, False), "gpu with bf16 (A100, RTX 30xx+)": (True, True),
           "gpu without bf16 (V100, T4, RTX 20xx)": (False, True)}
out = {}
for name, (bf16, fp16) in DEVICES.items():
    mm.should_use_bf16 = lambda device=None, *a, _v=bf16, **k: _v
    mm.should_use_fp16 = lambda device=None, *a, _v=fp16, **k: _v
    for family in ("var", "switti"):
        for choice in ("auto", "fp16"):
            p = pick_dtypes(choice, "x", family)
            out[f"{name}|{family}|{choice}"] = [str(d).replace("torch.", "") for d in (p.transformer, p.vae)]
print(json.dumps(out))
