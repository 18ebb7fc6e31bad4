import torch

from scalewise.guidance.sampling import draw_tokens, filter_logits_, make_generators


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
        assert torch.equal(batch[i], draw_tokens(probs[i:i + 1], make_generators(10 + i, 1, "cpu"))[0])
