"""Switti Text Encode's features against an independent computation from the encoder weights:
Hugging Face CLIPTextModel on the same clip_l/clip_g files, tokenised and truncated as the official pipeline does
(check_switti_text.py runs both in a subprocess in the ComfyUI venv, so it holds on whatever ComfyUI COMFY_DIR is)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .fixtures_models import CLIP_G, clip_cache

HERE = Path(__file__).parent
EPS32 = 2.0 ** -23          # fp32 machine epsilon: both sides compute in fp32
BIGG_LAYERS, BIGG_FFN = 32, 5120


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    comfy_dir = os.environ.get("COMFY_DIR")
    if not comfy_dir:
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree")
    cache = clip_cache()
    out = subprocess.run([sys.executable, str(HERE / "check_switti_text.py"), comfy_dir, str(HERE.parents[1]),
                          str(cache), str(tmp_path_factory.mktemp("switti_text"))],
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (cache / CLIP_G).is_file()
    return json.loads(out.stdout.strip().splitlines()[-1])


CASES = {  # name: (valid tokens incl. BOS and EOS, notes the node must give)
    "plain": (8, []),
    "empty": (2, []),
    "straddle": (77, ["cut to 77 tokens"]),
    "weighted": (8, ["weights such as (word:1.2) are ignored"]),
    "embedding": (8, []),
    "embedding, weighted": (9, ["weights such as (word:1.2) are ignored"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_features_equal_the_official_computation(parity, case):
    r = parity["cases"][case]
    valid, notes = CASES[case]
    assert r["shape"] == [1, 77, 2048]
    assert r["valid"] == r["valid_ref"] == valid and r["mask_ok"]
    # Both sides are fp32 with different summation orders: per layer an error of about sqrt(reduction) ulps of the
    # activations, accumulated over bigG's 32 layers; the final LayerNorm leaves values of order r["scale"].
    # A wrong layer, a missing LayerNorm, a projected pooled vector or a misplaced token differ by O(scale).
    tol = r["scale"] * BIGG_LAYERS * math.sqrt(BIGG_FFN) * EPS32
    assert r["hidden_diff"] <= tol, (r["hidden_diff"], tol)
    assert r["pooled_diff"] <= tol, (r["pooled_diff"], tol)
    assert len(r["notes"]) == len(notes) and all(n in got for n, got in zip(notes, r["notes"])), r["notes"]


def test_the_straddle_case_is_one_where_comfyui_chunks_differ(parity):
    # ComfyUI's first chunk keeps the 3-token word whole for the next chunk (73 tokens); the official cut does not.
    assert parity["comfy_straddle_chunk0"] == 73
