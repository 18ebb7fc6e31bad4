"""The sampler on a model whose positions hold several independent draws (`token_groups` G > 1: Infinity's bits):
per-group drawing against torch.multinomial on the official [n d, 2] view, the model's cfg convention, every guider
and editing on bit tokens, per-image streams. References are computed here from recorded logits, not by the sampler."""
import pytest
import torch

from scalewise.guidance import CFG, IGG, SSG, Draw, Edit, Generation, Guider, GuiderRuntime, SoftCFG, sample
from scalewise.guidance.draw import per_draw, token_log_probability
from scalewise.models.infinity import InfinityText
from scalewise.tools.tiny_weights import tiny_infinity

BITS = 8
TAU = 20.0  # softened logits (tau before guidance): the random tiny model is otherwise near-certain


class Recorder(Guider):
    """Keeps, per scale, the raw cond/uncond logits and the logits the tokens were drawn from, over a base stack."""

    kind = "recorder"

    def __init__(self, base=None):
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "records", [])

    def runtime(self, info):
        records = self.records

        class Runtime(GuiderRuntime):
            def observe(self, record):
                records.append((record.cond.clone(), None if record.uncond is None else record.uncond.clone(),
                                record.logits.clone(), record.tokens.clone()))
        return Runtime()


def prompts(lens=(5, 9), seed=3):
    g = torch.Generator().manual_seed(seed)
    return InfinityText(tuple(torch.randn(n, 256, generator=g) for n in lens))


@pytest.fixture(scope="module")
def model():
    return tiny_infinity()


def test_tokens_are_bit_maps_and_greedy_takes_each_pairs_larger_logit(model):
    rec = Recorder(CFG(3.0, "constant"))
    out = sample(model, rec, Generation(prompts(), seed=0, draw=Draw(temperature=TAU, top_k=1)))
    assert model.token_groups == BITS
    for (cond, uncond, drawn, idx), tokens, (h, w) in zip(rec.records, out.tokens, model.config.scales):
        assert tokens.shape == (2, h, w, BITS) and tokens.dtype == torch.int64
        pairs = drawn.view(2, h * w, BITS, 2)
        assert torch.equal(tokens.view(2, h * w, BITS), (pairs[..., 1] > pairs[..., 0]).long())
        # Infinity's convention: cfg 3 is 3 l_c - 2 l_u (unguided_cfg = 1), not VAR's 4 l_c - 3 l_u
        torch.testing.assert_close(drawn, 3 * cond - 2 * uncond, rtol=1e-6, atol=1e-5)
    plain = Recorder(CFG(3.0, "constant"))  # tau 1: the same greedy bits (tau keeps each pair's order), so ...
    sample(model, plain, Generation(prompts(), seed=0, draw=Draw(top_k=1)))
    for (tau_cond, *_), (cond, *_) in zip(rec.records, plain.records):  # ... tau 20's logits are these times 1/20
        torch.testing.assert_close(tau_cond, cond * (1 / TAU), rtol=0, atol=0)


def test_cfg_at_the_models_unguided_value_runs_no_unconditional_rows(model):
    assert model.unguided_cfg == 1.0
    rec = Recorder(CFG(1.0, "constant"))
    plain = sample(model, None, Generation(prompts(), seed=4, draw=Draw(temperature=TAU, top_k=0, top_p=0.97)))
    one = sample(model, rec, Generation(prompts(), seed=4, draw=Draw(temperature=TAU, top_k=0, top_p=0.97)), trace=True)
    assert all(u is None for _, u, _, _ in rec.records) and not any(one.trace.uncond_ran)
    assert all(torch.equal(a, b) for a, b in zip(plain.tokens, one.tokens))


def test_each_bit_is_drawn_as_torch_multinomial_over_the_official_pairs_view(model):
    """One image: the official sampler's torch.multinomial(softmax(pairs).view(-1, 2), 1, generator) per scale,
    with one generator seeded once, replayed on the recorded logits (top-k/top-p off)."""
    rec = Recorder()
    out = sample(model, rec, Generation(prompts((7,)), seed=11, draw=Draw(temperature=TAU, top_k=0, top_p=0.0)))
    g = torch.Generator().manual_seed(11)
    for (_, _, drawn, _), tokens in zip(rec.records, out.tokens):
        probs = drawn.view(-1, 2).softmax(-1)
        want = torch.multinomial(probs, 1, generator=g)[:, 0]
        assert torch.equal(tokens.flatten(), want)
    assert 0.05 < torch.cat([t.flatten().float() for t in out.tokens]).mean() < 0.95  # real draws, not one bit


def test_top_p_acts_per_bit(model):
    """top-p 0.97 drops a bit's weaker value when its probability is <= 0.03, never the stronger one."""
    rec = Recorder()
    out = sample(model, rec, Generation(prompts((7,)), seed=2, draw=Draw(temperature=TAU, top_k=0, top_p=0.97)))
    for (_, _, drawn, _), tokens in zip(rec.records, out.tokens):
        p = drawn.view(-1, 2).softmax(-1)
        sure = p.amax(-1) >= 0.97
        assert torch.equal(tokens.flatten()[sure], p.argmax(-1)[sure])


def test_images_do_not_depend_on_the_batch_size(model):
    text = prompts((4, 6, 8))
    whole = sample(model, CFG(3.0, "constant"), Generation(text, seed=5, batch_size=3, draw=Draw(temperature=TAU, top_k=0)))
    for i in range(3):
        alone = sample(model, CFG(3.0, "constant"),
                       Generation(text, seed=5, batch_size=1, batch_index=i, draw=Draw(temperature=TAU, top_k=0)))
        assert all(torch.equal(a[i:i + 1], b) for a, b in zip(whole.tokens, alone.tokens))


@pytest.mark.parametrize("guider", [IGG(1.0, base=CFG(3.0, "constant")), SoftCFG(1.0, base=CFG(3.0, "constant")),
                                    SSG(0.5, base=CFG(3.0, "constant")), SSG(0.5), IGG(1.0)],
                         ids=["IGG+CFG", "SoftCFG", "SSG+CFG", "SSG", "IGG"])
def test_every_guider_runs_on_bit_logits(model, guider):
    out = sample(model, guider, Generation(prompts(), seed=1, draw=Draw(temperature=TAU, top_k=0, top_p=0.97)), trace=True)
    assert out.images.shape == (2, 3, 256, 256) and bool(torch.isfinite(out.images).all())
    assert all(0 <= float(c.min()) and float(c.max()) <= 1 for c in out.trace.confidence)


def test_igg_with_a_one_token_window_is_cfg_on_bits(model):
    gen = Generation(prompts(), seed=1, draw=Draw(temperature=TAU, top_k=0, top_p=0.97))
    a = sample(model, IGG(1.0, window=1), gen)
    b = sample(model, CFG(1.0), gen)  # IGG's weight 1 + scale s(k) on the linear schedule is CFG's with t = 1
    c = sample(model, CFG(2.0), gen)  # ... which is cfg 2 in Infinity's convention
    assert all(torch.equal(x, z) for x, z in zip(a.tokens, c.tokens))
    assert not all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))


def test_confidence_is_the_geometric_mean_over_the_bits():
    logits = torch.randn(2, 3, 2 * BITS)
    tokens = torch.randint(0, 2, (2, 3, BITS))
    p = logits.view(2, 3, BITS, 2).softmax(-1)
    chosen = torch.where(tokens == 1, p[..., 1], p[..., 0])
    want = chosen.prod(-1) ** (1 / BITS)
    torch.testing.assert_close(token_log_probability(logits, tokens, BITS).exp(), want, rtol=1e-6, atol=1e-7)
    assert per_draw(logits, BITS).shape == (2, 3 * BITS, 2) and per_draw(logits, 1) is logits


def test_softcfg_reweights_the_unconditional_rows_from_per_bit_confidences(model):
    """SoftCFG's weights of scale j's positions come from scale j's confidences, first used at scale j + 1 >= 2
    (scale 0 is the start slot, weight 1): the unconditional logits equal plain CFG's on scales 0 and 1, differ
    after; the conditional ones never change."""
    gen = Generation(prompts(), seed=3, draw=Draw(temperature=TAU, top_k=1))
    soft, plain = Recorder(SoftCFG(3.0, base=CFG(3.0, "constant"))), Recorder(CFG(3.0, "constant"))
    sample(model, soft, gen)
    sample(model, plain, gen)
    for k, ((c1, u1, _, t1), (c2, u2, _, t2)) in enumerate(zip(soft.records, plain.records)):
        assert torch.equal(t1, t2)  # greedy: the same bits up to here, so the same inputs
        assert torch.equal(c1, c2)
        assert torch.equal(u1, u2) == (k < 2), k


def test_editing_keeps_the_images_bits(model):
    image = sample(model, None, Generation(prompts((5,)), seed=8, draw=Draw(temperature=TAU, top_k=1))).images
    encoded = model.encode_image(image)
    kept = sample(model, CFG(3.0, "constant"), Generation(prompts((5,)), seed=1, draw=Draw(temperature=TAU, top_k=0),
                                                           edit=Edit(image=image, denoise=0.0)))
    assert all(torch.equal(a, b) for a, b in zip(kept.tokens, encoded))
    mask = torch.zeros(1, 256, 256)
    mask[:, :, 128:] = 1  # regenerate the right half
    half = sample(model, CFG(3.0, "constant"), Generation(prompts((5,)), seed=1, draw=Draw(temperature=TAU, top_k=0),
                                                           edit=Edit(image=image, mask=mask, denoise=1.0)))
    last, want = half.tokens[-1], encoded[-1]
    assert torch.equal(last[:, :, :8], want[:, :, :8])  # the kept left half: the image's own bits
    assert not torch.equal(last[:, :, 8:], want[:, :, 8:])


def test_more_smooth_is_refused_for_a_family_without_gumbel_smoothing(model):
    with pytest.raises(ValueError, match="more_smooth: the infinity family has no Gumbel smoothing"):
        sample(model, None, Generation(prompts(), seed=0, draw=Draw(temperature=TAU, more_smooth=True)))


def test_a_per_scale_cfg_list_as_the_official_cfg_list(model):
    """cfg_list (3, 1, 3, 2, 1, 1, 1): scale k's bits drawn from c_k l_c + (1 - c_k) l_u; the unconditional rows
    still run at scale 1 (cfg 1) for the cache the guided scale 2 reads, and stop after the last guided scale."""
    cfgs = (3.0, 1.0, 3.0, 2.0, 1.0, 1.0, 1.0)
    rec = Recorder(CFG(schedule="custom", custom_cfgs=cfgs))
    sample(model, rec, Generation(prompts(), seed=0, draw=Draw(temperature=TAU, top_k=1)))
    for k, ((cond, uncond, drawn, _), c) in enumerate(zip(rec.records, cfgs)):
        assert (uncond is not None) == (k <= 3), k
        if c == 1.0:
            assert torch.equal(drawn, cond), k
        else:
            torch.testing.assert_close(drawn, c * cond + (1 - c) * uncond, rtol=1e-6, atol=1e-5)
