import pytest
import torch

from scalewise.guidance.grid import MAX_TILE, MIN_TILE, GridLayout, heatmap_cells, render_grid, tile_size
from scalewise.guidance.heatmap import apply_colormap
from scalewise.guidance.trace import GuidanceTrace


@pytest.mark.parametrize("size,tile", [(16, 128), (64, 128), (100, 200), (128, 128), (256, 256), (512, 512),
                                       (1024, 512)])
def test_tile_size(size, tile):
    assert tile_size(size) == tile
    assert MIN_TILE <= tile_size(size) <= max(MAX_TILE, size) and (tile % size == 0 or size > MAX_TILE)


def test_layout_cells_tile_the_canvas_without_overlap():
    layout = GridLayout.for_grid(3, 5, 128)
    boxes = [(*layout.cell(r, c), r, c) for r in range(3) for c in range(5)]
    for x, y, r, c in boxes:
        assert layout.label_width <= x and x + layout.tile <= layout.width - layout.gap
        assert layout.header_height <= y and y + layout.tile <= layout.height - layout.gap
    for i, (xa, ya, *_) in enumerate(boxes):
        for xb, yb, *_ in boxes[i + 1:]:
            assert abs(xa - xb) >= layout.tile + layout.gap or abs(ya - yb) >= layout.tile + layout.gap
    # rows go down, columns go right, equal pitch
    assert layout.cell(0, 1)[0] - layout.cell(0, 0)[0] == layout.tile + layout.gap == \
        layout.cell(1, 0)[1] - layout.cell(0, 0)[1]
    with pytest.raises(IndexError):
        layout.cell(3, 0)
    with pytest.raises(ValueError, match="at least one row"):
        GridLayout.for_grid(0, 2, 128)


def test_images_land_in_their_cells_row_major():
    rows, columns, size = 2, 3, 32
    # image r*columns + c is a flat colour encoding its index
    colors = torch.rand(rows * columns, 3, generator=torch.Generator().manual_seed(0))
    images = colors[:, None, None, :].expand(-1, size, size, -1).contiguous()
    grid = render_grid(images, ["row a", "row b"], ["s0", "s1", "s2"])
    layout = GridLayout.for_grid(rows, columns, tile_size(size))
    assert grid.shape == (1, layout.height, layout.width, 3) and grid.dtype == torch.float32
    for r in range(rows):
        for c in range(columns):
            x, y = layout.cell(r, c)
            cell = grid[0, y:y + layout.tile, x:x + layout.tile]
            expected = (colors[r * columns + c] * 255).round() / 255
            assert torch.allclose(cell, expected.expand_as(cell), atol=0.5 / 255)


def test_enlarging_keeps_tokens_crisp():
    image = torch.zeros(1, 64, 64, 3)
    image[0, :, 32:] = 1.0  # right half white
    grid = render_grid(image, ["x"], ["y"])
    layout = GridLayout.for_grid(1, 1, 128)
    x, y = layout.cell(0, 0)
    cell = grid[0, y:y + 128, x:x + 128]
    assert (cell[:, :64] == 0).all() and (cell[:, 64:] == 1).all()


def test_labels_are_drawn_and_shape_is_checked():
    images = torch.zeros(4, 64, 64, 3)
    plain = render_grid(images, ["", ""], ["", ""])
    labelled = render_grid(images, ["CFG 3 constant", "IGG 3 constant"], ["seed 0", "seed 1"])
    assert plain.shape == labelled.shape and not torch.equal(plain, labelled)
    with pytest.raises(ValueError, match=r"\[2 x 2, S, S, 3\]"):
        render_grid(torch.zeros(3, 64, 64, 3), ["a", "b"], ["c", "d"])


def test_heatmap_cells_overlay_the_finest_guided_scale():
    batch, size = 2, 8
    magnitude = [torch.rand(batch, p, p) for p in (1, 2, 4)]
    magnitude[1] = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]]).expand(batch, -1, -1)
    trace = GuidanceTrace((1, 2, 4), size, "g", magnitude, [m for m in magnitude], [True, True, False])
    images = torch.zeros(batch, size, size, 3)
    cells = heatmap_cells(trace, images, alpha=1.0)
    # scale 2 (index 2) is unguided: the 2x2 map of scale 1 is shown, normalised by its maximum 4
    expected = apply_colormap(torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.allclose(cells[0, 0, 0], expected[0, 0]) and torch.allclose(cells[1, 7, 7], expected[1, 1])
    assert torch.allclose(cells[0, 0, 7], expected[0, 1]) and torch.allclose(cells[0, 7, 0], expected[1, 0])
    half = heatmap_cells(trace, torch.ones(batch, size, size, 3), alpha=0.5)
    assert torch.allclose(half, 0.5 + 0.5 * cells)
