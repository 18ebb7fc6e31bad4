"""Infinity's aspect-ratio templates (official infinity/utils/dynamic_resolution.py, `ratio2hws`): the schedules, their
RoPE tables (official basic.py `precompute_rope2d_freqs_grid`, rope2d_normalized_by_hw=2, rebuilt here from its
128 x 128 angle grid), and a non-square tiny model through the sampler, every guider, the trace and heat map and
editing. Expected values are computed here, independently of the code under test."""
import math

import pytest
import torch

from scalewise.guidance import CFG, IGG, SSG, Draw, Edit, Generation, SoftCFG, sample
from scalewise.guidance.heatmap import render_heatmap
from scalewise.guidance.igg import local_mask
from scalewise.guidance.metrics import summary
from scalewise.models.infinity import PN_SCALES, TEMPLATES, InfinityText, rope_tables, template_scales
from scalewise.models.schedule import Schedule
from scalewise.tools.tiny_weights import infinity_config, tiny_infinity

TAU = 20.0
# The official file's last 1M step of each h / w template, and its h / w values (with the inverses' keys).
LAST_1M = {1.0: (64, 64), 1.25: (70, 56), 1.333: (72, 54), 1.5: (78, 52), 1.75: (84, 48), 2.0: (90, 45),
           2.5: (100, 40), 3.0: (111, 37)}


def test_fifteen_templates_of_thirteen_steps_each_with_its_aspect():
    inverse = {int(1000 / r) / 1000: (w, h) for r, (h, w) in LAST_1M.items() if r != 1.0}
    assert sorted(TEMPLATES) == sorted({**LAST_1M, **inverse})
    assert len(TEMPLATES) == 15 and sorted(inverse) == [0.333, 0.4, 0.5, 0.571, 0.666, 0.75, 0.8]
    for ratio, steps in TEMPLATES.items():
        assert len(steps) == 13 and steps[0] == (1, 1) and steps[-1] == {**LAST_1M, **inverse}[ratio]
        for count in PN_SCALES.values():  # the official assert: each pn's last step has the template's aspect
            h, w = steps[count - 1]
            assert abs(h / w - ratio) < 0.01
        # every step grows (or keeps) both sides: SSG's prior and the area-down inputs need it
        assert all(h1 >= h0 and w1 >= w0 for (h0, w0), (h1, w1) in zip(steps, steps[1:]))
    assert template_scales(2.0, "1M")[-1] == (90, 45) and template_scales(0.5, "1M")[-1] == (45, 90)
    assert [len(template_scales(0.5, pn)) for pn in ("0.06M", "0.25M", "0.60M", "1M")] == [7, 10, 12, 13]


@pytest.mark.parametrize("bad", [0.7, 2.01, "2:1"])
def test_other_templates_are_refused(bad):
    with pytest.raises(ValueError, match="h_div_w.*not an official Infinity template"):
        template_scales(bad, "1M")
    with pytest.raises(ValueError, match="pn.*'2M'"):
        template_scales(1.0, "2M")


def official_rope(head_dim, scales, grid_1m):
    """cos, sin [L, head_dim / 2]: the official 128 x 128 angle grid (rows theta, then columns theta), indexed
    at (round(r H1 / h), round(c W1 / w)) per scale and concatenated."""
    half = head_dim // 2
    inv = 1.0 / (10000.0 ** (torch.arange(0, half, 2, dtype=torch.int64).float() / half))
    t = torch.arange(128, dtype=torch.int64).type_as(inv)
    fh, fw = torch.outer(t, inv), torch.outer(t, inv)
    grid = torch.cat([fh[:, None, :].expand(-1, 128, -1), fw[None, :, :].expand(128, -1, -1)], -1)
    cos, sin = torch.cos(grid), torch.sin(grid)
    H1, W1 = grid_1m
    rows_out, cos_out, sin_out = [], [], []
    for h, w in scales:
        idx = torch.stack([(torch.arange(h) * (H1 / h)).reshape(h, 1).expand(h, w),
                           (torch.arange(w) * (W1 / w)).reshape(1, w).expand(h, w)], -1).round().int().reshape(-1, 2)
        cos_out.append(cos[idx[:, 0], idx[:, 1]])
        sin_out.append(sin[idx[:, 0], idx[:, 1]])
        rows_out.append(idx)
    return torch.cat(cos_out), torch.cat(sin_out)


@pytest.mark.parametrize("ratio", sorted(TEMPLATES))
def test_rope_tables_of_every_template_are_the_official_lookup(ratio):
    full = infinity_config("1M", ratio)
    cos, sin = rope_tables(full)
    want_cos, want_sin = official_rope(full.head_dim, full.scales, TEMPLATES[ratio][-1])
    assert cos.shape == (full.seq_len, full.head_dim // 2)
    assert torch.equal(cos, want_cos) and torch.equal(sin, want_sin)
    small = infinity_config("0.06M", ratio)  # a smaller pn: the prefix of its template's 1M table
    small_cos, _ = rope_tables(small)
    assert torch.equal(small_cos, cos[:small.seq_len])


def test_the_schedule_of_a_non_square_template():
    s = Schedule(template_scales(0.5, "0.06M"))
    assert s.shapes == ((1, 1), (2, 2), (2, 4), (3, 6), (5, 10), (8, 16), (11, 22))
    assert s.lengths == (1, 4, 8, 18, 50, 128, 242) and s.seq_len == 451 and not s.square
    assert s.image_shape() == (176, 352)
    with pytest.raises(ValueError, match="not square"):
        s.image_size()
    square = Schedule(((1, 1), (2, 2), (4, 4)))
    assert square == Schedule((1, 2, 4)) and square.patch_nums == (1, 2, 4)
    lv = s.levels()
    assert torch.equal(torch.bincount(lv), torch.tensor(s.lengths))
    mask = s.attention_mask(causal=True)
    assert torch.equal(mask == 0, lv[None, :] <= lv[:, None])


# --- a non-square tiny model: 0.5 (w = 2 h) at 0.06M, 176 x 352 px --------------------------------------------------
@pytest.fixture(scope="module")
def wide():
    return tiny_infinity(seed=2, pn="0.06M", h_div_w=0.5)


def prompts(lens=(5,), seed=3):
    g = torch.Generator().manual_seed(seed)
    return InfinityText(tuple(torch.randn(n, 256, generator=g) for n in lens))


def test_the_wide_model_has_the_template_shapes(wide):
    assert wide.scale_shapes == template_scales(0.5, "0.06M")
    assert wide.image_shape == (176, 352) and wide.new_canvas(1).shape == (1, 8, 11, 22)
    with pytest.raises(ValueError, match="not square"):
        wide.image_size
    with pytest.raises(ValueError, match="scales"):
        wide.patch_nums


def test_cached_logits_equal_the_teacher_forced_pass_on_a_wide_template(wide):
    prepared = wide.prepare_condition(prompts((5, 7)), None)
    g = torch.Generator().manual_seed(7)
    tokens = [torch.randint(0, 2, (2, n, 8), generator=g) for n in wide.config.lengths]
    state, cached, latent, canvas = wide.start(prepared, False), [], None, wide.new_canvas(2)
    for k in range(len(tokens)):
        cached.append(wide.forward_scale(state, k, latent))
        latent = wide.next_autoregressive_input(k, canvas, wide.embed_tokens(tokens[k]))
    state.close()
    teacher = wide.transformer.forward_teacher(wide.transformer.text_rows(list(prepared.features)),
                                               wide.teacher_forcing_inputs(tokens))
    torch.testing.assert_close(torch.cat(cached, 1), teacher, atol=2e-4, rtol=1e-4)


GUIDERS = {
    "cfg": CFG(3.0, "constant"),
    "cfg_custom": CFG(3.0, "custom", custom_cfgs=(1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.5)),
    "igg_auto": IGG(2.0, "constant", window="auto"),
    "igg_window": IGG(2.0, "constant", window=3),
    "softcfg": SoftCFG(1.0, base=CFG(3.0, "constant")),
    "ssg": SSG(0.3),
    "stack": SSG(0.2, base=IGG(1.5, "constant", window=3, base=CFG(2.0, "constant"))),
}


@pytest.mark.parametrize("name", list(GUIDERS))
def test_every_guider_samples_the_wide_template(wide, name):
    out = sample(wide, GUIDERS[name], Generation(prompts(), seed=1, draw=Draw(temperature=TAU, top_k=0, top_p=0.97)),
                 trace=True)
    assert out.images.shape == (1, 3, 176, 352) and bool(torch.isfinite(out.images).all())
    assert [tuple(t.shape) for t in out.tokens] == [(1, h, w, 8) for h, w in wide.scale_shapes]
    assert [tuple(m.shape) for m in out.trace.magnitude] == [(1, h, w) for h, w in wide.scale_shapes]
    assert out.trace.image_shape == (176, 352) and out.trace.scale_shapes == wide.scale_shapes
    assert any(float(m.max()) > 0 for m in out.trace.magnitude)


def test_greedy_is_deterministic_and_cfg_changes_it(wide):
    gen = Generation(prompts(), seed=0, draw=Draw(temperature=TAU, top_k=1))
    a, b = sample(wide, CFG(3.0, "constant"), gen), sample(wide, CFG(3.0, "constant"), gen)
    plain = sample(wide, None, gen)
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))
    assert not all(torch.equal(x, y) for x, y in zip(a.tokens, plain.tokens))


def test_igg_local_mask_on_a_wide_map():
    h, w, window = 3, 6, 3
    mask = local_mask((h, w), window, "cpu")
    want = torch.zeros(h * w, h * w, dtype=torch.bool)
    for i in range(h * w):
        for j in range(h * w):
            want[i, j] = abs(i // w - j // w) <= 1 and abs(i % w - j % w) <= 1
    assert torch.equal(mask, want)


def test_heat_map_of_a_wide_trace_keeps_the_aspect(wide):
    out = sample(wide, CFG(3.0, "constant"), Generation(prompts(), seed=1, draw=Draw(temperature=TAU)), trace=True)
    image = out.images.permute(0, 2, 3, 1)
    mask = torch.zeros(1, 176, 352)
    mask[:, 40:120, 200:320] = 1
    heat = render_heatmap(out.trace, image, mask, tile=96, labels=False)
    columns = len(wide.scale_shapes) + 1  # 8 panels: two rows of 4 (MAX_COLUMNS 7)
    rows = math.ceil(columns / 7)
    per_row = math.ceil(columns / rows)
    gap = 4
    assert heat.shape == (1, gap + rows * (48 + gap), per_row * 96 + (per_row + 1) * gap, 3)
    scores = summary(out.trace, mask)
    assert scores["image_size"] == [176, 352] and scores["patch_nums"][-1] == [11, 22]
    assert scores["divergence"] is not None
    with pytest.raises(ValueError, match=r"expected \[1 or 1, 176, 352, 3\]"):
        render_heatmap(out.trace, image.transpose(1, 2))


def test_inpainting_a_wide_image_keeps_the_unmasked_tokens(wide):
    image = torch.rand(1, 3, 176, 352, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(1, 176, 352)
    mask[:, :, 176:] = 1  # regenerate the right half: finest tokens 11..21 of every row
    encoded = wide.encode_image(image)
    out = sample(wide, CFG(3.0, "constant"),
                 Generation(prompts(), seed=4, draw=Draw(temperature=TAU), edit=Edit(image, mask, denoise=1.0)),
                 trace=True)
    finest = out.tokens[-1]
    assert finest.shape == (1, 11, 22, 8)
    assert torch.equal(finest[:, :, :11], encoded[-1][:, :, :11])  # the left half is the image's
    assert not torch.equal(finest[:, :, 11:], encoded[-1][:, :, 11:])
    regenerated = out.trace.edit_mask
    assert regenerated.shape == (1, 176, 352) and torch.equal(regenerated, mask)
    # an image of another shape is fitted by a centre crop to 176 x 352 (scale 352 / 300, then the middle rows)
    square = torch.rand(1, 3, 300, 300)
    fitted = sample(wide, None, Generation(prompts(), seed=4, draw=Draw(temperature=TAU),
                                           edit=Edit(square, None, denoise=0.5, fit="crop")))
    assert fitted.images.shape == (1, 3, 176, 352)


def test_compare_and_its_grids_keep_the_wide_aspect(wide):
    from scalewise.guidance.grid import GridLayout, cell_shape, heatmap_cells, render_grid
    from scalewise.guidance.runs import compare
    mask = torch.zeros(1, 88, 176)  # half the images' size, same aspect: resized to 176 x 352
    mask[:, 20:60, 100:160] = 1
    result = compare(wide, [CFG(3.0, "constant"), None],
                     Generation(prompts(), seed=2, batch_size=2, draw=Draw(temperature=TAU)), masks=mask)
    assert result.masks.shape == (4, 176, 352) and result.divergence is not None
    images = result.images.permute(0, 2, 3, 1)
    assert images.shape == (4, 176, 352, 3)
    assert cell_shape(176, 352) == (176, 352)  # tile_size(352) = 352: the longer side kept, the aspect too
    assert cell_shape(100, 50) == (200, 100) and cell_shape(1000, 800) == (512, 410)
    grid = render_grid(images, ["CFG 3", "unguided"], ["seed 2", "seed 3"])
    layout = GridLayout.for_grid(2, 2, 352, (176, 352))
    assert grid.shape == (1, layout.height, layout.width, 3)
    assert layout.width == layout.label_width + 2 * (352 + layout.gap) + layout.gap
    assert layout.height == layout.header_height + 2 * (176 + layout.gap) + layout.gap
    cells = heatmap_cells(result.rows[0].trace, images[:2])
    assert cells.shape == (2, 176, 352, 3)
