"""The procedural shapes dataset: seeded, balanced, objects inside the frame, masks that match the pixels."""
import numpy as np
import pytest

from scalewise.tools.shapes.data import CLASS_NAMES, LAYOUTS, VAE_CLASSES, object_layers, render, sample


def test_seeded_and_balanced():
    a_img, a_mask, a_lab = sample(40, seed=3)
    b_img, b_mask, b_lab = sample(40, seed=3)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, sample(40, seed=4)[0])
    assert np.bincount(a_lab, minlength=10).tolist() == [4] * 10
    assert a_img.shape == (40, 3, 64, 64) and a_img.dtype == np.float32 and 0 <= a_img.min() <= a_img.max() <= 1


def test_masks_mark_the_object():
    images, masks, labels = sample(60, seed=5)
    for img, mask in zip(images, masks):
        assert 0.02 < mask.mean() < 0.6                      # an object, never the whole frame
        inside, outside = img[:, mask], img[:, ~mask]
        # the object differs from its surroundings: mean colours apart
        assert np.abs(inside.mean(1) - outside.mean(1)).max() > 0.05


def test_circle_mask_area_matches_geometry():
    """Supersampled coverage >= 0.5 gives the area of the disc up to the boundary pixels."""
    rng = np.random.default_rng(0)
    u = (np.arange(400) + 0.5) / 200 - 1
    gu, gv = np.meshgrid(u, u)
    covered, _ = object_layers("circle", gu, gv, detail=2.0)
    assert covered.mean() == pytest.approx(np.pi / 4, abs=0.01)
    images, masks = render([0] * 5, rng)
    assert masks.sum((1, 2)).min() > 0.9 * np.pi * (0.22 * 64 - 1) ** 2


def test_every_class_renders_a_distinct_layout():
    u = (np.arange(128) + 0.5) / 64 - 1
    gu, gv = np.meshgrid(u, u)
    layouts = [object_layers(name, gu, gv, detail=2.3) for name in LAYOUTS]
    keys = {(c.tobytes(), s.tobytes()) for c, s in layouts}  # no two layouts alike
    assert len(keys) == len(LAYOUTS) == 12 and set(CLASS_NAMES) | set(VAE_CLASSES) == set(LAYOUTS)
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        object_layers("hexagon", gu, gv, 2.0)


def test_labels_index_the_given_class_list():
    images, masks, labels = sample(20, seed=1, classes=VAE_CLASSES)
    assert labels.max() == 9
    again = render(labels, np.random.default_rng(0), 64, VAE_CLASSES)
    assert again[0].shape == (20, 3, 64, 64)
