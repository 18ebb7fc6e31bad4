"""Editing's pure pieces: pixel mask -> token masks, the official per-scale rule, denoise, fitting, validation."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalewise.guidance import Edit
from scalewise.guidance.editing import (RESAMPLE_RANGE, EditPlan, InputNotice, as_mask_batch, check_image,
                                        check_object_mask, check_regenerate_mask, edit_batch, finest_keep_mask,
                                        fit_edit, fit_image, fit_mask, kept_scale_count, plan_edit, scale_keep_masks,
                                        strict_keep_masks, unmarked_entries)
from tiny import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)  # 64 px, scales (1, 2, 3, 4): 16 px per finest token


def bilinear_reference(src: np.ndarray, out: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize written out (PyTorch's align_corners=False, no antialias)."""
    size = src.shape[0]
    coords = []
    for i in range(out):
        x = max((i + 0.5) * size / out - 0.5, 0.0)
        lo = min(int(math.floor(x)), size - 1)
        hi = min(lo + 1, size - 1)
        coords.append((lo, hi, x - lo))
    res = np.zeros((out, out))
    for i, (ylo, yhi, fy) in enumerate(coords):
        for j, (xlo, xhi, fx) in enumerate(coords):
            top = src[ylo, xlo] * (1 - fx) + src[ylo, xhi] * fx
            bottom = src[yhi, xlo] * (1 - fx) + src[yhi, xhi] * fx
            res[i, j] = top * (1 - fy) + bottom * fy
    return res


def test_a_token_is_regenerated_when_any_pixel_of_its_patch_is_marked():
    mask = torch.zeros(1, 64, 64)
    mask[0, 17, 40] = 0.5           # one pixel at the threshold: token (1, 2)
    mask[0, 50, 5] = 0.49           # below the threshold: ignored
    keep = finest_keep_mask(mask, 4)
    expected = torch.ones(1, 4, 4)
    expected[0, 1, 2] = 0
    assert torch.equal(keep, expected)


def test_patch_aligned_mask_maps_one_to_one():
    tokens = torch.rand(2, 4, 4) > 0.5
    pixels = tokens.float().repeat_interleave(16, 1).repeat_interleave(16, 2)
    assert torch.equal(finest_keep_mask(pixels, 4), (~tokens).float())


def test_finest_mask_needs_a_multiple_of_the_token_grid():
    with pytest.raises(ValueError, match="multiple of 4"):
        finest_keep_mask(torch.zeros(1, 62, 62), 4)


@pytest.mark.parametrize("patch_nums", [(1, 2, 3, 4, 5, 6, 8, 10, 13, 16), (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)])
def test_coarser_scales_follow_the_official_rule(patch_nums):
    gen = torch.Generator().manual_seed(0)
    side = patch_nums[-1]
    finest = (torch.rand(3, side, side, generator=gen) > 0.4).float()
    finest[1] = 0  # every token generated
    masks = scale_keep_masks(finest, patch_nums)
    for pn, keep in zip(patch_nums, masks):
        assert keep.dtype == torch.bool and keep.shape == (3, pn, pn)
        for b in range(3):
            value = bilinear_reference(finest[b].numpy(), pn)
            expected = value > 0.5
            if pn * pn <= 3:
                expected[:] = True
            # exact ties (0.5 up to float32 rounding) are decided by rounding, as in the official float32
            # call that the pack makes identically; compare everywhere else
            decided = (np.abs(value - 0.5) > 1e-5) | (pn * pn <= 3)
            assert np.array_equal(keep[b].numpy()[decided], expected[decided]), (pn, b)
    assert torch.equal(masks[-1], finest.bool())
    assert masks[0].all() and not masks[1][1].any()  # 1x1 kept whole; 2x2 (4 tokens) is not


@pytest.mark.parametrize("patch_nums", [(1, 2, 3, 4, 5, 6, 8, 10, 13, 16), (1, 2, 3, 4)])
def test_strict_rule_keeps_only_tokens_wholly_outside_the_mask(patch_nums):
    gen = torch.Generator().manual_seed(1)
    side = patch_nums[-1]
    finest = (torch.rand(2, side, side, generator=gen) > 0.15).float()
    for pn, keep in zip(patch_nums, strict_keep_masks(finest, patch_nums)):
        for i in range(pn):
            rows = slice(i * side // pn, -(-(i + 1) * side // pn))  # floor .. ceil: the area-pooling window
            for j in range(pn):
                cols = slice(j * side // pn, -(-(j + 1) * side // pn))
                assert bool(keep[0, i, j]) == bool(finest[0, rows, cols].all()), (pn, i, j)
    full = strict_keep_masks(torch.zeros(1, side, side), patch_nums)
    assert not any(k.any() for k in full)  # nothing kept whole: a full mask is plain generation


@pytest.mark.parametrize("denoise,kept", [(1.0, 0), (0.0, 10), (0.5, 5), (0.95, 1), (0.96, 0), (0.85, 2),
                                          (0.7, 3), (0.05, 10), (0.06, 9)])
def test_denoise_counts_kept_scales(denoise, kept):
    assert kept_scale_count(denoise, 10) == kept


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan"), float("inf")])
def test_denoise_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="denoise"):
        kept_scale_count(bad, 10)


def test_fit_same_size_is_untouched():
    image = torch.rand(2, 3, 64, 64)
    fitted, padding = fit_image(image, 64, "pad")
    assert fitted is image and padding is None


def test_fit_crop_cuts_the_centre():
    image = torch.rand(1, 3, 64, 128)  # already 64 high: a crop without resampling
    fitted, padding = fit_image(image, 64, "crop")
    assert padding is None and torch.equal(fitted, image[..., 32:96])


def test_fit_pad_centres_on_grey_and_marks_the_padding():
    image = torch.empty(1, 3, 128, 64)
    image[:, 0], image[:, 1], image[:, 2] = 0.2, 0.7, 1.0
    fitted, padding = fit_image(image, 64, "pad")  # scaled to 64 x 32, placed at columns 16..47
    assert fitted.shape == (1, 3, 64, 64)
    assert torch.allclose(fitted[..., 16:48], image[..., :64, :32], atol=1e-6)  # a flat colour stays flat
    assert (fitted[..., :16] == 0.5).all() and (fitted[..., 48:] == 0.5).all()
    expected = torch.ones(1, 64, 64)
    expected[:, :, 16:48] = 0
    assert torch.equal(padding, expected)


def test_fit_resamples_without_overshoot():
    image = (torch.rand(1, 3, 100, 150) > 0.5).float()  # hard edges: bicubic would ring past [0, 1]
    for fit in ("crop", "pad"):
        fitted, _ = fit_image(image, 64, fit)
        assert fitted.shape == (1, 3, 64, 64) and 0 <= fitted.min() and fitted.max() <= 1


def test_fit_mask_follows_the_image_and_generates_the_padding():
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1  # left half, given at another size than the image
    fitted = fit_mask(mask, (128, 64), 64, "pad")
    assert fitted.shape == (1, 64, 64)
    assert (fitted[:, :, :16] == 1).all() and (fitted[:, :, 48:] == 1).all()  # padding
    assert (fitted[:, :, 16:30] == 1).all() and (fitted[:, :, 34:48] == 0).all()  # the mask's halves
    cropped = fit_mask(mask, (64, 128), 64, "crop")  # stretched to 64 x 128, centre columns 32..95 kept
    assert (cropped[:, :, :30] == 1).all() and (cropped[:, :, 34:] == 0).all()


def test_fit_mode_is_checked():
    with pytest.raises(ValueError, match="fit must be one of"):
        fit_image(torch.rand(1, 3, 32, 32), 64, "stretch")


def test_plan_encodes_the_image_and_broadcasts_it(model):
    image = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(2, 64, 64)
    mask[1, :32] = 1
    with pytest.warns(InputNotice, match="the mask of image 0 marks nothing"):
        plan = plan_edit(model, Edit(image, mask), 2)
    own = model.encode_image(image)
    assert all(torch.equal(t, o.expand(2, -1, -1)) for t, o in zip(plan.tokens, own))
    assert all(k[0].all() for k in plan.keep)  # empty mask: everything kept
    assert plan.keep[-1][1, :2].logical_not().all() and plan.keep[-1][1, 2:].all()
    assert torch.equal(plan.regenerated, mask)  # token-aligned, so the regenerated region is the mask


def test_plan_without_mask_keeps_the_first_scales(model):
    plan = plan_edit(model, Edit(torch.rand(1, 3, 64, 64), denoise=0.5), 1)  # 4 scales: 2 kept
    assert [bool(k.all()) for k in plan.keep] == [True, True, False, False]
    assert not plan.keep[2].any() and plan.regenerated is None
    assert plan_edit(model, Edit(torch.rand(1, 3, 64, 64)), 1) is None  # nothing to keep


def test_force_replaces_kept_tokens_and_their_embeddings():
    codebook = torch.randn(8, 2)
    plan = EditPlan([torch.tensor([[[5, 6], [7, 1]]])], [torch.tensor([[[True, False], [False, True]]])])
    idx, h = plan.force(0, torch.tensor([[0, 2, 3, 4]]), torch.zeros(1, 4, 2), lambda i: codebook[i])
    assert idx.tolist() == [[5, 2, 3, 1]]
    assert torch.equal(h[0, 0], codebook[5]) and torch.equal(h[0, 3], codebook[1])
    assert not h[0, 1:3].any()


@pytest.mark.parametrize("image,mask,denoise,batch,match", [
    (None, torch.zeros(1, 64, 64), 1.0, 1, "mask is connected but image is not"),
    (None, None, 0.5, 1, "denoise 0.5 < 1 needs an image"),
    (torch.rand(1, 3, 32, 32), None, 0.5, 1, "image is 32x32 px but this model makes 64x64"),
    (torch.rand(1, 3, 64, 64), torch.zeros(1, 32, 32), 1.0, 1, "mask is 32x32 px"),
    (torch.rand(1, 64, 64, 3), None, 0.5, 1, r"image must be an RGB image tensor \[B, 3, H, W\]"),
    (torch.rand(1, 3, 64, 64) * 255, None, 0.5, 1, r"image values must be in \[0, 1\]"),
    (torch.rand(1, 3, 64, 64), torch.full((1, 64, 64), float("nan")), 1.0, 1, "mask contains NaN"),
    (torch.rand(1, 3, 64, 64), torch.full((1, 64, 64), 1.51), 1.0, 1, r"mask values must be in \[0, 1\]"),
    (torch.rand(1, 3, 64, 64), torch.full((1, 64, 64), -0.51), 1.0, 1, r"mask values must be in \[0, 1\]"),
    (torch.rand(1, 3, 64, 64) * 2 - 1, None, 0.5, 1, r"this looks like -1\.\.1"),
    (torch.rand(3, 3, 64, 64), None, 0.5, 2, "image batch 3 does not match the batch of 2"),
    (torch.rand(1, 3, 64, 64), torch.zeros(3, 64, 64), 1.0, 2, "mask batch 3 does not match"),
    (torch.rand(1, 3, 64, 64), torch.zeros(1, 64, 64, dtype=torch.uint8), 1.0, 1, "mask must be a float"),
    (torch.rand(1, 3, 64, 64), torch.zeros(1, 2, 64, 64), 1.0, 1, r"mask must be a mask \[B, H, W\]"),
    (torch.rand(1, 3, 64, 64), torch.zeros(2, 2, 64, 64, 1), 1.0, 1, r"got \[2, 2, 64, 64, 1\]"),
])
def test_bad_inputs_are_refused_naming_them(model, image, mask, denoise, batch, match):
    with pytest.raises(ValueError, match=match):
        plan_edit(model, Edit.from_inputs(image, mask, denoise), batch)


def test_unknown_mask_rule_is_refused(model):
    with pytest.raises(ValueError, match="mask_rule must be one of"):
        plan_edit(model, Edit(torch.rand(1, 3, 64, 64), torch.ones(64, 64), 1.0, "loose"), 1)


def test_fit_edit_pads_into_an_outpainting_mask_and_refuses_a_lonely_mask(model):
    image, mask = fit_edit(model, Edit(torch.rand(1, 3, 64, 32), fit="pad"), 1)
    assert image.shape == (1, 3, 64, 64) and mask.shape == (1, 64, 64)
    assert (mask[:, :, :16] == 1).all() and (mask[:, :, 16:48] == 0).all()
    assert fit_edit(model, Edit(torch.rand(1, 3, 64, 32), fit="crop"), 1)[1] is None
    assert Edit.from_inputs(None, None) is None
    with pytest.raises(ValueError, match="mask is connected but image is not"):
        Edit.from_inputs(None, torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="mask contains NaN"):
        Edit(torch.rand(1, 3, 8, 8), torch.full((1, 8, 8), float("nan")), fit="crop")
    with pytest.raises(ValueError, match="fit must be one of"):
        Edit(torch.rand(1, 3, 8, 8), fit="stretch")


def test_the_two_mask_checks_name_their_meaning():
    with pytest.raises(ValueError, match=r"1 = generate anew, 0 = keep"):
        check_regenerate_mask(torch.full((1, 4, 4), 2.0))
    with pytest.raises(ValueError, match=r"1 = object"):
        check_object_mask(torch.full((1, 4, 4), 2.0))


def test_a_two_dimensional_mask_is_accepted(model):
    plan = plan_edit(model, Edit(torch.rand(1, 3, 64, 64), torch.ones(64, 64)), 1)
    assert [bool(k.any()) for k in plan.keep] == [True, False, False, False]


def test_edit_batch_broadcasts_ones_and_refuses_mismatches():
    img, msk = torch.rand(3, 3, 8, 8), torch.rand(1, 8, 8)
    assert edit_batch(1, img, msk) == 3 and edit_batch(3, img, None) == 3 and edit_batch(4, None, None) == 4
    assert edit_batch(5, torch.rand(1, 3, 8, 8), torch.rand(5, 8, 8)) == 5
    with pytest.raises(ValueError, match=r"batch_size 2 does not fit the batch of 3 \(image 3, mask 1\)"):
        edit_batch(2, img, msk)
    with pytest.raises(ValueError, match="mask 2 does not fit the batch of 3"):
        edit_batch(1, img, torch.rand(2, 8, 8))


def bicubic_extremes() -> tuple[float, float]:
    """The lowest and highest value a 2-D bicubic resample (torch's kernel, as ComfyUI's common_upscale calls it)
    can give for inputs in [0, 1]: per output pixel the separable weights are the outer product of two 1-D rows,
    so the extremes are P^2 + N^2 and 2 P N with P, N the sums of the positive and negative weights of a row."""
    low = high = 0.0
    for n_in in range(2, 40):
        for n_out in range(1, 130, 7):
            rows = F.interpolate(torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in, 1), size=(n_out, 1),
                                 mode="bicubic", align_corners=False)[:, 0, :, 0].T
            pos, neg = rows.clamp(min=0).sum(1), rows.clamp(max=0).sum(1)
            high, low = max(high, float((pos ** 2 + neg ** 2).max())), min(low, float((2 * pos * neg).min()))
    return low, high


def test_resample_range_covers_every_bicubic_overshoot():
    low, high = bicubic_extremes()
    assert RESAMPLE_RANGE[0] <= low < -0.4 and 1.4 < high <= RESAMPLE_RANGE[1]  # 2 * 1.1875 * 0.1875 = 0.4453


def test_bicubic_upscale_is_accepted_and_clamped():
    image = (torch.rand(1, 3, 16, 16) > 0.5).float()  # hard edges: the largest overshoot
    up = F.interpolate(image, size=(37, 37), mode="bicubic", align_corners=False)
    assert float(up.min()) < 0 and float(up.max()) > 1
    checked = check_image(up)
    assert float(checked.min()) == 0 and float(checked.max()) == 1
    inside = (up >= 0) & (up <= 1)
    assert torch.equal(checked[inside], up[inside])  # only the overshoot changes


@pytest.mark.parametrize("shape", [(64, 64), (2, 64, 64), (2, 1, 64, 64), (2, 64, 64, 1)])
def test_every_mask_layout_of_core_nodes_is_read(shape):
    mask = torch.rand(*shape)
    as_batch = as_mask_batch(mask)
    assert as_batch.shape[-2:] == (64, 64) and as_batch.ndim == 3
    assert torch.equal(as_batch.flatten(), mask.flatten())


def test_bool_masks_are_read_as_zero_and_one():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :4] = True
    assert torch.equal(check_regenerate_mask(mask), mask.float())


def test_unmarked_masks_keep_their_image_and_say_so(model):
    image = torch.rand(1, 3, 64, 64)
    masks = torch.zeros(3, 64, 64)
    masks[1, :16, :16] = 0.7
    assert unmarked_entries(masks) == [0, 2] and unmarked_entries(torch.full((1, 4, 4), 0.49)) == [0]
    with pytest.warns(InputNotice,
                      match=r"the masks of images 5, 7 mark nothing .*those images are .*Open in MaskEditor"):
        plan = plan_edit(model, Edit(image, masks), 3, first=5)
    assert all(k[0].all() and k[2].all() for k in plan.keep)  # nothing to regenerate: every token kept
    with pytest.warns(InputNotice, match=r"^the mask marks nothing"):
        plan_edit(model, Edit(image, torch.zeros(64, 64)), 2)
