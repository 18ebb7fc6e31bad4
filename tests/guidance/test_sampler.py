import pytest
import torch

from scalewise.guidance import CFG, sample
from scalewise.models import SCHEDULES
from tiny import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=5)


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens)) and torch.equal(a.images, b.images)


def test_output_shapes_and_range(model):
    out = sample(model, CFG(4.0), [3, 207, 999], seed=0, top_k=1, top_p=0.0)
    assert out.images.shape == (3, 3, 64, 64) and out.images.dtype == torch.float32
    assert 0 <= out.images.min() and out.images.max() <= 1
    assert [tuple(t.shape) for t in out.tokens] == [(3, p, p) for p in model.patch_nums]
    assert all(t.dtype == torch.int64 for t in out.tokens)


@pytest.mark.parametrize("smooth,atol", [(False, 1e-5), (True, 2e-3)])
def test_per_image_seeds_do_not_depend_on_batch_size(model, smooth, atol):
    """Tokens are identical; images differ only by batched-convolution rounding (the Gumbel-softmax
    embeddings of `more_smooth` at temperature 0.0135 amplify it a little)."""
    batch = sample(model, CFG(2.0), [10, 11, 12], seed=40, top_k=50, top_p=0.9, more_smooth=smooth)
    for i, label in enumerate([10, 11, 12]):
        single = sample(model, CFG(2.0), [label], seed=40 + i, top_k=50, top_p=0.9, more_smooth=smooth)
        assert all(torch.equal(b[i], s[0]) for b, s in zip(batch.tokens, single.tokens))
        assert torch.allclose(batch.images[i], single.images[0], atol=atol)


def test_batch_size_cycles_classes(model):
    out = sample(model, CFG(2.0), [10, 11], batch_size=4, seed=0, top_k=1)
    assert out.images.shape[0] == 4
    ref = sample(model, CFG(2.0), [10, 11, 10, 11], seed=0, top_k=1)
    assert same(out, ref)


def test_seed_changes_samples_and_is_reproducible(model):
    a = sample(model, CFG(2.0), [1], seed=1, top_k=100)
    assert same(a, sample(model, CFG(2.0), [1], seed=1, top_k=100))
    assert not same(a, sample(model, CFG(2.0), [1], seed=2, top_k=100))


def test_guidance_changes_greedy_tokens(model):
    plain = sample(model, None, [3, 4], top_k=1)
    guided = sample(model, CFG(4.0), [3, 4], top_k=1)
    assert torch.equal(plain.tokens[0], guided.tokens[0])  # scale 0 is unguided under the linear ramp
    assert any(not torch.equal(a, b) for a, b in zip(plain.tokens, guided.tokens))
    assert same(plain, sample(model, CFG(0.0), [3, 4], top_k=1))


def test_uncond_branch_is_skipped_when_nothing_needs_it(model, monkeypatch):
    rows = []
    original = type(model).forward_scale

    def spy(self, state, k, *a, **kw):
        rows.append(state.rows)
        return original(self, state, k, *a, **kw)

    monkeypatch.setattr(type(model), "forward_scale", spy)
    sample(model, CFG(0.0), [1, 2], top_k=1)
    assert rows == [2, 2, 2, 2]
    rows.clear()
    sample(model, CFG(3.0, stop_scale=-2), [1, 2], top_k=1)  # last two scales unguided
    assert rows == [4, 4, 2, 2]
    rows.clear()
    sample(model, CFG(3.0), [1, 2], top_k=1)
    assert rows == [4, 4, 4, 4]


def test_cancel_from_callback_leaves_model_usable(model):
    ref = sample(model, CFG(3.0), [5], seed=9, top_k=30)

    class Cancelled(Exception):
        pass

    def cancel(progress):
        if progress.k == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        sample(model, CFG(3.0), [5], seed=9, top_k=30, callback=cancel)
    assert same(ref, sample(model, CFG(3.0), [5], seed=9, top_k=30))


def test_progress_previews(model):
    seen = []
    sample(model, CFG(1.0), [5, 6], top_k=5, callback=lambda p: seen.append((p.k, p.preview(1).shape)))
    assert seen == [(k, (1, 3, 64, 64)) for k in range(len(model.patch_nums))]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_agrees_mostly_with_fp32(model, dtype):
    import copy
    half = copy.deepcopy(model).to(dtype)
    a = sample(model, CFG(2.0), [1, 2], top_k=1)
    b = sample(half, CFG(2.0), [1, 2], top_k=1)
    agree = torch.cat([(x == y).flatten() for x, y in zip(a.tokens, b.tokens)]).float().mean()
    assert agree > 0.5


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(top_k=-1), "top_k"), (dict(top_k=2.5), "top_k"), (dict(top_p=1.5), "top_p"),
    (dict(top_p=float("nan")), "top_p"), (dict(batch_size=0), "batch_size"),
])
def test_bad_sampling_arguments(model, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        sample(model, CFG(1.0), [1], **kwargs)


@pytest.mark.parametrize("cond,fragment", [([1001], "out of range"), ([-1], "out of range"), ([], "no class"),
                                           ([1.5], "out of range")])
def test_bad_classes(model, cond, fragment):
    with pytest.raises(ValueError, match=fragment):
        sample(model, CFG(1.0), cond)


def test_null_class_is_allowed(model):
    sample(model, CFG(1.0), [1000], top_k=1)


def test_official_256_schedule_runs():
    model = tiny_model(patch_nums=SCHEDULES[256], seed=1)
    out = sample(model, CFG(1.5), [0], top_k=900, top_p=0.96)
    assert out.images.shape == (1, 3, 256, 256)


def test_top_k_at_or_above_the_vocabulary_keeps_every_code(model):
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))  # noqa: E731
    off = sample(model, CFG(2.0), [3], seed=4, top_k=0)
    assert same(off, sample(model, CFG(2.0), [3], seed=4, top_k=model.vocab_size))
    assert same(off, sample(model, CFG(2.0), [3], seed=4, top_k=model.vocab_size + 900))
    assert not same(off, sample(model, CFG(2.0), [3], seed=4, top_k=2))
