import math

import pytest
import torch

from scalewise.guidance import CFG, RunInfo
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
