"""guidance/runs.py: a comparison is each guider sampled alone on the same generation; E, D and the balance point are
those of the rows (checked against independent formulas on hand-made traces)."""
import math

import numpy as np
import pytest
import torch

from scalewise.guidance import CFG, IGG, SSG, Draw, Edit, Generation, SampleOutput, sample
from scalewise.guidance.metrics import divergence, evenness
from scalewise.guidance.runs import compare, row_masks, sweep
from scalewise.guidance.trace import GuidanceTrace
from tiny import tiny_model

GENERATION = Generation([3, 207], seed=11, batch_size=3, draw=Draw(top_k=50, top_p=0.9))


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_compare_is_each_guider_sampled_alone(model):
    guiders = [CFG(3.0), None, SSG(0.2, base=IGG(2.0))]
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    calls = []
    result = compare(model, guiders, GENERATION, masks=mask, callback=lambda row, p: calls.append((row, p.k)))
    assert len(result.rows) == 3 and result.images.shape == (9, 3, 64, 64)
    for row, guider in zip(result.rows, guiders):
        alone = sample(model, guider, GENERATION, trace=True)
        assert row.guider is guider and torch.equal(row.images, alone.images)
        assert all(torch.equal(a, b) for a, b in zip(row.trace.magnitude, alone.trace.magnitude))
        assert np.array_equal(row.evenness, evenness(alone.trace)["mean"], equal_nan=True)
        assert np.array_equal(row.divergence, divergence(alone.trace, mask)["mean"], equal_nan=True)
    assert torch.equal(result.images[3:6], result.rows[1].images)   # row by row
    assert calls == [(r, k) for r in range(3) for k in range(4)]    # every scale of every row, in order
    unguided = result.rows[1]
    assert math.isnan(unguided.mean_evenness) and result.evenness[0] == pytest.approx(
        float(result.rows[0].evenness[~result.rows[0].evenness.isnan()].mean()))


def test_masks_from_a_function_see_every_image_once(model):
    seen = []

    def segment(images):
        seen.append(images.clone())
        return (images.mean(1) > images.mean()).float()

    result = compare(model, [CFG(2.0), CFG(4.0)], GENERATION, masks=segment)
    assert len(seen) == 1 and torch.equal(seen[0], result.images)
    assert torch.equal(result.masks, (seen[0].mean(1) > seen[0].mean()).float())
    assert result.divergence is not None and len(result.divergence) == 2
    assert compare(model, [CFG(2.0)], GENERATION, masks=lambda images: None).divergence is None


def test_an_edit_is_sampled_as_alone_and_d_is_measured_on_its_regenerated_region(model):
    picture = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    regenerate = torch.zeros(1, 64, 64)
    regenerate[:, :, 32:] = 1
    generation = Generation([5], seed=2, batch_size=2, edit=Edit(picture, regenerate))
    result = compare(model, [CFG(2.0), IGG(3.0)], generation)
    for row, guider in zip(result.rows, (CFG(2.0), IGG(3.0))):
        alone = sample(model, guider, generation, trace=True)
        assert torch.equal(row.images, alone.images)
        assert np.array_equal(row.divergence, divergence(alone.trace, alone.trace.edit_mask)["mean"], equal_nan=True)
    assert torch.equal(result.masks, torch.cat([r.trace.edit_mask for r in result.rows]))
    assert result.masks.shape == (4, 64, 64) and torch.equal(result.masks[:, :, 32:], torch.ones(4, 64, 32))
    # a mask given wins over the edit's region
    given = torch.ones(1, 64, 64)
    assert torch.equal(compare(model, [CFG(2.0)], generation, masks=given).masks, given.expand(2, -1, -1))


def test_guiders_are_checked_before_anything_is_sampled(model):
    events = []
    with pytest.raises(ValueError, match=r"^second \(CFG 2 linear \+ CFG 3 linear\): the guider stack contains 2 CFG"):
        compare(model, [CFG(1.0), CFG(3.0, base=CFG(2.0))], GENERATION, names=["first", "second"],
                ready=lambda: events.append("ready"),
                sampler=lambda *a, **k: events.append("sampled"))
    assert events == []
    with pytest.raises(ValueError, match=r"^strengths: 200 for CFG"):
        sweep(model, CFG(3.0), [1.0, 200.0], GENERATION)


@pytest.mark.parametrize("count,expected", [(1, [0, 0, 0, 0, 0, 0]), (3, [0, 1, 2, 0, 1, 2]),
                                            (6, [0, 1, 2, 3, 4, 5])])
def test_row_masks_layouts(count, expected):
    masks = torch.stack([torch.full((8, 8), float(i) / 10) for i in range(count)])
    out = row_masks(masks, rows=2, columns=3, size=8)
    assert out.shape == (6, 8, 8) and [round(float(m[0, 0]) * 10) for m in out] == expected
    assert row_masks(torch.ones(1, 4, 4), 2, 3, size=8).shape == (6, 8, 8)   # a square mask is resized
    with pytest.raises(ValueError, match=r"mask: 4 masks; give 1, one per column \(3\) or one per image \(6\)"):
        row_masks(torch.ones(4, 8, 8), 2, 3, size=8)


# -- the sweep on hand-made traces: E, D and their crossing computed independently ---------------------------

def _hand_trace(x: float) -> GuidanceTrace:
    """Scales 1x1 and 2x2; the 2x2 map has magnitude x on the top-left token (the object) and 1 elsewhere."""
    fine = torch.tensor([[[x, 1.0], [1.0, 1.0]]])
    return GuidanceTrace((1, 2), 64, "hand", [torch.ones(1, 1, 1), fine], [torch.ones(1, 1, 1), torch.ones(1, 2, 2)],
                         [True, True])


def _expected(x: float) -> tuple[float, float]:
    """Pielou evenness of q = (x, 1, 1, 1) / (x + 3) (the 1x1 scale does not count), and the JS distance in bits
    of q to the reference: the background is all 1, so every resampled object magnitude is 1, r is uniform."""
    q = np.array([x, 1, 1, 1]) / (x + 3)
    r = np.full(4, 0.25)
    e = -(q * np.log(q)).sum() / np.log(4)
    m = (q + r) / 2
    jsd = 0.5 * ((q * np.log2(q / m)).sum() + (r * np.log2(r / m)).sum())
    return e, math.sqrt(jsd)


def test_sweep_balance_is_the_crossing_of_its_rows(model):
    strengths = (1.0, 2.0, 10.0, 30.0)
    xs = {1.0: 1.0, 2.0: 3.0, 10.0: 60.0, 30.0: 1000.0}  # object magnitude per CFG scale

    def hand_sampler(model, guider, generation, *, trace, callback):
        return SampleOutput(torch.zeros(1, 3, 64, 64), [], _hand_trace(xs[guider.cfg]))

    mask = torch.zeros(1, 64, 64)
    mask[:, :32, :32] = 1   # the top-left token
    result = sweep(model, CFG(3.0), strengths, Generation([1], batch_size=1), masks=mask, sampler=hand_sampler)
    expected = [_expected(xs[s]) for s in strengths]
    assert result.strengths == strengths and [r.guider.cfg for r in result.rows] == list(strengths)
    # float32 metrics of O(1) values: a few ulps of float32
    assert result.evenness == pytest.approx([e for e, _ in expected], abs=1e-6)
    assert result.divergence == pytest.approx([d for _, d in expected], abs=1e-6)
    gaps = [e - d for e, d in expected]
    i = next(i for i in range(3) if gaps[i] > 0 > gaps[i + 1])  # E - D changes sign between strengths i and i + 1
    crossing = strengths[i] + (strengths[i + 1] - strengths[i]) * gaps[i] / (gaps[i] - gaps[i + 1])
    assert result.balance.kind == "crossing"
    # the crossing is linear in the gaps: their 2e-6 error over a gap difference of order 1, times the interval
    assert result.balance.strength == pytest.approx(crossing, abs=1e-5 * (strengths[i + 1] - strengths[i]))
    without = sweep(model, CFG(3.0), strengths, Generation([1], batch_size=1), sampler=hand_sampler)
    assert without.divergence is None and without.balance is None and without.masks is None
