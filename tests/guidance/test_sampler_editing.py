"""Editing through the sampler: kept tokens, reconstruction, an independent teacher-forced greedy editor,
image-to-image, every guider, both Switti variants, the trace's edit mask."""
import pytest
import torch

from scalewise.guidance import CFG, Draw, Edit, Generation, IGG, SSG, SoftCFG, sample
from scalewise.guidance.editing import kept_scale_count, plan_edit
from scalewise.guidance.metrics import summary
from scalewise.guidance.schedules import ramp
from tiny import random_text, tiny_model, tiny_switti

SIZE = 64  # tiny models: scales (1, 2, 3, 4), 16 px per finest token


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=11)


@pytest.fixture(scope="module")
def image():
    low = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    return torch.nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bilinear").clamp(0, 1)


def disc_mask(batch=1):
    """A soft-edged disc in the middle (1 = regenerate), not aligned to the token grid."""
    yy, xx = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    r = ((yy - 30) ** 2 + (xx - 34) ** 2).sqrt()
    return (1 - (r - 14).clamp(0, 4) / 4).expand(batch, -1, -1).clone()


def teacher_forced_edit(model, label, scale, tokens, keep):
    """Greedy edit written independently of the sampler: teacher-forced logits of the whole sequence (the
    block-causal mask makes scale k see only scales < k, so the unknown later tokens may be anything),
    VAR's linear CFG ramp, argmax, then the kept tokens replaced by the image's."""
    t, pns = model.transformer, model.patch_nums
    out = [torch.zeros_like(x) for x in tokens]
    labels = torch.tensor([label, model.num_classes])
    offsets = t.config.scale_offsets
    for k, pn in enumerate(pns):
        inputs = model.teacher_forcing_inputs(out).repeat(2, 1, 1)
        logits = t.forward_teacher(labels, inputs)[:, offsets[k]:offsets[k] + pn * pn]
        w = scale * ramp(k, len(pns))
        guided = (1 + w) * logits[0] - w * logits[1]
        drawn = guided.argmax(-1).view(1, pn, pn)
        out[k] = torch.where(keep[k], tokens[k], drawn)
    return out


def equal_tokens(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_kept_tokens_are_the_images_own_at_every_scale(model, image):
    mask = disc_mask()
    out = sample(model, CFG(3.0), Generation([5], seed=3, draw=Draw(top_k=50, top_p=0.9),
                                             edit=Edit(image[:1], mask=mask)))
    plan = plan_edit(model, Edit(image[:1], mask), 1)
    generated = 0
    for tok, own, keep in zip(out.tokens, plan.tokens, plan.keep):
        assert torch.equal(tok[keep], own[keep])
        generated += int((tok[~keep] != own[~keep]).sum())
    assert generated > 0  # the masked region really was regenerated
    assert plan.keep[0].all() and not plan.keep[-1].all() and plan.keep[-1].any()


def test_empty_mask_gives_back_the_reconstruction(model, image):
    out = sample(model, CFG(3.0), Generation([5], seed=0, draw=Draw(top_k=50),
                                             edit=Edit(image[:1], mask=torch.zeros(1, SIZE, SIZE))))
    own = model.encode_image(image[:1])
    assert equal_tokens(out.tokens, own)
    # the same float32 sum of the same scale contributions, decoded by the same network
    assert torch.allclose(out.images, model.decode(model.vae.quantize.tokens_to_fhat(own, model.patch_nums)), atol=1e-6)


def test_denoise_zero_is_the_reconstruction_too(model, image):
    out = sample(model, CFG(3.0), Generation([5], seed=0, draw=Draw(top_k=50), edit=Edit(image[:1], denoise=0.0)))
    assert equal_tokens(out.tokens, model.encode_image(image[:1]))


@pytest.mark.parametrize("label,scale", [(5, 3.0), (1000, 2.0)])
def test_greedy_edit_equals_an_independent_teacher_forced_editor(model, image, label, scale):
    mask = disc_mask()
    out = sample(model, CFG(scale), Generation([label], draw=Draw(top_k=1), edit=Edit(image[1:], mask=mask)))
    plan = plan_edit(model, Edit(image[1:], mask), 1)
    assert equal_tokens(out.tokens, teacher_forced_edit(model, label, scale, plan.tokens, plan.keep))


def test_full_mask_is_plain_generation_except_the_map_kept_whole(model, image):
    full = sample(model, CFG(3.0), Generation([5], draw=Draw(top_k=1),
                                              edit=Edit(image[:1], mask=torch.ones(1, SIZE, SIZE))))
    plain = sample(model, CFG(3.0), Generation([5], draw=Draw(top_k=1)))
    own = model.encode_image(image[:1])
    nothing = [torch.zeros_like(t, dtype=torch.bool) for t in own]
    only_first = [torch.ones_like(own[0], dtype=torch.bool)] + nothing[1:]
    assert equal_tokens(plain.tokens, teacher_forced_edit(model, 5, 3.0, own, nothing))
    assert equal_tokens(full.tokens, teacher_forced_edit(model, 5, 3.0, own, only_first))
    assert torch.equal(full.tokens[0], own[0])


def test_strict_rule_full_mask_is_plain_generation_and_kept_tokens_stay(model, image):
    plain = sample(model, CFG(3.0), Generation([5], seed=4, draw=Draw(top_k=50)))
    full = sample(model, CFG(3.0), Generation([5], seed=4, draw=Draw(top_k=50),
                                              edit=Edit(image[:1], mask=torch.ones(1, SIZE, SIZE), mask_rule="strict")))
    assert equal_tokens(full.tokens, plain.tokens) and torch.equal(full.images, plain.images)
    out = sample(model, CFG(3.0), Generation([5], seed=4, draw=Draw(top_k=50), edit=Edit(image[:1], mask=disc_mask(),
                                                                                         mask_rule="strict")))
    plan = plan_edit(model, Edit(image[:1], disc_mask(), 1.0, "strict"), 1)
    assert all(torch.equal(t[k], o[k]) for t, o, k in zip(out.tokens, plan.tokens, plan.keep))
    assert not plan.keep[0].any() and plan.keep[-1].any()


def test_denoise_keeps_the_first_scales_and_combines_with_a_mask(model, image):
    mask = disc_mask()
    out = sample(model, CFG(3.0), Generation([5], seed=1, draw=Draw(top_k=50), edit=Edit(image[:1], mask=mask,
                                                                                         denoise=0.5)))
    own = model.encode_image(image[:1])
    kept = kept_scale_count(0.5, 4)
    assert kept == 2 and equal_tokens(out.tokens[:kept], own[:kept])
    keep = plan_edit(model, Edit(image[:1], mask), 1).keep
    for tok, o, kp in zip(out.tokens[kept:], own[kept:], keep[kept:]):
        assert torch.equal(tok[kp], o[kp])
    alone = sample(model, CFG(3.0), Generation([5], seed=1, draw=Draw(top_k=50), edit=Edit(image[:1], denoise=0.5)))
    assert equal_tokens(alone.tokens[:kept], own[:kept])
    assert not equal_tokens(alone.tokens[kept:], own[kept:])


@pytest.mark.slow
def test_image_and_mask_broadcast_and_images_keep_their_seeds(model, image):
    mask = disc_mask(2)
    mask[1] = torch.flip(mask[1], (0,))
    batch = sample(model, CFG(2.0), Generation([3, 4], seed=9, draw=Draw(top_k=40), edit=Edit(image[:1], mask=mask)))
    for i in range(2):
        single = sample(model, CFG(2.0), Generation([3 + i], seed=9, batch_index=i, draw=Draw(top_k=40),
                                                    edit=Edit(image[:1], mask=mask[i:i + 1])))
        assert equal_tokens([t[i:i + 1] for t in batch.tokens], single.tokens)
    per_image = sample(model, CFG(2.0), Generation([3, 3], seed=9, draw=Draw(top_k=40),
                                                   edit=Edit(image, mask=mask[:1])))
    own = model.encode_image(image)
    keep = plan_edit(model, Edit(image, mask[:1]), 2).keep
    assert all(torch.equal(t[k], o[k]) for t, o, k in zip(per_image.tokens, own, keep))


@pytest.mark.parametrize("guider", [
    None, CFG(3.0), IGG(1.85), SoftCFG(strength=2.0, base=CFG(3.0)), SSG(0.3, base=CFG(3.0)),
    SSG(0.2, base=IGG(1.5)), SoftCFG(strength=1.0, confidence="sampled", base=IGG(1.5))])
def test_every_guider_edits(model, image, guider):
    mask = disc_mask()
    out = sample(model, guider, Generation([7], seed=2, draw=Draw(top_k=60, more_smooth=True),
                                           edit=Edit(image[:1], mask=mask)), trace=True)
    plan = plan_edit(model, Edit(image[:1], mask), 1)
    assert all(torch.equal(t[k], o[k]) for t, o, k in zip(out.tokens, plan.tokens, plan.keep))
    assert torch.isfinite(out.images).all()
    assert torch.equal(out.trace.edit_mask, plan.regenerated)
    assert summary(out.trace)["divergence"] is not None  # the edit region is the heat map's foreground


def test_edit_region_is_the_regenerated_tokens(model, image):
    out = sample(model, CFG(2.0), Generation([7], draw=Draw(top_k=1), edit=Edit(image[:1], mask=disc_mask())),
                 trace=True)
    keep = plan_edit(model, Edit(image[:1], disc_mask()), 1).keep[-1]
    expected = (~keep).float().repeat_interleave(16, 1).repeat_interleave(16, 2)
    assert torch.equal(out.trace.edit_mask, expected)
    assert (expected >= (disc_mask() >= 0.5)).all()  # every marked pixel lies in a regenerated token
    assert sample(model, CFG(2.0), Generation([7], draw=Draw(top_k=1)), trace=True).trace.edit_mask is None


@pytest.mark.slow
@pytest.mark.parametrize("autoregressive", [False, True])
def test_switti_text_guided_inpainting(image, autoregressive):
    model = tiny_switti(autoregressive=autoregressive, seed=2)
    text = random_text(batch=1)
    guider = SoftCFG(strength=1.0, base=CFG(4.0, schedule="constant")) if autoregressive else CFG(4.0)
    mask = disc_mask()
    out = sample(model, guider, Generation(text, seed=0, draw=Draw(top_k=400, top_p=0.95, more_smooth=True,
                                                                   smooth_start_scale=2), edit=Edit(image[:1], mask=mask)), trace=True)
    plan = plan_edit(model, Edit(image[:1], mask), 1)
    assert all(torch.equal(t[k], o[k]) for t, o, k in zip(out.tokens, plan.tokens, plan.keep))
    assert any((t[~k] != o[~k]).any() for t, o, k in zip(out.tokens, plan.tokens, plan.keep))
    empty = sample(model, guider, Generation(text, seed=0, draw=Draw(top_k=400),
                                             edit=Edit(image[:1], mask=torch.zeros(1, SIZE, SIZE))))
    assert equal_tokens(empty.tokens, plan.tokens)


def test_bad_edit_inputs_fail_before_any_work(model):
    with pytest.raises(ValueError, match="mask is connected but image is not"):
        sample(model, CFG(2.0), Generation([1], edit=Edit.from_inputs(mask=torch.zeros(1, SIZE, SIZE))))
    with pytest.raises(ValueError, match="image batch 3 does not match the batch of 2"):
        sample(model, CFG(2.0), Generation([1, 2], edit=Edit(torch.rand(3, 3, SIZE, SIZE), denoise=0.5)))
