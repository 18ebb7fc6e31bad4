"""The Switti text-encoding recipe (final-LayerNorm states of CLIP-L and bigG, bigG's unprojected pooled vector
at the EOS token, the padding mask) against ComfyUI's own SDXL text encoders."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_switti_features_from_comfy_clip():
    comfy_dir = os.environ.get("COMFY_DIR")
    if not comfy_dir:
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree")
    out = subprocess.run([sys.executable, str(HERE / "check_switti_text.py"), comfy_dir, str(HERE.parents[1])],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["states"], "clip_layer(-33) no longer yields the final-LN last layer"
    assert result["pooled"], "pooled vector is not the unprojected bigG pooled output"
    assert result["quirk"], "ComfyUI's clip_layer + unprojected quirk changed: revisit encode_prompt"
    assert result["shape"] == [1, 77, 2048] and result["empty_valid"] == 2 and result["valid"] == 8
    assert result["cut"] is False
