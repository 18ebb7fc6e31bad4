"""Smoke test of tools/benchmark.py: tiny VAR and Switti models on the CPU, every stdout line valid JSON."""
import json
import math
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # the fast tier leaves this file out (tests/conftest.py)

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools",
                      "benchmark.py")
REQUIRED = {"model": str, "resolution": int, "batch": int, "guider": str, "s_per_batch": float,
            "img_per_s": float, "peak_kind": str, "rel_time_vs_cfg": float, "device": str, "tiny": bool}


def run_benchmark(*args, timeout=300):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # the CPU path, even on a GPU machine
    proc = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--tiny", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out.jsonl"
    proc = run_benchmark("--guiders", "cfg,igg", "--batches", "1", "--repeat", "1", "--warmup", "0",
                         "--out", str(out))
    lines = proc.stdout.splitlines()
    rows = [json.loads(line) for line in lines]  # every line must be valid JSON
    return proc, rows, out


def test_every_line_is_a_configuration_with_the_required_keys(smoke):
    _, rows, _ = smoke
    assert rows
    for row in rows:
        for key, kind in REQUIRED.items():
            assert key in row, key
            assert isinstance(row[key], kind) or (kind is float and isinstance(row[key], int)), (key, row[key])
        assert "peak_gib" in row and "rel_peak_vs_cfg" in row
        assert "error" not in row
        assert row["tiny"] is True and row["device_type"] == "cpu" and row["device"]
        assert row["model_family"] == "var"


def test_both_layouts_and_guiders_are_covered(smoke):
    _, rows, _ = smoke
    combos = {(r["resolution"], r["guider"]) for r in rows}
    assert combos == {(256, "cfg"), (256, "igg"), (512, "cfg"), (512, "igg")}
    assert len(rows) == 4
    assert {r["model"] for r in rows} == {"var-tiny-256", "var-tiny-512"}


def test_numbers_are_sane(smoke):
    _, rows, _ = smoke
    for r in rows:
        assert r["batch"] == 1
        assert r["s_per_batch"] > 0 and math.isfinite(r["s_per_batch"])
        # img_per_s is rounded to 3 decimals from the unrounded time; s_per_batch to 5 (half a unit each)
        s = r["s_per_batch"]
        tol = 5e-4 + r["batch"] * 5e-6 / (s * (s - 5e-6))
        assert r["img_per_s"] == pytest.approx(r["batch"] / s, rel=0, abs=tol)
        assert r["rel_time_vs_cfg"] > 0
        if r["guider"] == "cfg":
            assert r["rel_time_vs_cfg"] == 1.0
        assert r["peak_kind"] in ("cpu_rss_delta", "none")
        if r["peak_kind"] == "none":
            assert r["peak_gib"] is None and r["rel_peak_vs_cfg"] is None
        else:
            assert r["peak_gib"] >= 0
            if r["guider"] == "cfg" and r["peak_gib"] > 0:
                assert r["rel_peak_vs_cfg"] == 1.0


def test_ratios_use_the_cfg_row_of_the_same_model_and_batch(smoke):
    _, rows, _ = smoke
    cfg = {(r["model"], r["batch"]): r for r in rows if r["guider"] == "cfg"}
    for r in rows:
        ref = cfg[(r["model"], r["batch"])]
        # the ratio is rounded to 4 decimals from unrounded times; each time to 5 (half a unit each):
        # |s/t - s'/t'| <= (5e-6 / s + 5e-6 / t) s'/t' to first order, doubled for the second order
        s, t = r["s_per_batch"], ref["s_per_batch"]
        tol = 5e-5 + 2 * (5e-6 / s + 5e-6 / t) * s / t
        assert r["rel_time_vs_cfg"] == pytest.approx(s / t, rel=0, abs=tol)


def test_out_file_matches_stdout_and_stderr_says_tiny(smoke):
    proc, rows, out = smoke
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    assert "tiny" in proc.stderr


def test_cfg_is_always_measured_as_the_reference():
    proc = run_benchmark("--models", "d16", "--guiders", "igg", "--batches", "1", "--repeat", "1",
                         "--warmup", "0")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["guider"] for r in rows] == ["cfg", "igg"]
    assert rows[0]["model"] == "var-tiny-256" and rows[0]["resolution"] == 256


def test_bad_arguments_are_refused():
    proc = subprocess.run([sys.executable, SCRIPT, "--tiny", "--guiders", "nope"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "unknown guider" in proc.stderr
    assert proc.stdout == ""


def test_switti_tiny_512_rows():
    proc = run_benchmark("--models", "switti-512", "--guiders", "cfg", "--batches", "1", "--repeat", "1",
                         "--warmup", "0", timeout=240)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]  # every line must be valid JSON
    assert len(rows) == 1
    row = rows[0]
    for key, kind in REQUIRED.items():
        assert isinstance(row[key], kind) or (kind is float and isinstance(row[key], int)), (key, row[key])
    assert row["model"] == "switti-tiny-512" and row["model_family"] == "switti"
    assert row["resolution"] == 512 and row["batch"] == 1 and row["guider"] == "cfg"
    assert row["s_per_batch"] > 0 and math.isfinite(row["s_per_batch"]) and row["rel_time_vs_cfg"] == 1.0
    assert row["tiny"] is True and row["device_type"] == "cpu" and row["dtype"] == "fp32"
    assert "error" not in row
    assert "switti-tiny-512" in proc.stderr


def test_agreement_mode_compares_bf16_and_fp16_with_fp32():
    proc = run_benchmark("--agreement", "--models", "d16", "--guiders", "cfg", "--batches", "1", timeout=900)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["dtype"] for r in rows] == ["bf16", "fp16"]
    for r in rows:
        assert r["mode"] == "agreement" and r["reference_dtype"] == "fp32" and r["model"] == "var-tiny-256"
        assert r["batch"] == 1 and r["guider"] == "cfg" and r["tiny"] is True
        if "error" in r:  # a dtype without CPU kernels is reported, not fatal
            assert r["token_agreement"] is None
            continue
        per_scale = r["agreement_per_scale"]
        assert len(per_scale) == 10 and all(0 <= x <= 1 for x in per_scale)
        assert per_scale[0] == 1.0 or r["first_diverging_scale"] == 0
        sizes = [p * p for p in (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)]
        overall = sum(x * n for x, n in zip(per_scale, sizes)) / sum(sizes)
        # both rounded to 6 decimals (the per-scale values before the weighted mean): half a unit each
        assert r["token_agreement"] == pytest.approx(overall, abs=1e-6 + 1e-12)
