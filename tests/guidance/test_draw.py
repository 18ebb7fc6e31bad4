import pytest
import torch

from scalewise.guidance.draw import (check_probabilities, draw_tokens, filter_logits_, image_seed,
                                    invalid_probabilities, make_generators, top_k_top_p_sort_free_)


def test_top_k_keeps_ties():
    x = torch.tensor([[[1.0, 3.0, 3.0, 2.0, 0.0]]])
    out = filter_logits_(x.clone(), top_k=2)
    assert torch.isfinite(out).tolist() == [[[False, True, True, False, False]]]
    out = filter_logits_(x.clone(), top_k=3)
    assert torch.isfinite(out).tolist() == [[[False, True, True, True, False]]]


def test_top_p_nucleus_always_keeps_the_argmax():
    x = torch.log(torch.tensor([[[0.5, 0.3, 0.15, 0.05]]]))
    keep = torch.isfinite(filter_logits_(x.clone(), top_p=0.7)).tolist()
    assert keep == [[[True, True, False, False]]]
    keep = torch.isfinite(filter_logits_(x.clone(), top_p=0.01)).tolist()
    assert keep == [[[True, False, False, False]]]


def test_filters_work_in_place():
    x = torch.randn(1, 3, 50)
    y = filter_logits_(x, top_k=5)
    assert y.data_ptr() == x.data_ptr() and torch.isinf(x).any()


def test_greedy_draw():
    x = torch.randn(2, 7, 30)
    idx = draw_tokens(filter_logits_(x.clone(), top_k=1), make_generators(0, 2, "cpu"))
    assert torch.equal(idx, x.argmax(-1))


def test_generators_are_per_image():
    probs = torch.randn(3, 5, 40)
    batch = draw_tokens(probs, make_generators(10, 3, "cpu"))
    for i in range(3):
        assert torch.equal(batch[i], draw_tokens(probs[i:i + 1], make_generators(10, 1, "cpu", batch_index=i))[0])


# -- the sort-free top-k + top-p path against a straightforward reference --------------------------

def reference_filter(logits, top_k, top_p):
    """Top-k by threshold (ties kept), then the nucleus by a stable full ascending sort."""
    out = logits.clone()
    if top_k > 0:
        kth = out.sort(-1, descending=True).values[..., top_k - 1:top_k]
        out[out < kth] = float("-inf")
    if top_p > 0:
        values, order = out.sort(dim=-1, stable=True)
        drop = values.softmax(-1).cumsum(-1) <= 1 - top_p
        drop[..., -1] = False
        out[drop.scatter(-1, order, drop)] = float("-inf")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("quantised", [False, True])
def test_sort_free_path_equals_the_reference(quantised):
    g = torch.Generator().manual_seed(3)
    for vocab, spread in ((4096, 3.0), (50, 0.5), (7, 30.0)):
        x = torch.randn(2, 9, vocab, generator=g) * spread
        if quantised:  # many equal logits, also where the nucleus ends
            x = (x * 2).round() / 2
        for k in (1, 2, 5, vocab // 3, vocab - 1):
            for p in (0.3, 0.9, 0.95, 1.0):
                assert torch.equal(top_k_top_p_sort_free_(x.clone(), k, p), reference_filter(x, k, p)), (vocab, k, p)


def test_filter_matches_the_reference_and_off_conventions():
    x = torch.randn(3, 5, 300, generator=torch.Generator().manual_seed(1)) * 4
    for k, p in ((0, 0.0), (0, 0.9), (20, 0.0), (20, 0.9), (300, 0.95), (1, 1.0)):
        assert torch.equal(filter_logits_(x.clone(), k, p), reference_filter(x, k, p)), (k, p)
    assert torch.equal(filter_logits_(x.clone(), 0, 0.0), x)  # both off
    kept = torch.isfinite(filter_logits_(x.clone(), 0, 1.0))  # top_p 1: only zero-probability codes go
    assert torch.equal(kept, x.softmax(-1) > 0)


def test_top_k_ties_survive_the_nucleus_together():
    x = torch.tensor([[[2.0, 1.0, 1.0, 1.0, 0.0]]])  # k = 2 keeps all three 1.0 (ties kept)
    assert torch.isfinite(top_k_top_p_sort_free_(x.clone(), 2, 0.99)).tolist() == [[[True] * 4 + [False]]]
    assert torch.isfinite(top_k_top_p_sort_free_(x.clone(), 2, 0.01)).tolist() == [[[True] + [False] * 4]]


def test_draw_is_multinomials_stream():
    x = torch.randn(2, 30, 500, generator=torch.Generator().manual_seed(5)) * 3
    filtered = filter_logits_(x.clone(), 50, 0.9)
    gens = make_generators(7, 2, "cpu")
    mine = draw_tokens(filtered, gens)
    ref = make_generators(7, 2, "cpu")
    probs = filtered.softmax(-1)
    expected = torch.stack([torch.multinomial(p, 1, generator=g)[:, 0] for p, g in zip(probs, ref)])
    assert torch.equal(mine, expected)
    assert torch.equal(torch.rand(4, generator=gens[1]), torch.rand(4, generator=ref[1]))  # streams advance alike


def test_invalid_logits_are_reported_once_per_run():
    good = torch.tensor([[[0.0, float("-inf")]]])
    assert not bool(invalid_probabilities(good))
    for bad in (float("nan"), float("inf")):
        assert bool(invalid_probabilities(torch.tensor([[[0.0, bad]]])))
    assert bool(invalid_probabilities(torch.full((1, 1, 3), float("-inf"))))
    check_probabilities(None)
    with pytest.raises(RuntimeError, match="NaN or infinity"):
        check_probabilities(torch.tensor(True))


def test_image_seed_is_splitmix64_after_image_0():
    """Image 0 keeps the seed (official samplers' seeding for a batch of one); image i >= 1 is the i-th output of
    SplitMix64 from the seed: the reference sequence of Vigna's splitmix64.c for seed 1234567."""
    assert image_seed(1234567, 0) == 1234567
    assert [image_seed(1234567, i) for i in range(1, 6)] == [
        6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821]
    assert image_seed(2**64 + 5, 0) == 5 and image_seed(-1, 1) == image_seed(2**64 - 1, 1)
    with pytest.raises(ValueError, match="image index"):
        image_seed(0, -1)


def test_increment_gives_new_streams_for_every_image():
    """Issue 13.7: batch 4, seed on "increment" for 50 runs: no stream of a run repeats one of another run (with
    seed + i each run repeated three of the previous four)."""
    streams = [image_seed(seed, i) for seed in range(1000, 1050) for i in range(4)]
    assert len(set(streams)) == len(streams)


def test_batch_index_offsets_the_streams():
    ref = make_generators(7, 4, "cpu")
    for i in range(4):
        alone = make_generators(7, 1, "cpu", batch_index=i)[0]
        assert alone.initial_seed() == ref[i].initial_seed() == image_seed(7, i)


def test_devices_without_generators_draw_on_cpu_streams(monkeypatch):
    """DirectML cannot create a torch.Generator on its device: the streams fall back to the CPU (the same
    draws as CPU generators) instead of failing."""
    import scalewise.guidance.draw as draw
    real = torch.Generator

    def generator(device="cpu"):
        if torch.device(device).type != "cpu":
            raise RuntimeError("Device type PRIVATEUSEONE is not supported for torch.Generator() api.")
        return real(device=device)
    monkeypatch.setattr(draw.torch, "Generator", generator)
    gens = make_generators(3, 2, "meta", batch_index=1)
    assert [g.device.type for g in gens] == ["cpu", "cpu"]
    monkeypatch.setattr(draw.torch, "Generator", real)
    probs = torch.randn(2, 5, 11).softmax(-1)
    assert torch.equal(draw_tokens(probs, gens), draw_tokens(probs, make_generators(3, 2, "cpu", batch_index=1)))
