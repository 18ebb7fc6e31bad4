import pytest
import torch

from scalewise.guidance import CFG, Draw, Generation, sample
from scalewise.models import SCHEDULES
from rounding import stack_bound
from tiny import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=5)


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens)) and torch.equal(a.images, b.images)


def test_output_shapes_and_range(model):
    out = sample(model, CFG(4.0), Generation([3, 207, 999], seed=0, draw=Draw(top_k=1, top_p=0.0)))
    assert out.images.shape == (3, 3, 64, 64) and out.images.dtype == torch.float32
    assert 0 <= out.images.min() and out.images.max() <= 1
    assert [tuple(t.shape) for t in out.tokens] == [(3, p, p) for p in model.patch_nums]
    assert all(t.dtype == torch.int64 for t in out.tokens)


def decode_bound(model) -> float:
    """Largest rounding difference between two decodes of the same tokens (in [0, 1] image units).

    Tokens equal, the images come from the same f_hat -> decoder maths, but the conv kernels choose
    their blocking (summation order) from the batch size, so each result is within the stack's
    first-order bound (`rounding.stack_bound`) of the exact value: the quantiser's phi convs, the
    post-quant conv and every decoder conv/linear layer, plus the decoder attention's reductions (channels
    and latent tokens of its 4 blocks). The decoder output is O(1) before the clamp and an image is
    (x + 1) / 2, so two results differ by at most 2 x bound x 1/2."""
    vae, side = model.vae, model.patch_nums[-1]
    attention = sum(1 for m in vae.decoder.modules() if m.__class__.__name__.startswith("Attn"))
    width = max(m.out_channels for m in vae.decoder.modules() if isinstance(m, torch.nn.Conv2d))
    return stack_bound(vae.quantize.quant_resi, vae.post_quant_conv, vae.decoder,
                       extra=(width, side * side) * attention)


def test_per_image_seeds_do_not_depend_on_batch_size(model):
    """Tokens are identical; the images differ only by the decode's rounding (`decode_bound`).
    A mixed-up random stream would change tokens, and a row leaking into another would change the
    image by O(0.1), far above the bound (1.8e-3 for this model)."""
    bound = decode_bound(model)
    assert bound < 1e-2  # still far below what a leak between rows would cause
    batch = sample(model, CFG(2.0), Generation([10, 11, 12], seed=40, draw=Draw(top_k=50, top_p=0.9)))
    for i, label in enumerate([10, 11, 12]):
        single = sample(model, CFG(2.0), Generation([label], seed=40, batch_index=i, draw=Draw(top_k=50, top_p=0.9)))
        assert all(torch.equal(b[i], s[0]) for b, s in zip(batch.tokens, single.tokens))
        assert (batch.images[i] - single.images[0]).abs().max() <= bound
        # batch_index also picks the image's entry of the class list (prepare_condition's `first`)
        entry = sample(model, CFG(2.0), Generation([10, 11, 12], seed=40, batch_size=1, batch_index=i,
                                                   draw=Draw(top_k=50, top_p=0.9)))
        assert all(torch.equal(e, s) for e, s in zip(entry.tokens, single.tokens))


def test_more_smooth_seeds_do_not_depend_on_batch_size(model):
    """With `more_smooth` the image is decoded from Gumbel-softmax code mixtures at temperature down to
    0.0135, which amplify the logits' batch-dependent rounding by up to (1 + ratio)/tau ~ 150 per scale
    and feed it back through the next scales: no useful a-priori bound exists. The tokens (drawn before
    smoothing) must still be identical, and the batch-vs-single difference must be noise next to what
    a different random stream gives (a leak or mixed-up stream would be of that size): the mean
    absolute difference stays below 1 % of the mean difference between two seeds."""
    batch = sample(model, CFG(2.0), Generation([10, 11, 12], seed=40, draw=Draw(top_k=50, top_p=0.9, more_smooth=True)))
    for i, label in enumerate([10, 11, 12]):
        single = sample(model, CFG(2.0), Generation([label], seed=40, batch_index=i, draw=Draw(top_k=50, top_p=0.9,
                                                                                               more_smooth=True)))
        other = sample(model, CFG(2.0), Generation([label], seed=140 + i, draw=Draw(top_k=50, top_p=0.9,
                                                                                    more_smooth=True)))
        assert all(torch.equal(b[i], s[0]) for b, s in zip(batch.tokens, single.tokens))
        noise = (batch.images[i] - single.images[0]).abs().mean()
        signal = (other.images[0] - single.images[0]).abs().mean()
        assert noise < 0.01 * signal, (noise, signal)


def test_increment_gives_a_new_batch_and_batch_index_remakes_an_image(model):
    """Issue 13.7: seeds 40 and 41 (ComfyUI's "increment"), batch 4: no image of one run is an image of the other;
    image i of the first run is re-made alone by batch_size 1, batch_index i."""
    first = sample(model, CFG(2.0), Generation([10], seed=40, batch_size=4, draw=Draw(top_k=50, top_p=0.9)))
    second = sample(model, CFG(2.0), Generation([10], seed=41, batch_size=4, draw=Draw(top_k=50, top_p=0.9)))
    tokens = lambda out, i: torch.cat([t[i].flatten() for t in out.tokens])  # noqa: E731
    assert not any(torch.equal(tokens(first, i), tokens(second, j)) for i in range(4) for j in range(4))
    for i in (0, 3):
        alone = sample(model, CFG(2.0), Generation([10], seed=40, batch_size=1, batch_index=i,
                                                   draw=Draw(top_k=50, top_p=0.9)))
        assert torch.equal(tokens(first, i), tokens(alone, 0))


def test_batch_size_cycles_classes(model):
    out = sample(model, CFG(2.0), Generation([10, 11], seed=0, batch_size=4, draw=Draw(top_k=1)))
    assert out.images.shape[0] == 4
    ref = sample(model, CFG(2.0), Generation([10, 11, 10, 11], seed=0, draw=Draw(top_k=1)))
    assert same(out, ref)


def test_seed_changes_samples_and_is_reproducible(model):
    a = sample(model, CFG(2.0), Generation([1], seed=1, draw=Draw(top_k=100)))
    assert same(a, sample(model, CFG(2.0), Generation([1], seed=1, draw=Draw(top_k=100))))
    assert not same(a, sample(model, CFG(2.0), Generation([1], seed=2, draw=Draw(top_k=100))))


def test_guidance_changes_greedy_tokens(model):
    plain = sample(model, None, Generation([3, 4], draw=Draw(top_k=1)))
    guided = sample(model, CFG(4.0), Generation([3, 4], draw=Draw(top_k=1)))
    assert torch.equal(plain.tokens[0], guided.tokens[0])  # scale 0 is unguided under the linear ramp
    assert any(not torch.equal(a, b) for a, b in zip(plain.tokens, guided.tokens))
    assert same(plain, sample(model, CFG(0.0), Generation([3, 4], draw=Draw(top_k=1))))


def test_uncond_branch_is_skipped_when_nothing_needs_it(model, monkeypatch):
    rows = []
    original = type(model).forward_scale

    def spy(self, state, k, *a, **kw):
        rows.append(state.rows)
        return original(self, state, k, *a, **kw)

    monkeypatch.setattr(type(model), "forward_scale", spy)
    sample(model, CFG(0.0), Generation([1, 2], draw=Draw(top_k=1)))
    assert rows == [2, 2, 2, 2]
    rows.clear()
    sample(model, CFG(3.0, end_scale=-2), Generation([1, 2], draw=Draw(top_k=1)))  # last two scales unguided
    assert rows == [4, 4, 2, 2]
    rows.clear()
    sample(model, CFG(3.0), Generation([1, 2], draw=Draw(top_k=1)))
    assert rows == [4, 4, 4, 4]


def test_cancel_from_callback_leaves_model_usable(model):
    ref = sample(model, CFG(3.0), Generation([5], seed=9, draw=Draw(top_k=30)))

    class Cancelled(Exception):
        pass

    def cancel(progress):
        if progress.k == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        sample(model, CFG(3.0), Generation([5], seed=9, draw=Draw(top_k=30)), callback=cancel)
    assert same(ref, sample(model, CFG(3.0), Generation([5], seed=9, draw=Draw(top_k=30))))


def test_progress_previews(model):
    seen = []
    sample(model, CFG(1.0), Generation([5, 6], draw=Draw(top_k=5)),
           callback=lambda p: seen.append((p.k, p.preview(1).shape)))
    assert seen == [(k, (1, 3, 64, 64)) for k in range(len(model.patch_nums))]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_agrees_mostly_with_fp32(model, dtype):
    import copy
    half = copy.deepcopy(model).to(dtype)
    a = sample(model, CFG(2.0), Generation([1, 2], draw=Draw(top_k=1)))
    b = sample(half, CFG(2.0), Generation([1, 2], draw=Draw(top_k=1)))
    agree = torch.cat([(x == y).flatten() for x, y in zip(a.tokens, b.tokens)]).float().mean()
    assert agree > 0.5


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(top_k=-1), "top_k"), (dict(top_k=2.5), "top_k"), (dict(top_p=1.5), "top_p"),
    (dict(top_p=float("nan")), "top_p"), (dict(last_scale_temperature=0.0), "last_scale_temperature"),
])
def test_bad_draw_settings_are_refused_when_built(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        Draw(**kwargs)


def test_bad_batch_settings_are_refused(model):
    with pytest.raises(ValueError, match="batch_size"):
        sample(model, CFG(1.0), Generation([1], batch_size=0))
    with pytest.raises(ValueError, match="batch_index must be an integer >= 0, got -1"):
        Generation([1], batch_index=-1)


@pytest.mark.parametrize("cond,fragment", [([1001], "out of range"), ([-1], "out of range"), ([], "no class"),
                                           ([1.5], "out of range")])
def test_bad_classes(model, cond, fragment):
    with pytest.raises(ValueError, match=fragment):
        sample(model, CFG(1.0), Generation(cond))


def test_null_class_is_allowed(model):
    sample(model, CFG(1.0), Generation([1000], draw=Draw(top_k=1)))


@pytest.mark.slow
def test_official_256_schedule_runs():
    model = tiny_model(patch_nums=SCHEDULES[256], seed=1)
    out = sample(model, CFG(1.5), Generation([0], draw=Draw(top_k=900, top_p=0.96)))
    assert out.images.shape == (1, 3, 256, 256)


def test_top_k_at_or_above_the_vocabulary_keeps_every_code(model):
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))  # noqa: E731
    off = sample(model, CFG(2.0), Generation([3], seed=4, draw=Draw(top_k=0)))
    assert same(off, sample(model, CFG(2.0), Generation([3], seed=4, draw=Draw(top_k=model.vocab_size))))
    assert same(off, sample(model, CFG(2.0), Generation([3], seed=4, draw=Draw(top_k=model.vocab_size + 900))))
    assert not same(off, sample(model, CFG(2.0), Generation([3], seed=4, draw=Draw(top_k=2))))
