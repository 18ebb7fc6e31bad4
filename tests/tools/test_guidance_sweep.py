"""Smoke test of tools/guidance_sweep.py (--quick) plus its crossing/findings logic on made-up curves."""
import json
import os

import pytest
from PIL import Image

from scalewise.tools import guidance_sweep as sweep

pytestmark = pytest.mark.slow  # the fast tier leaves this file out (tests/conftest.py)


def test_quick_run_writes_table_plot_and_lines(tmp_path):
    sweep.main(["--quick", "--out", str(tmp_path)])
    lines = [json.loads(x) for x in (tmp_path / "shapes_guidance.jsonl").read_text().splitlines()]
    rows, summary = lines[:-1], lines[-1]
    assert {r["sweep"] for r in rows} == set(sweep.SWEEPS) == {"cfg", "cfg_constant", "cfg_cosine", "igg",
                                                                "igg_window", "softcfg", "ssg", "ssg_over_igg"}
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and r["frechet"] >= 0
    assert summary["meta"]["samples"] == 20 and set(summary["findings"]) == set(sweep.SCALE_SWEEPS)
    assert rows[0]["guider"] == "unguided"
    assert Image.open(tmp_path / "shapes_guidance.png").size == (1200, 760)
    table = (tmp_path / "shapes_guidance.md").read_text()
    assert "| cfg | unguided | 0 |" in table and "SSG selects beta" in table
    assert os.path.getsize(tmp_path / "shapes_guidance.png") > 10_000


def test_quick_run_on_the_scenes_model(tmp_path):
    """--model scenes: the scenes files, its judge, 128 px; a subset of sweeps and a noise point."""
    sweep.main(["--quick", "--model", "scenes", "--out", str(tmp_path), "--sweeps", "cfg,igg_window",
                "--noise-seed", "5000"])
    lines = [json.loads(x) for x in (tmp_path / "scenes_guidance.jsonl").read_text().splitlines()]
    rows, summary = lines[:-1], lines[-1]
    assert {r["sweep"] for r in rows} == {"cfg", "igg_window"} and len(rows) == 4
    assert summary["meta"]["model"] == "scenes" and summary["meta"]["noise"][0]["seed"] == 5000
    assert "IGG 2 linear window auto" in {r["guider"] for r in rows}
    table = (tmp_path / "scenes_guidance.md").read_text()
    assert table.startswith("# Guidance sweep on the built-in scenes-128 model") and "Noise:" in table


def _pts(xs, even, div, fd):
    return [{"sweep": "cfg", "x": x, "evenness": e, "divergence": d, "frechet": f}
            for x, e, d, f in zip(xs, even, div, fd)]


def test_crossing_and_prediction():
    xs = [0, 1, 2, 4]
    rows = _pts(xs, [0.9, 0.8, 0.6, 0.5], [0.1, 0.5, 0.7, 0.8], [5.0, 3.0, 2.0, 4.0])
    # e - d: 0.8, 0.3, -0.1 -> crossing between 1 and 2 at 1 + 0.3 / 0.4
    assert abs(sweep.crossing(rows) - 1.75) < 1e-12
    found = sweep.findings(rows)["cfg"]
    assert found["best_frechet_x"] == 2 and found["crossing_predicts_best"]
    rows[3]["frechet"] = 1.0  # best now at 4: not next to the crossing
    assert not sweep.findings(rows)["cfg"]["crossing_predicts_best"]
    assert sweep.crossing(_pts(xs, [0.9] * 4, [0.1] * 4, [1] * 4)) is None


def test_parallel_runs_merge_into_one_report(tmp_path):
    """Two --quick runs over disjoint sweeps, merged: every row of both, in sweep order, and SSG's selection kept."""
    a, b = tmp_path / "a", tmp_path / "b"
    sweep.main(["--quick", "--out", str(a), "--sweeps", "cfg,ssg"])
    sweep.main(["--quick", "--out", str(b), "--sweeps", "igg"])
    sweep.main(["--out", str(tmp_path), "--merge", str(a), str(b)])
    read = lambda d: [json.loads(x) for x in (d / "shapes_guidance.jsonl").read_text().splitlines()]  # noqa: E731
    merged, parts = read(tmp_path), read(a)[:-1] + read(b)[:-1]
    rows = merged[:-1]
    assert sorted(json.dumps(r) for r in rows) == sorted(json.dumps(r) for r in parts)
    assert [r["sweep"] for r in rows] == ["cfg"] * 2 + ["igg"] * 2 + ["ssg"] * 2
    assert merged[-1]["meta"]["ssg_selected"] == read(a)[-1]["meta"]["ssg_selected"]
    assert "SSG selects beta" in (tmp_path / "shapes_guidance.md").read_text()
