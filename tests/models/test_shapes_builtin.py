"""The shipped tiny shapes model: official layouts, fp16 files of a few MB, and what it really generates."""
import os
import re

import pytest
import torch
from safetensors import safe_open

from scalewise.guidance import CFG, Draw, Generation, sample
from scalewise.models.shapes import CLASS_NAMES, PATCH_NUMS, VAE_FILE, VAR_FILE, load_shapes_model
from scalewise.tools.shapes.data import sample as real_images
from scalewise.models.shapes.judge import judge_images

pytestmark = pytest.mark.slow  # the fast tier leaves this file out (tests/conftest.py)

KEYS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "keys")


def _official_names(list_file, depth=None):
    names = []
    with open(os.path.join(KEYS, list_file)) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name = line.split()[0]
            m = re.match(r"blocks\.(\d+)\.", name)
            if depth is None or not m or int(m.group(1)) < depth:
                names.append(name)
    return names


def _stored(path):
    with safe_open(path, "pt") as f:
        return {k: f.get_slice(k).get_dtype() for k in f.keys()}


def test_files_have_the_official_layouts_in_fp16():
    var, vae = _stored(VAR_FILE), _stored(VAE_FILE)
    assert sorted(var) == sorted(_official_names("var_d16_keys.txt", depth=4))  # VAR-d16 names, 4 blocks
    assert sorted(vae) == sorted(_official_names("vqvae_keys.txt"))
    floats = [t for f in (var, vae) for k, t in f.items() if k not in ("lvl_1L",)]
    assert set(floats) == {"F16"}
    size = sum(os.path.getsize(p) for p in (VAR_FILE, VAE_FILE))  # what ships at run time
    assert size < 25e6, f"{size / 1e6:.1f} MB"


@pytest.fixture(scope="module")
def model():
    return load_shapes_model()


@pytest.fixture(scope="module")
def judge():
    from scalewise.models.shapes import load_judge
    return load_judge()


def test_loads_through_the_official_loader(model):
    assert model.patch_nums == PATCH_NUMS and model.image_size == 64 and model.num_classes == len(CLASS_NAMES)
    assert model.class_names == CLASS_NAMES


def test_judge_reads_real_images(judge):
    images, masks, labels = real_images(300, seed=4242)
    verdict = judge_images(judge, torch.from_numpy(images))
    assert (verdict["labels"].numpy() == labels).mean() >= 0.97
    iou = (verdict["masks"].bool() & torch.from_numpy(masks)).sum() / (verdict["masks"].bool() | torch.from_numpy(masks)).sum()
    assert iou >= 0.85


STAR = CLASS_NAMES.index("star")  # the class of the first example workflow
GUIDED = CFG(3.0, schedule="constant")  # that workflow's guider


def _accuracy(model, judge, guider, labels, seed, top_p=0.95):
    out = sample(model, guider, Generation(labels, seed=seed, draw=Draw(top_k=900, top_p=top_p)))
    return (judge_images(judge, out.images)["labels"] == labels).float().mean().item()


def test_guided_samples_of_the_example_class_are_that_class(model, judge):
    """The issue's bar, with the first example's class and settings (top_p 0.8): >= 90 % of CFG samples judged
    as a star; unguided lower (measured 0.94 and 0.78)."""
    labels = torch.full((300,), STAR)
    acc = [_accuracy(model, judge, guider, labels, seed=1000, top_p=0.8) for guider in (GUIDED, None)]
    assert acc[0] >= 0.9 and acc[1] < acc[0], acc


def test_guidance_raises_accuracy_over_all_classes(model, judge):
    """All ten classes: CFG 3 constant measured 0.83-0.87 (unguided 0.72) on 200-400 samples, so >= 0.78 and
    a clear gain; four classes (triangle, crescent, heart, bar) stay below 90 % (README, guidance benchmark)."""
    labels = torch.arange(200) % len(CLASS_NAMES)
    acc = [_accuracy(model, judge, guider, labels, seed=5) for guider in (GUIDED, None)]
    assert acc[0] >= 0.78 and acc[0] - acc[1] >= 0.06, acc
