"""tools/gpu_var_bench.py without the official code: a clear refusal naming where the code should be and how to
get it (the script itself runs with --tiny against the official code, see tools/README.md)."""
import os
import subprocess
import sys

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")


def test_refuses_clearly_without_the_official_code(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, os.path.join(TOOLS, "gpu_var_bench.py"), "--tiny", "--repo",
                           str(tmp_path / "none"), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env=env)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"is not at {tmp_path / 'none'}" in text and "tools/README.md" in text, text[-2000:]
