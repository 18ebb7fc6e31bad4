"""Infinity Text Encode's features against an independent computation: Hugging Face T5EncoderModel (what the
official tools/run_infinity.py runs) on a tiny random flan-like T5 saved as the Hub has flan-t5-xl, tokenised and
truncated as the official `encode_prompt` does; the pack reads the same weights from the sharded folder, .bin shards
and the converter's file (check_infinity_text.py runs both sides in a subprocess in the ComfyUI venv)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
EPS32 = 2.0 ** -23          # fp32 machine epsilon: both sides compute in fp32
LAYERS, FFN = 3, 96         # check_infinity_text.py's tiny config


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    comfy_dir = os.environ.get("COMFY_DIR")
    if not comfy_dir:
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree")
    out = subprocess.run([sys.executable, str(HERE / "check_infinity_text.py"), comfy_dir, str(HERE.parents[1]),
                          str(tmp_path_factory.mktemp("infinity_text"))], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


CASES = {  # name: (valid tokens incl. </s>, notes the node must give)
    "plain": (9, []),
    "empty": (1, []),
    "weighted": (9, ["weights such as (word:1.2) are ignored"]),
    "embedding": (9, []),
    "511 tokens": (512, []),
    "512 tokens": (512, ["cut to 512 tokens", "(513 given)"]),
    "600 tokens": (512, ["cut to 512 tokens", "(601 given)"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_features_equal_hugging_face_t5(parity, case):
    r = parity["cases"][case]
    valid, notes = CASES[case]
    assert r["valid_ref"] == valid and r["shape"] == [valid, 64]
    # Both sides fp32, different summation orders: per layer about sqrt(reduction) ulps of the activations (the
    # reductions: d_ff in the feed-forward, the keys in attention), over the layers. A missing final norm, a wrong
    # GELU, a padding row, a lost </s> or a position-bias mistake differ by O(scale).
    tol = r["scale"] * LAYERS * math.sqrt(max(FFN, valid)) * EPS32
    assert r["diff"] <= tol, (r["diff"], tol)
    assert r["tokens_equal"] or case == "embedding"
    assert len(r["notes"]) == (1 if notes else 0), r["notes"]
    assert all(n in r["notes"][0] for n in notes), r["notes"]


def test_every_form_of_the_download_gives_identical_features(parity):
    # the sharded Hub folder (by folder or index), .bin shards with their index, the converter's fp32 file
    assert parity["shards"] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert all(parity["sources_equal"].values()), parity["sources_equal"]
    # fp16: the converter's fp16 file (dtype auto: ComfyUI's text-encoder dtype) = the folder loaded in fp16
    assert parity["fp16"] == {"dtype": "torch.float16", "same": True}
    assert "other sizes than flan-t5-xl" in parity["load_notes"][0]


def test_an_embedding_is_its_vectors(parity):
    # "red fox" as a textual-inversion file of its own token rows: the features of the words (case above)
    assert parity["embedding_tokens"].count("vector") == 3 and parity["embedding_tokens"][-1] == 1


def test_embeddings_that_do_not_fit_are_refused(parity):
    missing, other = parity["refusals"]["missing embedding"], parity["refusals"]["sd15 embedding"]
    assert missing.startswith("positive: embedding:nothere: no such textual-inversion file")
    assert other.startswith("positive: embedding:sd15 has 768-wide vectors") and "64 wide" in other


def test_negative_prompt(parity):
    # empty: none (the model's learned cfg_uncond[:len]); given: its own features, one entry for every image
    assert parity["negative"] == {"none": True, "given": True, "features": 1}


def test_comfyui_load_clip_makes_pile_t5_of_flan_and_it_is_refused(parity):
    assert parity["detected"] == "T5_XL" and parity["comfy_kind"] == ["pile_t5xl"]
    assert parity["comfy_pile_ids_differ"]                       # another vocabulary
    assert (parity["comfy_biases"], parity["file_biases"]) == (24, 1)  # 23 position biases left uninitialised
    assert "AuraFlow's pile-T5-XL" in parity["comfy_refusal"] and "Load Infinity Text Encoder" in parity["comfy_refusal"]


def test_a_download_whose_vocabulary_is_not_comfyuis_t5_is_refused(parity):
    """The folder's tokenizer.json is compared piece by piece with ComfyUI's T5 tokenizer, which reads the prompts:
    the Hub folder (written by transformers from ComfyUI's tokenizer files) loads; one piece changed, or one
    fewer, is refused naming the file and the piece or the counts."""
    check = parity["vocab_check"]
    assert check["hub written"]
    assert check["piece"].startswith("CheckpointError: ") and "other-vocabulary/piece/tokenizer.json: piece 5 is " \
        "'▁zzz', ComfyUI's T5 tokenizer (which reads the prompts) has" in check["piece"], check["piece"]
    assert "32099 pieces, ComfyUI's T5 tokenizer (which reads the prompts) has 32100" in check["count"], check["count"]
