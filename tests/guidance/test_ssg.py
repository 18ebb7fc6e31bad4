import math

import pytest
import torch

from scalewise.guidance import CFG, Draw, Generation, IGG, RunInfo, SSG, sample
from scalewise.guidance.ssg import dct_matrix, dse_prior
from scalewise.guidance.stack import GuidanceRun
from rounding import gamma, unit_roundoff
from tiny import tiny_model


def dse_tol(n: int, magnitude: float, rho: float = 1.0) -> float:
    """Rounding of the DCT round trips being compared (float32, n x n orthonormal matrices whose entries
    are themselves rounded: γ_{n+2} per product). A product |D||X||Dᵀ| is at most n·max|X| (rows of an
    orthonormal D have Σ|d| ≤ √n), and an orthonormal transform carries an error E on with at most
    n·max|E|, so each round trip adds ~2γ·n²·max|X|; 8γ·n² covers both sides of each comparison."""
    return 8 * gamma(n + 2) * n * n * rho * magnitude


def test_dct_is_orthonormal_dct2():
    n = 5
    d = dct_matrix(n, "cpu", torch.float64)
    # each entry sqrt(2/n) cos(pi (2i+1) k / 2n) is within ~(pi n + 3) u of exact (the cosine's argument
    # rounds by u pi n); a row product of length n adds gamma_n
    entry = (math.pi * n + 3) * unit_roundoff(torch.float64) * math.sqrt(2 / n)
    assert torch.allclose(d @ d.T, torch.eye(n, dtype=torch.float64), rtol=0,
                          atol=2 * n * entry * math.sqrt(2 / n) + gamma(n, torch.float64))
    x = torch.randn(n, dtype=torch.float64)
    i = torch.arange(n, dtype=torch.float64)
    k = 2
    manual = math.sqrt(2 / n) * (x * torch.cos(math.pi * (2 * i + 1) * k / (2 * n))).sum()
    tol = (2 * entry + 2 * gamma(n + 2, torch.float64) * math.sqrt(2 / n)) * x.abs().sum().item()
    assert abs((d @ x)[k].item() - manual.item()) <= tol


def test_dse_low_block_is_rescaled_coarse_spectrum():
    prev = torch.randn(2, 3, 4, 4)
    prior = dse_prior(prev, (6, 6))
    d4, d6 = dct_matrix(4, "cpu"), dct_matrix(6, "cpu")
    low = (d6 @ prior @ d6.T)[..., :4, :4]
    rho = math.sqrt(36 / 16)
    assert torch.allclose(low, rho * (d4 @ prev @ d4.T), rtol=0, atol=dse_tol(6, prev.abs().max().item(), rho))


def test_dse_keeps_constants_and_is_linear():
    const = torch.full((1, 2, 3, 3), 1.7)
    rho = 5 / 3
    assert torch.allclose(dse_prior(const, (5, 5)), torch.full((1, 2, 5, 5), 1.7), rtol=0, atol=dse_tol(5, 1.7, rho))
    a, b = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)
    size = (2 * a.abs() + b.abs()).max().item()  # the magnitude on both sides
    assert torch.allclose(dse_prior(2 * a + b, (5, 5)), 2 * dse_prior(a, (5, 5)) + dse_prior(b, (5, 5)),
                          rtol=0, atol=2 * dse_tol(5, size, rho))
    # without the rescale the mean shrinks by sqrt(hw/HW); the mean of 50 values adds gamma_50
    mean = dse_prior(const, (5, 5), rescale=False).mean().item()
    assert abs(mean - 1.7 * 3 / 5) <= dse_tol(5, 1.7) + gamma(50) * 1.7


def test_update_formula():
    info = RunInfo((1, 2, 3), 1, 8, "var", True)
    rt = SSG(0.4).runtime(info)
    l0, l1 = torch.randn(1, 1, 8), torch.randn(1, 4, 8)
    assert torch.equal(rt.postprocess(0, l0), l0)  # off at the first scale
    prior = dse_prior(l0.transpose(1, 2).reshape(1, 8, 1, 1), (2, 2)).reshape(1, 8, 4).transpose(1, 2)
    assert torch.equal(rt.postprocess(1, l1), l1 + 0.4 * (l1 - prior))  # the same ops on the same tensors


def test_beta_schedules():
    assert [SSG(0.2).beta_at(k, 5) for k in range(5)] == [0, 0.2, 0.2, 0.2, 0.2]
    assert SSG(0.2, "linear_decay").beta_at(4, 5) == 0 and SSG(0.2, "linear_increase").beta_at(4, 5) == 0.2
    assert SSG(schedule="custom", custom_betas=(2, 0.1, 0.2)).beta_at(2, 5) == 0.2
    assert SSG(schedule="custom", custom_betas=(2, 0.1)).beta_at(3, 5) == 0.0


@pytest.mark.parametrize("base", [None, CFG(3.0), IGG(2.0, base=CFG(1.0))])
def test_beta_zero_equals_the_base_guider(base):
    model = tiny_model(seed=8)
    a = sample(model, SSG(0.0, base=base), Generation([3], draw=Draw(top_k=1)))
    b = sample(model, base, Generation([3], draw=Draw(top_k=1)))
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens)) and torch.equal(a.images, b.images)


def test_ssg_changes_tokens_and_does_not_need_uncond():
    model = tiny_model(seed=8)
    run = GuidanceRun(SSG(0.5), RunInfo(model.patch_nums, 1, 4096, "var", True))
    assert run.uncond_scales == frozenset()
    a = sample(model, SSG(0.8), Generation([3], draw=Draw(top_k=1)))
    b = sample(model, None, Generation([3], draw=Draw(top_k=1)))
    assert torch.equal(a.tokens[0], b.tokens[0])
    assert any(not torch.equal(x, y) for x, y in zip(a.tokens[1:], b.tokens[1:]))


@pytest.mark.parametrize("kwargs", [dict(beta=float("inf")), dict(schedule="cosine"), dict(prior_source="x"),
                                    dict(interpolation="nearest")])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        SSG(**kwargs)
