import math

import pytest
import torch

from scalewise.guidance import CFG, Draw, Generation, IGG, RunInfo, sample
from scalewise.guidance.igg import grounded_nudge, local_mask
from scalewise.guidance.stack import GuidanceRun
from rounding import U, attention_bound, gamma
from tiny import tiny_model

PN = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
INFO = RunInfo(PN, batch_size=2, vocab_size=64, family="var", autoregressive=True)


def logits(n, seed=0, batch=2, v=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n, v, generator=g) * 3, torch.randn(batch, n, v, generator=g) * 3


def test_equation_against_explicit_matrices():
    lc, lu = logits(16)
    delta = lc - lu
    a = torch.softmax(delta @ delta.transpose(1, 2) / math.sqrt(64), dim=-1)
    k = 3
    b = 1 + 2.0 * k / 9
    expected = lu + b * (a @ delta)
    # two fp32 evaluations (per image vs batched) of the same attention, then lu + b x (4 roundings)
    tol = max(2 * b * attention_bound(d, d, 1 / 8) for d in delta) + 4 * U * expected.abs().max().item()
    assert (GuidanceRun(IGG(2.0), INFO).combine(k, lc, lu) - expected).abs().max() <= tol


def test_mixed_scheme_adds_both_terms():
    lc, lu = logits(25)
    delta = lc - lu
    a = torch.softmax(delta @ delta.transpose(1, 2) / 8, dim=-1)
    k = 4
    expected = lu + (1 + 1.5 * k / 9) * delta + (1 + 2.0 * k / 9) * (a @ delta)
    b = 1 + 2.0 * k / 9
    tol = max(2 * b * attention_bound(d, d, 1 / 8) for d in delta) + 6 * U * expected.abs().max().item()
    assert (GuidanceRun(IGG(2.0, base=CFG(1.5)), INFO).combine(k, lc, lu) - expected).abs().max() <= tol
    # scale 0: the official total multiplier of the mixed scheme is 2 (one token: the softmax is exactly 1,
    # so only the few additions round, each within u of |lc| + |lu|)
    lc0, lu0 = logits(1)
    got = GuidanceRun(IGG(2.0, base=CFG(1.5)), INFO).combine(0, lc0, lu0)
    assert ((got - (2 * lc0 - lu0)).abs() <= 8 * U * (lc0.abs() + lu0.abs())).all()


def test_single_token_scale_is_cond_only():
    lc, lu = logits(1)
    assert torch.equal(GuidanceRun(IGG(3.0), INFO).combine(0, lc, lu), lc)


def test_window_one_is_exactly_cfg():
    model = tiny_model(seed=6)
    a = sample(model, IGG(3.0, window=1), Generation([1, 2], draw=Draw(top_k=1)), trace=True)
    b = sample(model, CFG(3.0), Generation([1, 2], draw=Draw(top_k=1)), trace=True)
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))
    assert torch.equal(a.images, b.images)


def test_window_covering_the_scale_equals_global():
    lc, lu = logits(16)
    delta = (lc - lu) * 0.1  # weak nudges: attention spreads over many tokens
    full = grounded_nudge(delta, side=4)
    assert torch.equal(grounded_nudge(delta, side=4, window=7), full)
    assert not torch.allclose(grounded_nudge(delta, side=4, window=3), full)


def test_local_mask_is_a_square_neighbourhood():
    mask = local_mask(5, 3, "cpu")
    assert mask.sum(1).view(5, 5)[2, 2] == 9 and mask.sum(1).view(5, 5)[0, 0] == 4
    assert torch.equal(local_mask(4, 1, "cpu"), torch.eye(16, dtype=torch.bool))


def test_batch_items_are_independent():
    lc, lu = logits(9, batch=3)
    both = grounded_nudge(lc - lu, side=3)
    assert torch.equal(both[1:2], grounded_nudge((lc - lu)[1:2], side=3))


def test_strong_nudge_attends_to_itself():
    delta = torch.randn(1, 9, 4096) * 0.3
    delta[0, 4] *= 10
    a = torch.softmax(delta[0] @ delta[0].T / 64, dim=-1)
    assert a[4, 4] > 0.99
    # out_4 - delta_4 = sum_j a_4j (delta_j - delta_4): at most (1 - a_44) max_j |delta_j - delta_4|, plus
    # the rounding of both a_44 and the nudge (attention_bound, twice; the 4096-long scores take the
    # probabilistic size, the worst case exceeds the whole signal here)
    spread = (delta[0] - delta[0, 4]).abs().max().item()
    tol = (1 - a[4, 4].item()) * spread + 2 * attention_bound(delta[0], delta[0], 1 / 64, probabilistic=True)
    assert (grounded_nudge(delta, side=3)[0, 4] - delta[0, 4]).abs().max() <= tol
    assert tol < 0.1 * delta[0, 4].abs().max()  # the bound is tight enough to mean something


def test_equal_nudges_are_unchanged():
    delta = torch.randn(1, 1, 32).expand(2, 16, 32)
    # mixing 16 equal rows returns delta * sum(a): the normalised weights sum to 1 within gamma_16, the
    # weighted sum adds gamma_16, whatever the scores' rounding
    assert ((grounded_nudge(delta, side=4) - delta).abs() <= (2 * gamma(16) + 2 * U) * delta.abs()).all()


def test_centered_operand_ignores_per_token_offsets():
    lc, lu = logits(9, batch=1)
    delta = lc - lu
    shifted = delta + torch.randn(1, 9, 1) * 50
    plain = grounded_nudge(delta - delta.mean(-1, keepdim=True), side=3, operand="raw_logits")
    centred = grounded_nudge(shifted, side=3, operand="centered")
    weights_plain = plain - (delta - delta.mean(-1, keepdim=True))
    assert centred.shape == plain.shape and torch.isfinite(weights_plain).all()


@pytest.mark.parametrize("kwargs", [dict(window=0), dict(window="square"), dict(operand="probs"),
                                    dict(scale=float("nan"))])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        IGG(**kwargs)
