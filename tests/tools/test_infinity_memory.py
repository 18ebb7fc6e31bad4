"""tools/infinity_memory.py against figures from the issue and the spec (not from the script): the 2B's ~2.205 B
numbers plus its VAE's 110.1 M (shared/spec infinity.md §1) and a KV cache of about 2.8 GB per image row at 1024 px
(issue 27: 2 x L x C x depth x 2 bytes with L = 10521, C = 2048, depth 32), the 8B's about 6 GB; the depth blocks'
linear weights, 16 C^2 per block (qkv 3, proj 1, cross-attention q 1, kv 2, proj 1, FFN 2 x 4), and their fp8
storage at 1 byte each."""
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "infinity_memory.py"


def test_the_table_matches_the_published_sizes():
    out = subprocess.run([sys.executable, str(TOOL), "--batch", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:3]): line for line in out.stdout.splitlines()
            if line.startswith("| 2B") or line.startswith("| 8B")}
    two = rows[("2B", "1024 px", "1")].split("|")
    assert two[4].strip() == f"{(2.205e9 + 110.1e6) * 2 / 2 ** 30:.1f} GiB ({16 * 2048 ** 2 * 32 * 2 / 2 ** 30:.1f})"
    weights, blocks = float(two[4].split()[0]), 16 * 2048 ** 2 * 32 * 2 / 2 ** 30
    assert abs(float(two[8].split()[0]) - (float(two[7].split()[0]) - blocks / 2)) < 0.1 < weights
    assert two[5].strip().endswith(f"({2 * 10521 * 2048 * 32 * 2 / 2 ** 30:.1f})")
    eight = rows[("8B", "1024 px", "1")].split("|")
    assert eight[5].strip().endswith(f"({2 * 10521 * 3584 * 40 * 2 / 2 ** 30:.1f})")
    assert abs(float(eight[4].split()[0]) - (8.376e9 + 81.6e6) * 2 / 2 ** 30) < 0.15
    assert eight[4].strip().endswith(f"({16 * 3584 ** 2 * 40 * 2 / 2 ** 30:.1f})")
