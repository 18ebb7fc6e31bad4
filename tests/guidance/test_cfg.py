import math

import pytest
import torch

from scalewise.guidance import CFG, RunInfo
from scalewise.guidance.cfg import CFG_RANGE
from scalewise.guidance.stack import GuidanceRun

INFO = RunInfo(patch_nums=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16), batch_size=2, vocab_size=8, family="var",
               autoregressive=True)


def test_linear_ramp_is_vars_schedule():
    cfg = CFG(1.5)
    assert [round(cfg.weight(k, 10) - 1, 3) for k in range(10)] == \
        [0, 0.167, 0.333, 0.5, 0.667, 0.833, 1.0, 1.167, 1.333, 1.5]


def test_constant_cosine_and_window():
    assert all(CFG(4.0, "constant").weight(k, 10) == 5.0 for k in range(10))
    cos = CFG(2.0, "cosine", power=2.0)
    assert cos.weight(0, 10) == 1.0 and math.isclose(cos.weight(9, 10), 3.0)
    assert math.isclose(cos.weight(3, 10), 1 + 2 * 0.5 * (1 - math.cos(math.pi * (3 / 9) ** 2)))
    win = CFG(6.0, start_scale=2, end_scale=8)
    assert [win.weight(k, 10) is not None for k in range(10)] == [False] * 2 + [True] * 6 + [False] * 2
    assert [CFG(1.0, end_scale=-3).weight(k, 10) is not None for k in range(10)] == [True] * 7 + [False] * 3


def test_combination_is_vars_formula_exactly():
    torch.manual_seed(0)
    lc, lu = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    run = GuidanceRun(CFG(1.5), INFO)
    for k in range(10):
        t = 1.5 * k / 9
        expected = lc if k == 0 else (1 + t) * lc - t * lu
        assert torch.equal(run.combine(k, lc, lu), expected)


def test_outside_window_is_cond_only_and_skips_uncond():
    run = GuidanceRun(CFG(6.0, start_scale=0, end_scale=8), INFO)
    lc, lu = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    assert torch.equal(run.combine(9, lc, lu), lc)
    assert run.uncond_scales == frozenset(range(8))
    non_ar = GuidanceRun(CFG(6.0, start_scale=2, end_scale=8), RunInfo(**{**INFO.__dict__, "autoregressive": False}))
    assert non_ar.uncond_scales == frozenset(range(2, 8))


def test_guidance_off_means_cond_only():
    lc, lu = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    assert torch.equal(GuidanceRun(None, INFO).combine(5, lc, lu), lc)
    assert GuidanceRun(CFG(0.0), INFO).uncond_scales == frozenset()


@pytest.mark.parametrize("kwargs", [dict(cfg=float("nan")), dict(cfg=float("inf")), dict(schedule="cubic"),
                                    dict(cfg=1e6)])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        CFG(**kwargs)


def test_two_cfg_in_a_stack_is_an_error():
    with pytest.raises(ValueError, match="at most one"):
        GuidanceRun(CFG(1.0, base=CFG(2.0)), INFO)


def test_guiders_are_immutable():
    with pytest.raises(Exception):
        CFG(1.0).cfg = 3.0


def test_the_custom_schedule_is_a_cfg_per_scale_in_the_models_convention():
    """Infinity's official cfg_list: scale k combines c_k l_c + (1 - c_k) l_u (c0 = 1); VAR's convention (c0 = 0)
    (1 + c_k) l_c - c_k l_u; a scale at c0 is cond-only, and scales past the list are unguided."""
    infinity = RunInfo(**{**INFO.__dict__, "patch_nums": (1, 2, 4, 6), "family": "infinity", "unguided_cfg": 1.0})
    lc, lu = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    run = GuidanceRun(CFG(schedule="custom", custom_cfgs=(3.0, 1.0, 2.5)), infinity)
    torch.testing.assert_close(run.combine(0, lc, lu), 3.0 * lc + (1 - 3.0) * lu, rtol=1e-6, atol=1e-6)
    assert torch.equal(run.combine(1, lc, lu), lc) and torch.equal(run.combine(3, lc, lu), lc)
    torch.testing.assert_close(run.combine(2, lc, lu), 2.5 * lc + (1 - 2.5) * lu, rtol=1e-6, atol=1e-6)
    assert run.uncond_scales == frozenset({0, 1, 2})  # autoregressive: scale 1's uncond rows fill the KV cache
    var = GuidanceRun(CFG(schedule="custom", custom_cfgs=(0.0, 4.0)), INFO)
    torch.testing.assert_close(var.combine(1, lc, lu), 5.0 * lc - 4.0 * lu, rtol=1e-6, atol=1e-6)
    assert var.uncond_scales == frozenset({0, 1})
    assert CFG(schedule="custom", custom_cfgs=(3.0, 1.0)).label() == "CFG custom 3,1"
    with pytest.raises(ValueError, match="custom schedule has no single strength"):
        CFG(schedule="custom", custom_cfgs=(3.0,)).with_strength(2.0)
    with pytest.raises(ValueError, match="custom cfg"):
        CFG(schedule="custom", custom_cfgs=(3.0, float("nan")))


def test_infinitys_convention_counts_from_one():
    infinity = RunInfo(**{**INFO.__dict__, "unguided_cfg": 1.0})
    lc, lu = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    assert GuidanceRun(CFG(1.0, "constant"), infinity).uncond_scales == frozenset()
    torch.testing.assert_close(GuidanceRun(CFG(3.0, "constant"), infinity).combine(4, lc, lu), 3 * lc - 2 * lu,
                               rtol=1e-6, atol=1e-6)
    # the linear ramp shapes the push above no guidance: g(k) = 1 + (cfg - 1) k / (K - 1)
    assert math.isclose(CFG(3.0).weight(9, 10, unguided_cfg=1.0), 3.0) and CFG(3.0).weight(0, 10, 1.0) == 1.0


def test_more_custom_cfgs_than_scales_are_refused_when_sampling_starts():
    from scalewise.guidance import Generation, sample
    from tiny import tiny_model
    model = tiny_model()
    K = len(model.patch_nums)
    guider = CFG(schedule="custom", custom_cfgs=(2.0,) * (K + 1))
    with pytest.raises(ValueError, match=f"custom_cfgs has {K + 1} values but this var model has {K} scales"):
        sample(model, guider, Generation([1]))
    out = sample(model, CFG(schedule="custom", custom_cfgs=(2.0,) * K), Generation([1]))  # K values: fine
    assert len(out.tokens) == K


def test_cfg_and_custom_cfgs_have_the_widget_range():
    # CFG_RANGE = the CFG node's cfg widget (0..30); custom cfgs share it (Infinity's convention: 0 = unconditional)
    assert CFG_RANGE == (0.0, 30.0)
    CFG(0.0), CFG(30.0), CFG(schedule="custom", custom_cfgs=(0.0, 30.0))
    for bad in (-0.5, 30.5, -1.0, 100.0):
        with pytest.raises(ValueError, match="cfg must be in"):
            CFG(bad)
        with pytest.raises(ValueError, match="custom cfg must be in"):
            CFG(schedule="custom", custom_cfgs=(3.0, bad))
