"""VAR-CLIP Text Encode's vector against an independent computation from the clip_l weights: Hugging Face
CLIPTextModelWithProjection with exact GELU (open_clip's "ViT-L-14", which VAR-CLIP ran), tokenised and truncated as
VAR-CLIP's tokenizer does, divided by its norm (check_var_clip_text.py runs both in a subprocess in the ComfyUI venv)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .fixtures_models import clip_cache

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def parity():
    comfy_dir = os.environ.get("COMFY_DIR")
    if not comfy_dir:
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree")
    out = subprocess.run([sys.executable, str(HERE / "check_var_clip_text.py"), comfy_dir, str(HERE.parents[1]),
                          str(clip_cache())], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


CASES = {"plain": [], "empty": [], "long": ["cut to 77 tokens"], "weighted": ["weights such as (word:1.2) are ignored"]}


@pytest.mark.parametrize("case", list(CASES))
def test_the_vector_equals_var_clips_computation(parity, case):
    r = parity["cases"][case]
    assert r["shape"] == [1, 768] and r["dtype"] == "torch.float32"
    assert abs(r["norm"] - 1) < 1e-6
    # unit vectors from two fp32 implementations (12 layers, reductions of 768-3072 terms): rounding only
    assert r["diff"] < 2e-6, r
    # and the activation matters: OpenAI CLIP's own QuickGELU (ComfyUI's) would give another vector
    assert r["quick_gelu_diff"] > 100 * max(r["diff"], 1e-8), r
    assert [n for n in r["notes"] if not any(c in n for c in CASES[case])] == []
    assert len(r["notes"]) == len(CASES[case])


def test_a_dual_clip_with_clip_l_gives_the_same_vector(parity):
    assert parity["dual_diff"] == 0.0


def test_comfyuis_default_pooled_output_is_not_var_clips(parity):
    """Load CLIP's pooled output for clip_l: final-LN end-of-text state, unprojected and not normalised."""
    assert parity["comfy_pooled_norm"] > 2 and abs(parity["comfy_pooled_cos"]) < 0.9


def test_textual_inversion_words_are_refused(parity):
    assert "embedding:foxy" in parity["refused"]["embedding"]
