"""Issue 27.7: Infinity through ComfyUI's memory management. Its depth blocks are ComfyUI's cast layers, so ComfyUI
may load it partially (weights left on the CPU and cast per use) and store them in fp8 (the dtype widget's fp8
entries, --fp8_e4m3fn-unet / --fp8_e5m2-unet). On the CPU (check_infinity_offload.py, ComfyUI's real ModelPatcher
and comfy.ops): a partial load gives the bits of the plain model and every block layer is cast; fp8 storage gives the
bits of the plain model with fp8-rounded weights (an independent reference). In the server: the fp8 choices run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_infinity_text_nodes import text_graph
from .test_reliability import output_images

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def seen():
    comfy_dir = os.environ.get("COMFY_DIR")
    if not comfy_dir:
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree")
    out = subprocess.run([sys.executable, str(HERE / "check_infinity_offload.py"), comfy_dir, str(HERE.parents[1])],
                         check=True, capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_partial_load_casts_the_offloaded_layers_and_keeps_the_bits(seen):
    assert seen["lowvram"] and 0 < seen["cast_per_use"] < seen["cast_layers"] == 28
    assert seen["partial_same_as_plain_cfg"] and seen["partial_same_as_plain_igg"]
    # ComfyUI cast each offloaded layer (at every scale of both runs) and none of the loaded ones
    assert seen["offloaded_layers_cast"] >= 2 * 7 and seen["loaded_layers_cast"] == 0


@pytest.mark.parametrize("name", ["e4m3fn", "e5m2"])
def test_fp8_storage_gives_the_bits_of_fp8_rounded_weights(seen, name):
    assert seen[f"fp8_{name}_dtypes"] == [f"torch.float8_{name}"]
    assert seen[f"fp8_{name}_same_as_rounded"]


def test_the_fp8_choice_and_flags_pick_storage_and_compute(seen):
    assert seen["storage_note"] == ("dtype fp8_e5m2: the depth blocks' linear weights are stored in float8_e5m2, "
                                    "computed in float32")  # read from the loaded weights
    assert seen["storage_note_plain"] is None
    assert seen["choice_fp8_e5m2"] == ["torch.float32", "torch.float8_e5m2", "dtype fp8_e5m2", []]  # CPU: fp32
    assert seen["flag_fp8_e4m3fn"] == ["torch.float32", "torch.float8_e4m3fn", "--fp8_e4m3fn-unet", []]
    assert seen["flag_with_bf16"][:3] == ["torch.bfloat16", "torch.bfloat16", None]  # an explicit choice wins
    assert seen["flag_with_fp8_e5m2"][:3] == ["torch.float32", "torch.float8_e5m2", "dtype fp8_e5m2"]
    assert seen["flag_with_fp8_e5m2"][3] == ["dtype fp8_e5m2 (set on the node) overrides the launch flag "
                                             "--fp8_e4m3fn-unet; choose dtype auto to follow it"]
    transformer, weight, source, notes = seen["flag_fp8_e8m0fnu"]
    assert transformer == weight == "torch.float32" and source is None
    assert notes[0].startswith("--fp8_e8m0fnu-unet asks for float8_e8m0fnu weights, which has no sign bit")


@pytest.mark.parametrize("dtype", ["fp8_e4m3fn", "fp8_e5m2"])
def test_the_loader_runs_with_fp8_weights(pack_loaded, dtype):
    prompt, _ = text_graph(pack_loaded, sink="infinity", dtype=dtype)
    entry, _ = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    images = output_images(pack_loaded, entry)
    assert len(images) == 2 and all(len(set(im)) > 1 for im in images)
    notes = json.dumps(entry["outputs"])
    assert f"stored in float8_{dtype[4:]}" in notes, notes[:2000]
