"""tools/gpu_infinity_bench.py on the CPU: --tiny runs every section (tiny widths of the 2B's and the 8B's layouts at
256 px), the JSON rows have the structure the GPU run's table and the README figures are read from; the ComfyUI
section with COMFY_DIR (a full load there: the CPU has no VRAM to plan for). Expected values from the tiny shapes,
independently of the script: the depth blocks' linear weights are 16 C^2 per block (qkv 3, proj 1, cross-attention
q 1, kv 2, proj 1, FFN 2 x 4 C), stored in fp8 at 1 byte instead of 4 (fp32 on the CPU); a greedy run compares one
bit per bit of every position of every scale (0.06M: 1 + 4 + ... + 256 = 521 positions)."""
import json
import math
import os
import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")
WIDTH, DEPTH, BITS = 64, 2, {"2B-tiny": 8, "8B-tiny": 16}  # the script's TINY sizes
POSITIONS = sum(s * s for s in (1, 2, 4, 6, 8, 12, 16))


def run_tiny(tmp_path, *extra):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, os.path.join(TOOLS, "gpu_infinity_bench.py"), "--tiny", "--out",
                           str(tmp_path), *extra], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = [json.loads(line) for line in (tmp_path / "gpu_infinity_bench.jsonl").read_text().splitlines()]
    return rows, proc.stdout


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return run_tiny(tmp_path_factory.mktemp("tiny"))


def test_every_measured_row_has_its_figures(tiny):
    rows, _ = tiny
    assert all(r["device_type"] == "cpu" and r["tiny"] is True for r in rows)
    for section in ("memory", "fp8"):
        got = {(r["model"], r["batch"], r["cfg"]) for r in rows if r["section"] == section}
        assert got == {("2B-tiny", 1, True), ("2B-tiny", 1, False), ("2B-tiny", 2, True), ("2B-tiny", 2, False),
                       ("8B-tiny", 1, True), ("8B-tiny", 1, False)}, section
    for r in rows:
        if r["section"] in ("memory", "fp8"):
            assert r["px"] == 256 and r["pn"] == "0.06M" and r["runs"] >= 1 and "error" not in r
            assert finite(r["s_per_image"]) and finite(r["computed_gib"])
            assert r["peak_gib"] is None and r["measured_over_computed"] is None  # no CUDA: no peak to measure
            assert r["parameter_bytes"] == r["computed_parameter_bytes"]  # the built model has the counted shapes


def test_fp8_rows_store_the_block_weights_in_one_byte(tiny):
    rows, _ = tiny
    blocks = 16 * WIDTH ** 2 * DEPTH
    for model in BITS:
        plain = next(r for r in rows if r["section"] == "memory" and r["model"] == model)
        fp8 = next(r for r in rows if r["section"] == "fp8" and r["model"] == model)
        assert plain["weights"] == "fp32" and fp8["weights"] == "fp8_e4m3fn blocks"
        assert plain["parameter_bytes"] - fp8["parameter_bytes"] == blocks * (4 - 1)
        assert fp8["computed_gib"] < plain["computed_gib"]


def test_fp8_greedy_bits_are_compared_with_the_plain_model(tiny):
    rows, _ = tiny
    agreement = {r["model"]: r for r in rows if r["section"] == "fp8_agreement"}
    assert set(agreement) == set(BITS)
    for model, r in agreement.items():
        assert r["bits_compared"] == POSITIONS * BITS[model]
        assert r["block_weight_dtypes"] == ["float8_e4m3fn"] and r["draw"].startswith("greedy")
        assert 0 < r["bit_agreement"] <= 1 and len(r["agreement_per_scale"]) == 7
        assert r["bit_agreement"] == round(r["bits_agreeing"] / r["bits_compared"], 6)
        assert all(0 <= a <= 1 for a in r["agreement_per_scale"])


def test_partial_is_skipped_with_its_reason_and_the_table_comes_last(tiny):
    rows, stdout = tiny
    partial = [r for r in rows if r["section"] == "partial"]
    assert len(partial) == 1 and "--comfy" in partial[0]["skipped"]
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("section model") and "partial: skipped: no --comfy DIR" in stdout
    assert lines[-1].startswith("tiny models: a smoke test")


def test_partial_loading_through_comfyui(tmp_path):
    comfy_dir = os.environ.get("COMFY_DIR")
    if not comfy_dir:
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree")
    rows, stdout = run_tiny(tmp_path, "--sections", "partial", "--comfy", comfy_dir)
    partial = {(r["model"], r["card"]): r for r in rows if r["section"] == "partial"}
    assert set(partial) == {("8B-tiny", "24GB"), ("2B-tiny", "12GB")}  # the targets
    for r in partial.values():
        assert "error" not in r and r["px"] == 256 and r["batch"] == 1 and r["cfg"] is True
        assert r["load"].startswith("full (CPU: ComfyUI loads the whole model")
        assert r["loaded_mb"] == r["model_mb"] > 0 and r["offloaded_mb"] == 0
        assert r["cast_layers"] == 7 * DEPTH and r["cast_layers_offloaded"] == 0
        assert finite(r["s_per_image"]) and finite(r["first_run_s"]) and finite(r["memory_estimate_gib"])
        assert finite(r["computed_least_offload_gib"]) and r["fits_card"] is None  # no CUDA
    assert "partial 8B-tiny 256 px b1 CFG on a 24GB card: full" in stdout


def test_the_reserve_leaves_comfyui_the_card(monkeypatch):
    from scalewise.tools import gpu_infinity_bench as bench
    props = types.SimpleNamespace(total_memory=80 * 2 ** 30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    # 80 GiB - 24564 MiB + ComfyUI's own 0.4 GB: ComfyUI then plans as on the 24 GB card
    assert bench.reserve_for("24GB", torch.device("cuda")) == round(80 - 24564 / 1024 + 0.4, 3)
    assert bench.reserve_for("12GB", torch.device("cuda")) == round(80 - 12282 / 1024 + 0.4, 3)
    assert bench.reserve_for("24GB", torch.device("cpu")) is None


def test_the_cast_layer_computes_in_the_input_dtype():
    from scalewise.tools.gpu_infinity_bench import CastLinear
    layer = CastLinear(4, 3)
    with torch.no_grad():
        layer.weight.data = layer.weight.data.to(torch.float8_e4m3fn)
    x = torch.randn(2, 4)
    want = F.linear(x, layer.weight.float(), layer.bias)
    assert torch.equal(layer(x), want) and layer(x).dtype == torch.float32


@pytest.mark.parametrize("argv, message", [(["--sections", "speed", "--tiny"], "unknown section 'speed'"),
                                           (["--models", "4B", "--tiny"], "unknown model '4B'"),
                                           (["--sizes", "2M", "--tiny"], "unknown size '2M'"),
                                           (["--device", "cpu"], "pass --tiny")])
def test_bad_arguments_are_refused_by_name(argv, message, capsys):
    from scalewise.tools.gpu_infinity_bench import parse_args
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("error, recorded", [(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"),
                                              "out of memory"), (ValueError("bug here"), "ValueError: bug here")])
def test_a_failing_row_records_its_error(error, recorded):
    from scalewise.tools import gpu_common
    from scalewise.tools.gpu_infinity_bench import measure

    def fails():
        raise error

    res = measure(gpu_common.Timer(torch, torch.device("cpu")), fails,
                  types.SimpleNamespace(warmup=0, repeat=3, budget_s=1e9), gpu_common.Deadline(1e9))
    assert res["error"] == recorded and res["times"] == [] and res["peak"] is None
