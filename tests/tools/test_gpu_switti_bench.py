"""tools/gpu_switti_bench.py without a GPU: the fp16 activation probe, and a clear refusal without the official
code (the script itself runs with --tiny against the official code, see tools/README.md)."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")


def test_activation_probe_finds_the_largest_output_and_overflow():
    from scalewise.tools.gpu_switti_bench import ActivationProbe
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


def refusal(script: str, tmp_path, *extra):
    """Run `script` --tiny with --repo pointing nowhere: (exit status, stdout + stderr)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, os.path.join(TOOLS, script), "--tiny", "--repo", str(tmp_path / "none"),
                           "--out", str(tmp_path), *extra], capture_output=True, text=True, timeout=300, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def test_refuses_clearly_without_the_official_code(tmp_path):
    code, text = refusal("gpu_switti_bench.py", tmp_path, "--sections", "speed")
    assert code == 1  # the section's error is a row of the JSON lines and of the table
    assert f"is not at {tmp_path / 'none'}" in text and "tools/README.md" in text, text[-2000:]
    assert "is not at" in (tmp_path / "gpu_switti_bench.jsonl").read_text()
