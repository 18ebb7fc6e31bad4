"""Infinity's text conditioning in the model (models/infinity.py `prepare_condition`, `start`): prompts and negative
prompts per image, one negative broadcast to all, the learned cfg_uncond[:len] without one, and refusals of
conditioning of another kind. The features themselves: tests/integration/test_infinity_text.py."""
import pytest
import torch

from scalewise.models.switti import TextCondition
from scalewise.models.infinity import InfinityText
from scalewise.tools.tiny_weights import tiny_infinity

WIDTH = 256  # the tiny model's text_channels


def feats(*lens, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, WIDTH, generator=g) for n in lens)


@pytest.fixture(scope="module")
def model():
    return tiny_infinity(seed=2)


def test_one_negative_is_broadcast_to_every_image(model):
    prompts, negative = feats(5, 9, 3), feats(4, seed=1)
    p = model.prepare_condition(InfinityText(prompts, negative), 4, first=1)
    assert [f.shape[0] for f in p.features] == [9, 3, 5, 9]          # image i: prompt (first + i) % 3
    assert all(n is negative[0] for n in p.negative)
    state = model.start(p, with_uncond=True)
    # rows: cond (4 segments of the prompts' lengths), then uncond (the negative's 4 rows each)
    assert [e - s for s, e in state.text.segments] == [9, 3, 5, 9, 4, 4, 4, 4]


def test_one_negative_per_prompt_follows_its_prompt(model):
    prompts, negatives = feats(5, 9), feats(2, 7, seed=1)
    p = model.prepare_condition(InfinityText(prompts, negatives), 3)
    assert [f.shape[0] for f in p.features] == [5, 9, 5]
    assert [n.shape[0] for n in p.negative] == [2, 7, 2]


def test_without_negative_the_uncond_rows_are_cfg_uncond_of_each_prompts_length(model):
    p = model.prepare_condition(InfinityText(feats(5, 9)), 2)
    assert p.negative is None
    state = model.start(p, with_uncond=True)
    assert [e - s for s, e in state.text.segments] == [5, 9, 5, 9]
    direct = model.transformer.text_rows([*p.features, model.transformer.cfg_uncond[:5],
                                          model.transformer.cfg_uncond[:9]])
    assert torch.equal(state.text.cond, direct.cond) and torch.equal(state.text.ca_kv, direct.ca_kv)


def test_conditioning_of_another_kind_or_shape_is_refused(model):
    switti = TextCondition(torch.zeros(1, 77, 2048), torch.zeros(1, 1280), torch.ones(1, 77, dtype=torch.bool))
    with pytest.raises(TypeError, match="conditioning: .*Infinity Text Encode node, got TextCondition"):
        model.prepare_condition(switti, 1)
    with pytest.raises(ValueError, match=r"\[1..16, 256\], got \(3, 2048\)"):  # flan-t5-xl width for a 256 model
        model.prepare_condition(InfinityText((torch.zeros(3, 2048),)), 1)
    with pytest.raises(ValueError, match="prompt 1 has 17 tokens, more than this model's text length of 16"):  # longer than the model's text_maxlen
        model.prepare_condition(InfinityText(feats(17)), 1)
    with pytest.raises(ValueError, match="2 negative prompts for 3 prompts"):
        model.prepare_condition(InfinityText(feats(2, 3, 4), feats(2, 2)), 3)
