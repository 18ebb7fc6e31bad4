import json
import math

import pytest
import torch

from scalewise.guidance.metrics import divergence, evenness, evenness_per_scale, summary
from scalewise.guidance.trace import GuidanceTrace
from rounding import gamma, unit_roundoff

F32_EPS = torch.finfo(torch.float32).eps

PATCH_NUMS = (1, 2, 3, 4, 6, 8)
SIZE = 64


def make_trace(magnitude, size=SIZE):
    patch_nums = tuple(m.shape[1] for m in magnitude)
    return GuidanceTrace(patch_nums, size, "test", magnitude, [torch.rand_like(m) for m in magnitude],
                         [True] * len(magnitude))


def random_trace(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return make_trace([torch.rand(batch, p, p, generator=g) for p in PATCH_NUMS])


def centre_mask(size=SIZE):
    mask = torch.zeros(size, size)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return mask


def test_evenness_uniform_is_one_and_one_hot_is_zero():
    # computed in float64 (error ~gamma_25 in float64) and returned as float32: within one float32 ulp
    assert torch.allclose(evenness_per_scale(torch.full((3, 5, 5), 0.7)), torch.ones(3), rtol=0, atol=F32_EPS)
    one_hot = torch.zeros(2, 4, 4)
    one_hot[:, 1, 2] = 3.0
    assert torch.equal(evenness_per_scale(one_hot), torch.zeros(2))  # 1 ln 1 and 0 ln 0 are exactly 0


def test_evenness_nan_for_single_token_and_zero_map():
    assert torch.isnan(evenness_per_scale(torch.ones(2, 1, 1))).all()
    values = evenness_per_scale(torch.stack([torch.zeros(3, 3), torch.ones(3, 3)]))
    assert math.isnan(values[0]) and values[1] == pytest.approx(1.0, rel=0, abs=F32_EPS)


def test_evenness_aggregate_is_token_weighted_and_skips_undefined_scales():
    magnitude = [torch.ones(1, 1, 1), torch.ones(1, 2, 2), torch.zeros(1, 3, 3), torch.zeros(1, 4, 4)]
    magnitude[3][0, 0, 0] = 1.0                       # E = 0 on 16 tokens, E = 1 on 4, 1x1 and zero map skipped
    result = evenness(make_trace(magnitude))
    assert result["per_scale"].shape == (1, 4)
    assert result["mean"].item() == pytest.approx(4 / 20, rel=F32_EPS)  # float64 mean, one float32 rounding


def test_evenness_in_unit_interval():
    result = evenness(random_trace(batch=4))
    finite = result["per_scale"][~torch.isnan(result["per_scale"])]
    assert ((finite >= 0) & (finite <= 1)).all() and ((result["mean"] >= 0) & (result["mean"] <= 1)).all()


def test_divergence_zero_when_magnitudes_uniform():
    trace = make_trace([torch.full((2, p, p), 0.4) for p in PATCH_NUMS])
    result = divergence(trace, centre_mask())
    finite = result["per_scale"][~torch.isnan(result["per_scale"])]
    # the two distributions agree to eps = gamma_{2n+16} (float64 normalising sums over n tokens, the mean
    # of 16 draws); each log(q/m) is then within eps + u of 0, so JSD <= 2 (eps + u) / ln 2 and the
    # distance, its square root, is at most sqrt of that (then one float32 rounding)
    n = max(PATCH_NUMS) ** 2
    tol = math.sqrt(2 * (gamma(2 * n + 16, torch.float64) + unit_roundoff(torch.float64)) / math.log(2)) + F32_EPS
    assert finite.numel() > 0 and (finite.abs() <= tol).all()
    assert (result["mean"].abs() <= tol).all()


def test_divergence_positive_for_foreground_concentrated_guidance():
    mask = centre_mask()
    magnitude = []
    for p in PATCH_NUMS:
        foreground = torch.nn.functional.interpolate(mask[None, None], size=(p, p), mode="area")[0] >= 0.5
        magnitude.append(torch.where(foreground, 1.0, 0.05).expand(2, p, p).clone())
    result = divergence(make_trace(magnitude), mask)
    assert (result["mean"] > 0.3).all()
    assert (result["mean"] <= 1).all()


def test_divergence_skips_scales_with_empty_or_full_background():
    trace = random_trace()
    for mask in (torch.ones(SIZE, SIZE), torch.zeros(SIZE, SIZE)):
        result = divergence(trace, mask)
        assert torch.isnan(result["per_scale"]).all() and torch.isnan(result["mean"]).all()
    result = divergence(trace, centre_mask())
    assert torch.isnan(result["per_scale"][:, 0]).all()          # 1x1: one token, all fore- or background
    assert not torch.isnan(result["per_scale"][:, -1]).any()


def test_divergence_nan_when_magnitude_all_zero():
    trace = make_trace([torch.zeros(1, p, p) for p in PATCH_NUMS])
    assert torch.isnan(divergence(trace, centre_mask())["per_scale"]).all()


def test_divergence_deterministic_and_seed_dependent():
    trace, mask = random_trace(), centre_mask()
    first = divergence(trace, mask, seed=3)["per_scale"]
    again = divergence(trace, mask, seed=3)["per_scale"]
    assert torch.allclose(first, again, rtol=0, atol=0, equal_nan=True)
    other = divergence(trace, mask, seed=4, draws=2)["per_scale"]
    assert not torch.allclose(first, other, equal_nan=True)


def test_divergence_per_image_independent_of_batch():
    trace, mask = random_trace(batch=3), centre_mask()
    batched = divergence(trace, mask)["per_scale"]
    alone = divergence(trace.select(1), mask)["per_scale"]
    assert torch.allclose(batched[1:2], alone, equal_nan=True)


def test_divergence_in_unit_interval():
    result = divergence(random_trace(batch=4), centre_mask())
    finite = result["per_scale"][~torch.isnan(result["per_scale"])]
    assert finite.numel() > 0 and ((finite >= 0) & (finite <= 1)).all()


def test_mask_batch_broadcasts_and_per_image_masks_work():
    trace, mask = random_trace(batch=2), centre_mask()
    single = divergence(trace, mask[None])["per_scale"]
    assert torch.allclose(single, divergence(trace, mask)["per_scale"], equal_nan=True)
    per_image = divergence(trace, torch.stack([mask, mask]))["per_scale"]
    assert torch.allclose(single, per_image, equal_nan=True)


def test_mask_size_and_batch_errors():
    trace = random_trace(batch=2)
    with pytest.raises(ValueError, match="32x32.*64x64"):
        divergence(trace, torch.ones(32, 32))
    with pytest.raises(ValueError, match="batch 3.*batch 2"):
        divergence(trace, torch.ones(3, SIZE, SIZE))
    with pytest.raises(ValueError, match=r"mask must be a mask \[B, H, W\].*got \[1, 2, "):
        divergence(trace, torch.ones(1, 2, SIZE, SIZE))


def test_segmenter_mask_layouts_give_the_same_divergence():
    trace = random_trace(batch=2)
    mask = torch.zeros(2, SIZE, SIZE)
    mask[:, : SIZE // 2] = 1
    plain = divergence(trace, mask)["mean"]
    assert torch.equal(divergence(trace, mask[:, None])["mean"], plain)  # [B, 1, H, W]
    assert torch.equal(divergence(trace, mask[..., None])["mean"], plain)  # [B, H, W, 1]


def test_summary_is_json_friendly():
    trace = random_trace()
    plain = summary(trace)
    assert plain["divergence"] is None and plain["evenness"]["per_scale"][0][0] is None
    text = json.dumps(summary(trace, centre_mask()), allow_nan=False)
    loaded = json.loads(text)
    assert len(loaded["divergence"]["mean"]) == 2 and len(loaded["evenness"]["per_scale"][1]) == len(PATCH_NUMS)


def test_divergence_depends_on_where_the_mask_is():
    """Guidance concentrated on the object: the object's mask gives a large D; a mask over a patch of
    background (guided like most of its surroundings) gives a much smaller one."""
    mask = centre_mask()
    magnitude = []
    for p in PATCH_NUMS:
        foreground = torch.nn.functional.interpolate(mask[None, None], size=(p, p), mode="area")[0] >= 0.5
        magnitude.append(torch.where(foreground, 1.0, 0.05).expand(1, p, p).clone())
    trace = make_trace(magnitude)
    corner = torch.zeros(SIZE, SIZE)
    corner[:SIZE // 4, :SIZE // 4] = 1
    on_object = divergence(trace, mask)["mean"].item()
    off_object = divergence(trace, corner)["mean"].item()
    assert on_object > 0.3 and off_object < on_object / 3
