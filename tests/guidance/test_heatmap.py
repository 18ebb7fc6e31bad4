import pytest
import torch

from scalewise.guidance.heatmap import apply_colormap, render_heatmap
from scalewise.guidance.trace import GuidanceTrace

PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
SIZE = 256
TILE = 96


def make_trace(batch=2, seed=0, size=SIZE, patch_nums=PATCH_NUMS):
    g = torch.Generator().manual_seed(seed)
    magnitude = [torch.rand(batch, p, p, generator=g) for p in patch_nums]
    return GuidanceTrace(patch_nums, size, "CFG(1.5, linear)", magnitude,
                         [torch.rand(batch, p, p, generator=g) for p in patch_nums],
                         [k < len(patch_nums) - 2 for k in range(len(patch_nums))])


def panel_box(out, index, columns):
    """Top-left corner of panel `index` in an unlabelled grid: panels separated and framed by equal gaps."""
    gap = (out.shape[2] - columns * TILE) // (columns + 1)
    row, column = divmod(index, columns)
    return gap + row * (TILE + gap), gap + column * (TILE + gap)


def test_shape_dtype_range_and_batch():
    trace = make_trace(batch=3)
    out = render_heatmap(trace, tile=TILE)
    assert out.dtype == torch.float32 and out.ndim == 4 and out.shape[0] == 3 and out.shape[-1] == 3
    assert out.min() >= 0 and out.max() <= 1
    assert out.shape[2] > out.shape[1]                     # 10 panels: 2 rows of 5
    single = render_heatmap(trace.select(1), tile=TILE)
    assert torch.equal(single[0], out[1])                  # each image rendered independently


def test_default_tile_and_labels_toggle():
    for size in (256, 512):
        out = render_heatmap(make_trace(batch=1, size=size))
        assert out.shape[2] >= 5 * min(max(size // 2, 96), 256)
    plain = render_heatmap(make_trace(), tile=TILE, labels=False)
    assert plain.shape[1] < render_heatmap(make_trace(), tile=TILE).shape[1]


def test_deterministic():
    trace = make_trace()
    mask = torch.zeros(SIZE, SIZE)
    mask[64:192, 64:192] = 1
    image = torch.rand(1, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(1))
    first = render_heatmap(trace, image, mask, tile=TILE, normalize="global", colormap="viridis")
    assert torch.equal(first, render_heatmap(trace, image, mask, tile=TILE, normalize="global", colormap="viridis"))


def test_different_magnitude_changes_only_its_panel():
    trace = make_trace(batch=1)
    changed = make_trace(batch=1)
    changed.magnitude[4] = torch.rand(1, 5, 5, generator=torch.Generator().manual_seed(9))
    a = render_heatmap(trace, tile=TILE, labels=False)
    b = render_heatmap(changed, tile=TILE, labels=False)
    y, x = panel_box(a, 4, columns=5)
    assert not torch.equal(a[:, y:y + TILE, x:x + TILE], b[:, y:y + TILE, x:x + TILE])
    y3, x3 = panel_box(a, 3, columns=5)
    assert torch.equal(a[:, y3:y3 + TILE, x3:x3 + TILE], b[:, y3:y3 + TILE, x3:x3 + TILE])


def test_overlay_adds_a_panel_that_depends_on_image_and_alpha():
    trace = make_trace(batch=2)
    black, white = torch.zeros(1, SIZE, SIZE, 3), torch.ones(2, SIZE, SIZE, 3)
    without = render_heatmap(trace, tile=TILE, labels=False)
    dark = render_heatmap(trace, black, tile=TILE, labels=False)
    light = render_heatmap(trace, white, tile=TILE, labels=False)
    assert dark.shape == light.shape and dark.shape[2] > without.shape[2]   # 11 panels: 2 rows of 6
    y, x = panel_box(dark, 10, columns=6)
    last_dark, last_light = dark[:, y:y + TILE, x:x + TILE], light[:, y:y + TILE, x:x + TILE]
    assert (last_light.mean() - last_dark.mean()) > 0.3
    y0, x0 = panel_box(dark, 0, columns=6)
    assert torch.equal(dark[:, y0:y0 + TILE, x0:x0 + TILE], light[:, y0:y0 + TILE, x0:x0 + TILE])
    opaque = render_heatmap(trace, black, tile=TILE, labels=False, overlay_alpha=1.0)
    y9, x9 = panel_box(opaque, 9, columns=6)
    assert torch.allclose(opaque[:, y:y + TILE, x:x + TILE], opaque[:, y9:y9 + TILE, x9:x9 + TILE], atol=1 / 255)


def test_image_and_mask_errors():
    trace = make_trace(batch=2)
    with pytest.raises(ValueError, match=r"\[2, 128, 128, 3\].*256"):
        render_heatmap(trace, torch.zeros(2, 128, 128, 3))
    with pytest.raises(ValueError, match=r"\[3, 256, 256, 3\]"):
        render_heatmap(trace, torch.zeros(3, SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="mask size 100x100"):
        render_heatmap(trace, mask=torch.ones(100, 100))
    with pytest.raises(ValueError, match="mask batch 3"):
        render_heatmap(trace, mask=torch.ones(3, SIZE, SIZE))
    with pytest.raises(ValueError):
        render_heatmap(trace, normalize="log")
    with pytest.raises(ValueError):
        render_heatmap(trace, colormap="jet")


def test_colormap_endpoints():
    ends = apply_colormap(torch.tensor([0.0, 1.0]), "viridis")
    # the table rounds c/255 from float64, this side divides in float32: at most one ulp (< eps) apart
    expected = torch.tensor([[0x44, 0x01, 0x54], [0xFD, 0xE7, 0x25]]) / 255
    assert torch.allclose(ends, expected, rtol=0, atol=torch.finfo(torch.float32).eps)
    assert apply_colormap(torch.rand(4, 5), "magma").shape == (4, 5, 3)


def test_precomputed_scores_give_the_same_grid_and_summary():
    """The heat-map node computes E and D once and hands them to both the panels and the JSON scores."""
    from scalewise.guidance.metrics import summary, trace_scores
    trace = make_trace(batch=2)
    mask = torch.zeros(2, trace.image_size, trace.image_size)
    mask[:, :8] = 1
    scores = trace_scores(trace, mask)
    assert torch.equal(render_heatmap(trace, None, mask, scores=scores), render_heatmap(trace, None, mask))
    assert summary(trace, mask, scores=scores) == summary(trace, mask)
