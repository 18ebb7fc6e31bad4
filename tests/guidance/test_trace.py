import pytest
import torch

from scalewise.guidance import CFG, Draw, Generation, GuiderRuntime, SSG, sample
from scalewise.guidance.base import Guider
from rounding import gamma
from tiny import tiny_model


class _Spy(Guider):
    """Records what the guiders see, without changing anything."""
    kind = "spy"

    def __init__(self, base):
        self.base, self.records = base, []

    def runtime(self, info):
        spy = self

        class R(GuiderRuntime):
            def observe(self, record):
                spy.records.append((record.cond.clone(), None if record.uncond is None else record.uncond.clone(),
                                    record.logits))
        return R()


def test_trace_is_off_by_default():
    assert sample(tiny_model(), CFG(2.0), Generation([1], draw=Draw(top_k=1))).trace is None


def test_trace_records_magnitude_and_confidence():
    model = tiny_model(seed=9)
    spy = _Spy(CFG(2.0))
    out = sample(model, spy, Generation([4, 5], draw=Draw(top_k=1)), trace=True)
    tr = out.trace
    assert tr.patch_nums == model.patch_nums and tr.image_size == 64 and tr.guider.startswith("CFG 2 linear")
    assert tr.uncond_ran == [True] * 4
    for k, (cond, uncond, guided) in enumerate(spy.records):
        pn = model.patch_nums[k]
        expected = (guided - uncond).amax(-1).clamp(min=0).view(2, pn, pn)
        assert torch.equal(tr.magnitude[k], expected)  # the same elementwise ops on the same tensors
        # greedy decoding draws the most likely token: its confidence is the max probability. exp of
        # log_softmax vs softmax: both within gamma_V (the length-V sum) + a few u of the exact p
        tol = 2 * gamma(guided.shape[-1] + 4)
        assert torch.allclose(tr.confidence[k], guided.softmax(-1).amax(-1).view(2, pn, pn), rtol=tol, atol=0)
        assert tr.magnitude[k].shape == tr.confidence[k].shape == (2, pn, pn)
        assert not torch.isinf(guided).any()  # the sampler filtered a copy, never the guiders' tensor


def test_ssg_alone_measures_its_push_against_cond():
    out = sample(tiny_model(seed=9), SSG(0.5), Generation([4], draw=Draw(top_k=1)), trace=True)
    assert out.trace.uncond_ran == [False] * 4
    assert out.trace.magnitude[0].abs().max() == 0 and out.trace.magnitude[2].max() > 0


def test_select_one_image():
    out = sample(tiny_model(seed=9), CFG(2.0), Generation([4, 5, 6], draw=Draw(top_k=1)), trace=True)
    one = out.trace.select(1)
    assert one.batch_size == 1 and torch.equal(one.magnitude[3][0], out.trace.magnitude[3][1])


def test_temperature_does_not_count_as_guidance():
    """The last-scale temperature sharpens the draw but is no guidance: unguided scales measure 0."""
    model = tiny_model(seed=9)
    out = sample(model, CFG(2.0, end_scale=2), Generation([4], draw=Draw(top_k=1, last_scale_temperature=0.1)),
                 trace=True)
    assert out.trace.uncond_ran == [True, True, False, False]
    assert out.trace.magnitude[2].max() == 0 and out.trace.magnitude[3].max() == 0
    plain = sample(model, CFG(2.0, end_scale=2), Generation([4], draw=Draw(top_k=1)), trace=True)
    assert out.trace.confidence[3].mean() > plain.trace.confidence[3].mean()  # drawn from the sharpened one


def test_traces_of_parts_join_into_the_trace_of_the_batch():
    from scalewise.guidance.trace import concat_traces
    model = tiny_model(seed=9)
    whole = sample(model, CFG(2.0), Generation([4, 5, 6], draw=Draw(top_k=1)), trace=True).trace
    parts = [sample(model, CFG(2.0), Generation([4, 5], draw=Draw(top_k=1)), trace=True).trace,
             sample(model, CFG(2.0), Generation([6], batch_index=2, draw=Draw(top_k=1)), trace=True).trace]
    joined = concat_traces(parts)
    assert joined.batch_size == 3 and joined.uncond_ran == whole.uncond_ran
    for k, joined_k in enumerate(joined.magnitude):
        assert joined_k.shape == whole.magnitude[k].shape
        assert torch.equal(joined_k[:2], parts[0].magnitude[k]) and torch.equal(joined_k[2:], parts[1].magnitude[k])
        assert torch.equal(joined.confidence[k][2:], parts[1].confidence[k])
    unguided = sample(model, None, Generation([4], draw=Draw(top_k=1)), trace=True).trace
    with pytest.raises(ValueError, match="cannot be joined"):
        concat_traces([whole, unguided])
