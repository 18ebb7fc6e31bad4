"""The shipped scenes-128 model (issue #17): official layouts in fp16, a lean size, loadable by the official loaders,
a judge that reads held-out real scenes, and what the model really generates.

Floors are measured values less a margin for the sampling noise of the test's own sample (binomial standard error
sqrt(p (1 - p) / n), three of them), so the tests fail when the shipped files or the code they run change for the
worse, not on noise."""
import math
import os
import re

import pytest
import torch
from safetensors import safe_open

from scalewise.guidance import CFG, sample
from scalewise.models.builtin import SCENES_MODEL
from scalewise.models.scenes import CLASS_NAMES, JUDGE_FILE, PATCH_NUMS, VAE_FILE, VAR_FILE
from scalewise.models.shapes.judge import judge_images
from scalewise.tools.scenes.data import sample as real_scenes

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


def floor(measured: float, n: int) -> float:
    """A measured share less three binomial standard errors of an n-sample estimate."""
    return measured - 3 * math.sqrt(measured * (1 - measured) / n)


def test_files_have_the_official_layouts_in_fp16_and_stay_lean():
    var, vae = _stored(VAR_FILE), _stored(VAE_FILE)
    assert sorted(var) == sorted(_official_names("var_d16_keys.txt", depth=4))  # VAR-d16 names, 4 blocks
    # the official VQ-VAE names with one residual block per encoder level (two per decoder level) instead of 2 / 3:
    # every stored name is an official one, and exactly the encoder block 1 and decoder block 2 names are absent
    official = set(_official_names("vqvae_keys.txt"))
    assert set(vae) <= official
    absent = {k for k in official - set(vae)}
    assert absent and all(re.match(r"(encoder\.down\.\d+\.block\.1\.|decoder\.up\.\d+\.block\.2\.)", k)
                          for k in absent), sorted(absent)[:5]
    assert {t for f in (var, vae) for k, t in f.items() if k != "lvl_1L"} == {"F16"}
    size = sum(os.path.getsize(p) for p in (VAR_FILE, VAE_FILE, JUDGE_FILE))
    assert size < 20e6, f"{size / 1e6:.1f} MB"      # the brief's budget for all new files together


@pytest.fixture(scope="module")
def model():
    return SCENES_MODEL.load()


@pytest.fixture(scope="module")
def judge():
    return SCENES_MODEL.load_judge()


def test_loads_through_the_official_loader(model):
    assert model.patch_nums == PATCH_NUMS == (1, 2, 3, 4, 5, 6, 8)
    assert model.image_size == 128 and model.num_classes == len(CLASS_NAMES) == 10
    assert model.class_names == CLASS_NAMES and model.class_set == "scenes-128"
