
import pytest
import torch

from scalewise.guidance import CFG, Draw, Generation, sample
from scalewise.models import SCHEDULES, VARConfig, var_official_state_dict, vqvae_official_state_dict
from scalewise.models.var_loader import build_var_transformer
from scalewise.models.vqvae_loader import build_vqvae
from scalewise.models import VQVAEConfig
from official_keys import read_keys
from rounding import transformer_bound
from tiny import TINY_PN, LogitRecorder, random_var, random_vqvae, tiny_model, var_config

OFFICIAL = {16: (256, False), 20: (256, False), 24: (256, False), 30: (256, False), 36: (512, True)}


@pytest.mark.parametrize("depth", sorted(OFFICIAL))
def test_full_size_layout_matches_official_keys(depth):
    reso, shared = OFFICIAL[depth]
    cfg = VARConfig(depth=depth, width=64 * depth, heads=depth, patch_nums=SCHEDULES[reso], shared_adaln=shared)
    model = build_var_transformer(cfg, "meta")
    sd = var_official_state_dict(model)
    expected = read_keys(f"var_d{depth}_keys.txt")
    assert list(sd) == list(expected)  # same keys, same native order
    for k, t in sd.items():
        assert tuple(t.shape) == expected[k][0], k
        assert str(t.dtype).replace("torch.", "") == expected[k][1], k


def test_full_size_vqvae_layout_matches_official_keys():
    vae = build_vqvae(VQVAEConfig(), "meta")
    sd = vqvae_official_state_dict(vae)
    expected = read_keys("vqvae_keys.txt")
    assert set(sd) == set(expected)
    assert all(tuple(sd[k].shape) == expected[k][0] for k in sd)
    assert sum(p.numel() for p in vae.parameters()) == 108_948_355


def test_d30_parameter_count():
    cfg = VARConfig(depth=30, width=1920, heads=30, patch_nums=SCHEDULES[256])
    assert sum(p.numel() for p in build_var_transformer(cfg, "meta").parameters()) == 2_010_020_356


@pytest.mark.parametrize("shared,patch_nums", [(False, TINY_PN), (True, TINY_PN), (False, SCHEDULES[256])])
def test_cached_logits_equal_teacher_forcing(shared, patch_nums):
    model = tiny_model(patch_nums=patch_nums, shared_adaln=shared, seed=3)
    rec = LogitRecorder()
    out = sample(model, rec, Generation([5, 17], seed=1, draw=Draw(top_k=50, top_p=0.9)))
    inputs = model.vae.quantize.teacher_forcing_inputs(out.tokens, patch_nums)
    full = model.transformer.forward_teacher(torch.tensor([5, 17]), inputs)
    cached = torch.cat(rec.logits, dim=1)
    assert full.shape == cached.shape
    # same maths, different matmul shapes (cached K/V vs masked full sequence): each within the
    # transformer's rounding bound of the exact logits, relative to their scale
    assert (full - cached).abs().max() <= 2 * transformer_bound(model.transformer) * full.abs().max()


def test_sampler_image_equals_decoded_tokens():
    model = tiny_model(seed=2)
    out = sample(model, CFG(3.0), Generation([1, 2], seed=0, draw=Draw(top_k=100, top_p=0.9)))
    # the same lookups, contributions in the same order and the same decode shapes: bitwise equal
    assert torch.equal(model.vae.tokens_to_image(out.tokens, model.patch_nums), out.images)


def test_class_rules_live_in_the_model():
    """One class check, in VARModel.prepare_condition: a label's class set must be the model's, ids in range."""
    from scalewise.models import ClassCondition
    model = tiny_model(seed=1)
    assert model.prepare_condition(ClassCondition((207,), "imagenet", "207: golden retriever"),
                                   2).tolist() == [207, 207]
    with pytest.raises(ValueError, match="is a class of the built-in tiny-shapes model.*ImageNet entries"):
        model.prepare_condition(ClassCondition((5,), "tiny-shapes", "tiny-shapes 5: star"), None)
    with pytest.raises(ValueError, match=r"class id 1001 is out of range for an ImageNet VAR model.*0\.\.999"):
        model.prepare_condition(ClassCondition((1001,)), None)
    with pytest.raises(TypeError, match="needs conditioning from the Class \\(VAR\\) node"):
        model.prepare_condition("a cat", None)
    model.class_names, model.class_set, model.source_name = tuple("abcdefghij"), "tiny-shapes", None
    with pytest.raises(ValueError, match="is an ImageNet class, but the model is the built-in tiny-shapes model"):
        model.prepare_condition(ClassCondition((207,), "imagenet", "207: golden retriever"), None)


def test_first_image_index_rotates_the_classes():
    """Image i of a batch that starts at image `first` takes entry (first + i) % len: a batch sampled in parts, or
    image i re-made alone, keeps its class."""
    model = tiny_model(seed=1)
    ids = (3, 5, 7)
    assert model.prepare_condition(ids, 4).tolist() == [3, 5, 7, 3]
    assert model.prepare_condition(ids, 4, first=2).tolist() == [7, 3, 5, 7]
    assert model.prepare_condition(ids, None, first=1).tolist() == [5, 7, 3]


def test_a_var_with_its_own_classes_is_not_taken_for_imagenet():
    """A 10-class VAR loaded from a file (a copy of a built-in model in models/var): neither ImageNet labels nor
    a built-in model's labels are its classes, and the message says to use class_id (not ImageNet entries)."""
    from scalewise.models import ClassCondition
    from scalewise.models.var import VARModel
    model = VARModel(random_var(var_config(patch_nums=(1, 2, 3, 4), num_classes=10)), random_vqvae())
    model.source_name = "var_d16.safetensors"
    assert model.class_set is None and model.describe() == ("a VAR model with its own 10 classes loaded from "
                                                             "'var_d16.safetensors'")
    for label, source in (("2: great white shark", "an ImageNet class"),
                          ("tiny-shapes 5: star", "a class of the built-in tiny-shapes model")):
        class_set = "imagenet" if label[0].isdigit() else "tiny-shapes"
        with pytest.raises(ValueError, match=f"is {source}, but the model is a VAR model with its own 10 classes.*"
                                             r"set class_id to one of its ids 0\.\.9"):
            model.prepare_condition(ClassCondition((int(label.split(":")[0].split()[-1]),), class_set, label), 1)
    assert model.prepare_condition(ClassCondition((9,)), 1).tolist() == [9]  # a raw id (class_id) is its own
