import pytest
import torch

from scalewise.guidance import CFG, Draw, Generation, IGG, RunInfo, SoftCFG, sample
from scalewise.guidance.softcfg import _SoftCFGRuntime
from scalewise.guidance.stack import GuidanceRun
from rounding import gamma
from tiny import tiny_model

PN = (1, 2, 3, 4)
INFO = RunInfo(PN, batch_size=2, vocab_size=64, family="var", autoregressive=True)


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=7)


def test_strength_zero_equals_cfg(model):
    a = sample(model, SoftCFG(strength=0.0, base=CFG(3.0)), Generation([1, 2], draw=Draw(top_k=1)))
    b = sample(model, CFG(3.0), Generation([1, 2], draw=Draw(top_k=1)))
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens)) and torch.equal(a.images, b.images)


def test_unit_weights_equal_cfg(model, monkeypatch):
    monkeypatch.setattr(_SoftCFGRuntime, "value_weights", lambda self, k, cached: torch.ones(2, cached))
    a = sample(model, SoftCFG(base=CFG(3.0)), Generation([1, 2], draw=Draw(top_k=1)))
    b = sample(model, CFG(3.0), Generation([1, 2], draw=Draw(top_k=1)))
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))
    assert torch.equal(a.images, b.images)  # the same tokens decode through the same kernels


def test_softcfg_changes_the_uncond_branch(model):
    a = sample(model, SoftCFG(strength=3.0, normalization="none", base=CFG(3.0)),
               Generation([1, 2], draw=Draw(top_k=1)))
    b = sample(model, CFG(3.0), Generation([1, 2], draw=Draw(top_k=1)))
    assert torch.equal(a.tokens[1], b.tokens[1])  # scale 1 sees only the class slot: nothing to weight
    assert any(not torch.equal(x, y) for x, y in zip(a.tokens[2:], b.tokens[2:]))


def test_step_normalisation_budget():
    c = [torch.rand(2, 4), torch.rand(2, 9)]
    # shares c / sum c sum to 1 within gamma_n; 1 - (1 - s) and the sum of n of them add u each: 2 gamma_{n+1}
    w = SoftCFG(floor=0.0).weights(c)
    assert torch.allclose((1 - w).sum(1), torch.ones(2), rtol=0, atol=2 * gamma(14))
    w = SoftCFG(floor=0.0, normalization="per_scale").weights(c)
    assert torch.allclose((1 - w[:, :4]).sum(1), torch.ones(2), rtol=0, atol=2 * gamma(5))
    assert torch.allclose((1 - w[:, 4:]).sum(1), torch.ones(2), rtol=0, atol=2 * gamma(10))
    assert torch.equal(SoftCFG(normalization="none").weights(c), 1 - torch.cat(c, 1))  # strength 1: x ** 1 == x
    assert (SoftCFG(floor=0.5, normalization="per_scale").weights(c) >= 0.5).all()


def test_weights_layout_class_slot_and_cond_rows_untouched():
    from scalewise.guidance.sampler import _value_weights
    from scalewise.guidance.base import ScaleRecord
    run = GuidanceRun(SoftCFG(base=CFG(2.0)), INFO)
    for k, pn in enumerate(PN[:3]):
        cond = torch.randn(2, pn * pn, 64)
        run.observe(ScaleRecord(k, pn, cond, cond, cond, cond.argmax(-1)))
    full = _value_weights(run, 3, 14, 16, batch=2, rows=4, device="cpu")
    assert full.shape == (4, 30)
    assert (full[:2] == 1).all()            # cond rows
    assert (full[2:, 0] == 1).all()          # class / start slot
    assert (full[2:, 14:] == 1).all()        # this scale's own values
    assert (full[2:, 1:14] < 1).all()


def test_confidence_modes():
    from scalewise.guidance.base import ScaleRecord
    cond = torch.tensor([[[0.0, 2.0, 1.0]]]).expand(1, 4, 3)
    for mode, expected in (("max", cond.softmax(-1).amax(-1)), ("sampled", cond.softmax(-1)[..., 2])):
        rt = SoftCFG(confidence=mode, base=CFG(1.0)).runtime(INFO)
        rt.observe(ScaleRecord(1, 2, cond, None, cond, torch.full((1, 4), 2)))
        assert torch.equal(rt.confidences[0], expected)  # softmax of the same logits (temperature 1)


def test_refuses_non_autoregressive_models():
    info = RunInfo(PN, 1, 64, "switti", autoregressive=False)
    with pytest.raises(ValueError, match="non-autoregressive"):
        GuidanceRun(SoftCFG(base=CFG(6.0)), info)


def test_needs_a_cfg_or_igg_base():
    with pytest.raises(ValueError, match="base"):
        GuidanceRun(SoftCFG(), INFO)
    GuidanceRun(SoftCFG(base=IGG(2.0)), INFO)
