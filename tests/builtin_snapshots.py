"""Fixed-seed snapshots of the shipped built-in models (tests/models/test_shapes_builtin.py, test_scenes_builtin.py):
the figures are recorded exactly, with a tolerance for the float rounding of another machine.

Why a figure can differ on another machine at all: the same float32 maths rounds differently under another
kernel's summation order (tests/rounding.py), by a few units of the last place per operation. The figures are
counts of decisions (a token drawn, a top-p cut, a nearest code, the judge's class, a mask pixel's sign) and means
of continuous values; a decision changes only where its margin is within such rounding, and then changes that
sample alone (every image has its own random stream). Worst-case stack bounds (rounding.stack_bound) are far too
loose to tell those samples apart (they make every one of these images "fragile"), so the tolerance is measured:
`python tests/builtin_snapshots.py` re-runs every figure with every weight of the model and the judge
multiplied by (1 + 4 u xi), xi ~ N(0, 1), u = 2^-24 (a few ulps per weight: each layer's output then moves by about
what another summation order moves it), for PERTURBATIONS seeds, and prints the largest change of each figure.
The tests allow twice that, and at least 2 samples for a count (so one fragile sample on each side of a decision
never fails a test). Re-record (figures and changes) after retraining a model or changing what the figures run.
"""
from __future__ import annotations

import os
import sys

import torch

U = 2.0 ** -24
PERTURBATIONS = 3


@torch.no_grad()
def perturb_(module: torch.nn.Module, seed: int, ulps: float = 4.0) -> torch.nn.Module:
    """Multiplies every floating-point parameter and buffer of `module` in place by (1 + ulps u xi), xi ~ N(0, 1)
    drawn from a generator seeded with `seed`; returns `module`."""
    gen = torch.Generator().manual_seed(seed)
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            tensor.mul_(1 + ulps * U * torch.randn(tensor.shape, generator=gen, dtype=torch.float64).to(tensor.dtype))
    return module


def count_tolerance(change: int) -> int:
    """The allowed change of a count whose largest change under perturbation was `change` samples."""
    return max(2, 2 * change)


def _changes(base, other):
    if isinstance(base, (list, tuple)):
        return [_changes(b, o) for b, o in zip(base, other)]
    if isinstance(base, dict):
        return {k: _changes(base[k], other[k]) for k in base}
    return abs(base - other)


def _max(a, b):
    if isinstance(a, list):
        return [_max(x, y) for x, y in zip(a, b)]
    if isinstance(a, dict):
        return {k: _max(a[k], b[k]) for k in a}
    return max(a, b)


def record(measure_all) -> None:  # pragma: no cover - the recording run
    """Prints measure_all(None) and the largest change over PERTURBATIONS perturbed runs (measure_all(seed))."""
    base = measure_all(None)
    print("figures:", base, flush=True)
    worst = None
    for seed in range(PERTURBATIONS):
        change = _changes(base, measure_all(seed))
        worst = change if worst is None else _max(worst, change)
        print(f"  change, perturbation {seed}:", change, flush=True)
    print("largest change:", worst, flush=True)


if __name__ == "__main__":  # pragma: no cover
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [os.path.join(here, "models"), here]
    import conftest  # noqa: F401  (the repository as `scalewise`, as under pytest)
    import test_scenes_builtin
    import test_shapes_builtin
    for name, mod in (("shapes", test_shapes_builtin), ("scenes", test_scenes_builtin)):
        if len(sys.argv) < 2 or name in sys.argv[1:]:
            print(name, flush=True)
            record(mod.measure_all)
