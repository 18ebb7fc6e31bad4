"""Issue 13.4: dtype "auto" never puts the VQ-VAE in fp16 (its decoder overflows fp16), chooses per family and part,
and an explicit choice is taken as given. ComfyUI's real model_management, with its device answers simulated."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def test_auto_dtype_per_family_and_part():
    comfy_dir = os.environ.get("COMFY_DIR")
    if not comfy_dir:
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree")
    out = subprocess.run([sys.executable, str(HERE / "check_dtypes.py"), comfy_dir, str(HERE.parents[1])],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    got = json.loads(out.strip().splitlines()[-1])
    T4 = "gpu without bf16 (V100, T4, RTX 20xx)"
    assert got["cpu|var|auto"] == got["cpu|switti|auto"] == ["float32", "float32"]
    assert got["gpu with bf16 (A100, RTX 30xx+)|var|auto"] == ["bfloat16", "bfloat16"]
    assert got["gpu with bf16 (A100, RTX 30xx+)|switti|auto"] == ["bfloat16", "bfloat16"]
    assert got[f"{T4}|var|auto"] == ["float16", "float32"]
    assert got[f"{T4}|switti|auto"] == ["float32", "float32"]
    assert all(v == ["float16", "float16"] for k, v in got.items() if k.endswith("|fp16"))
