"""Judge network and the Fréchet distance."""
import numpy as np
import pytest
import torch

from scalewise.models.shapes.judge import Judge, frechet_distance, judge_images
from rounding import gamma, unit_roundoff


def test_frechet_against_closed_forms():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=gen, dtype=torch.float64)
    shift = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    # float64 throughout: means and covariances are sums of N = 4000 terms of size <= (|a| + |shift|)^2,
    # off by gamma_N of that; the symmetric eigensolver behind the square roots is backward stable
    # (error ~ D u |S| with a modest constant, taken as 10 D); the trace adds D terms
    size = (a.abs().max() + shift.abs().max()).item() ** 2
    tol = 4 * 3 * (gamma(4000, torch.float64) + 10 * 3 * unit_roundoff(torch.float64)) * size
    assert tol < 1e-6  # meaningful: a wrong term would be O(1)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=tol)
    # a shift only moves the means: |shift|^2
    assert frechet_distance(a, a + shift) == pytest.approx(5.0, abs=tol)
    # diagonal covariances: sum (sigma_a - sigma_b)^2, with the sample covariances
    b = a * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    sa, sb = np.sqrt(np.diag(np.cov(a.numpy(), rowvar=False))), np.sqrt(np.diag(np.cov(b.numpy(), rowvar=False)))
    mu = (a.mean(0) - b.mean(0)).square().sum().item()
    off_diag = np.cov(a.numpy(), rowvar=False) - np.diag(np.diag(np.cov(a.numpy(), rowvar=False)))
    assert np.abs(off_diag).max() < 0.05  # near-diagonal, so the closed form holds to that order
    assert frechet_distance(a, b) == pytest.approx(mu + ((sa - sb) ** 2).sum(), rel=0.02)


def test_judge_outputs():
    judge = Judge(10).eval()
    out = judge_images(judge, torch.rand(5, 3, 64, 64), chunk=2)
    assert out["labels"].shape == (5,) and out["masks"].shape == (5, 64, 64) and out["features"].shape == (5, 128)
    assert set(out["masks"].unique().tolist()) <= {0.0, 1.0}


def test_judge_masks_are_the_shipped_judges_segmentation():
    """models.builtin.judge_masks: the built-in model's own judge (loaded once), None for any other model."""
    from scalewise.models.builtin import SCENES_MODEL, SHAPES_MODEL, judge_masks
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    masks = judge_masks(SHAPES_MODEL.class_set, images)
    channels_last = images.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # ComfyUI's IMAGE, seen as NCHW
    assert torch.equal(masks, judge_images(SHAPES_MODEL.load_judge(), channels_last)["masks"])
    assert torch.equal(judge_masks(SHAPES_MODEL.class_set, channels_last), masks)  # the same whatever the layout
    assert masks.shape == (3, 64, 64) and set(masks.unique().tolist()) <= {0.0, 1.0}
    scenes = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    assert torch.equal(judge_masks(SCENES_MODEL.class_set, scenes), judge_images(
        SCENES_MODEL.load_judge(), scenes.contiguous(memory_format=torch.channels_last))["masks"])
    assert judge_masks("imagenet", images) is None and judge_masks(None, images) is None
