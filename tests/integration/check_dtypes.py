"""Prints the loaders' dtype choice (nodes/common.pick_dtypes) for simulated devices as one JSON line.

    python check_dtypes.py COMFY_DIR PACK_DIR      (ComfyUI venv)
"""
import importlib.util
import json
import sys

comfy_dir, pack_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, comfy_dir)
from comfy.cli_args import args  # noqa: E402

args.cpu = True
import comfy.model_management as mm  # noqa: E402

spec = importlib.util.spec_from_file_location("scalewise", f"{pack_dir}/__init__.py",
                                              submodule_search_locations=[pack_dir])
pack = importlib.util.module_from_spec(spec)
sys.modules["scalewise"] = pack
spec.loader.exec_module(pack)
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
