"""The measuring parts of tools/gpu_var_bench.py and tools/gpu_switti_bench.py that need neither a GPU nor the
official code: token agreement, the fp16 activation probe, the interleaved timing loop, the refusal without the
official code. (The whole scripts run with --tiny against the official code in .gpu-ref/, see tools/README.md.)"""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")
sys.path.insert(0, TOOLS)

import gpu_common  # noqa: E402


def test_agreement_figures_per_scale_and_overall():
    ref = [torch.tensor([[[1]]]), torch.tensor([[[1, 2], [3, 4]]])]
    got = [torch.tensor([[[1]]]), torch.tensor([[[1, 2], [0, 4]]])]
    f = gpu_common.agreement_figures(ref, got)
    assert f["agreement_per_scale"] == [1.0, 0.75]
    assert f["token_agreement"] == pytest.approx(4 / 5)
    assert f["first_diverging_scale"] == 1 and f["tokens_equal"] is False
    same = gpu_common.agreement_figures(ref, ref)
    assert same["tokens_equal"] is True and same["first_diverging_scale"] is None


def test_interleaved_runs_round_robin_and_records_out_of_memory():
    order = []

    def ok():
        order.append("a")
        return torch.zeros(1)

    def oom():
        order.append("b")
        raise RuntimeError("CUDA out of memory. Tried to allocate")

    timer = gpu_common.Timer(torch, torch.device("cpu"))
    res = gpu_common.interleaved(timer, {"a": ok, "b": oom}, {}, warmup=1, repeat=3, budget_s=1e9,
                                 deadline=gpu_common.Deadline(1e9), is_oom=lambda e: "out of memory" in str(e))
    assert order == ["a", "b", "a", "a", "a"]  # b failed once (in the warm-up) and was not run again
    assert len(res["a"]["times"]) == 3 and res["a"]["error"] is None
    assert res["b"]["times"] == [] and res["b"]["error"] == "out of memory"
    # any other error is recorded too (the device call keeps its other figures), with the exception named
    res = gpu_common.interleaved(timer, {"c": lambda: (_ for _ in ()).throw(ValueError("bug here"))}, {}, warmup=0,
                                 repeat=2, budget_s=1, deadline=gpu_common.Deadline(1), is_oom=lambda e: False)
    assert res["c"]["error"] == "ValueError: bug here" and res["c"]["times"] == []


def test_activation_probe_finds_the_largest_output_and_overflow():
    from gpu_switti_bench import ActivationProbe
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.GroupNorm(1, 1), nn.Conv2d(1, 1, 1, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(300.0)
        net[2].weight.fill_(-2.0)
    x = torch.tensor([[[[1.0, -3.0]]]])
    probe = ActivationProbe(net)
    net(x)
    probe.close()
    assert probe.max == pytest.approx(900.0) and probe.where == "0" and probe.nonfinite == 0
    # fp16: 300 * 300 overflows 65504 in the first conv
    probe = ActivationProbe(net.half())
    net(torch.full((1, 1, 1, 2), 300.0, dtype=torch.float16))
    probe.close()
    assert probe.max == float("inf") and probe.where == "0" and probe.nonfinite >= 2
    assert not net[0]._forward_hooks  # closed: no hook left behind


@pytest.mark.parametrize("script,extra", [("gpu_var_bench.py", []), ("gpu_switti_bench.py", ["--sections", "speed"])])
def test_refuses_clearly_without_the_official_code(script, extra, tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, os.path.join(TOOLS, script), "--tiny", "--repo", str(tmp_path / "none"),
                           "--out", str(tmp_path), *extra], capture_output=True, text=True, timeout=300, env=env)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"is not at {tmp_path / 'none'}" in text and "tools/README.md" in text, text[-2000:]
