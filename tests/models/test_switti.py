import json
import math

import pytest
import torch

from scalewise.guidance import CFG, Draw, Generation, SoftCFG, sample
from scalewise.models import (CheckpointError, SCHEDULES, SwittiConfig, TextCondition, load_switti,
                              switti_official_state_dict, var_official_state_dict, vqvae_official_state_dict)
from scalewise.models.switti import SwittiTransformer, rope_table
from official_keys import read_keys
from rounding import transformer_bound
from tiny import TINY_PN, LogitRecorder, random_text, save, tiny_model, tiny_switti

def official_keys(reso):
    """{name: shape} of the official Switti checkpoint at 512 or 1024 px."""
    return {k: shape for k, (shape, _) in read_keys("switti_keys.txt", variant="1024" if reso == 1024 else None).items()}


@pytest.mark.parametrize("reso", [512, 1024])
def test_full_size_layout_matches_official_keys(reso):
    cfg = SwittiConfig(depth=30, width=1920, heads=30, patch_nums=SCHEDULES[reso])
    with torch.device("meta"):
        model = SwittiTransformer(cfg)
    sd = switti_official_state_dict(model)
    expected = official_keys(reso)
    assert set(sd) == set(expected)
    assert all(tuple(sd[k].shape) == expected[k] for k in sd)
    params = sum(p.numel() for p in model.parameters())
    assert params == {512: 2_470_518_256, 1024: 2_470_525_936}[reso]


def test_rope_check_value():
    """Scale side 2: token (row 0, col 1) has column-channel-0 angle 128 rad (= 2.33629 mod 2 pi)."""
    table = rope_table(2, 64, 10000.0, 128.0)
    assert table.shape == (4, 32)
    angle = torch.angle(table[1, 0]).item() % (2 * math.pi)
    # 128 is exact in fp32; cos, sin (complex64) and atan2 are each within ~1 ulp (eps * pi for |angle| < pi)
    assert abs(angle - math.fmod(128.0, 2 * math.pi)) <= 3 * torch.finfo(torch.float32).eps * math.pi
    assert torch.equal(torch.angle(table[1, 16:]), torch.zeros(16))  # row 0: angle 0, exactly 1 + 0j
    assert torch.equal(table[0], torch.ones(32, dtype=table.dtype))


@pytest.mark.parametrize("autoregressive", [False, True])
def test_scale_by_scale_logits_equal_masked_full_sequence(autoregressive):
    model = tiny_switti(autoregressive=autoregressive, seed=2)
    text = random_text()
    rec = LogitRecorder()
    out = sample(model, rec, Generation(text, seed=4, draw=Draw(top_k=50, top_p=0.9)))
    inputs = model.vae.quantize.teacher_forcing_inputs(out.tokens, model.patch_nums)
    full = model.transformer.forward_teacher(TextCondition(text.hidden, text.pooled, text.mask), inputs)
    cached = torch.cat(rec.logits, dim=1)
    # same maths, different matmul shapes (cached K/V vs masked full sequence): each within the
    # transformer's rounding bound of the exact logits, relative to their scale
    bound = transformer_bound(model.transformer, context_tokens=text.hidden.shape[1])
    assert (full - cached).abs().max() <= 2 * bound * full.abs().max()


def test_non_ar_and_ar_differ_only_by_attention():
    text = random_text(batch=1)
    a = sample(tiny_switti(autoregressive=False, seed=3), CFG(4.0), Generation(text, draw=Draw(top_k=1)))
    b = sample(tiny_switti(autoregressive=True, seed=3), CFG(4.0), Generation(text, draw=Draw(top_k=1)))
    assert torch.equal(a.tokens[0], b.tokens[0])  # scale 0 has no earlier scale to attend to
    assert any(not torch.equal(x, y) for x, y in zip(a.tokens[1:], b.tokens[1:]))


def test_padding_tokens_do_not_matter():
    model = tiny_switti(seed=4)
    text = random_text(batch=1)
    changed = TextCondition(text.hidden.clone(), text.pooled, text.mask, text.negative)
    changed.hidden[:, 20:] = 1000.0  # beyond the valid length (5)
    a, b = sample(model, CFG(3.0), Generation(text, draw=Draw(top_k=1))), sample(model, CFG(3.0),
                                                                                 Generation(changed, draw=Draw(top_k=1)))
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))


def test_per_image_seeds_with_text_batches():
    model = tiny_switti(seed=5)
    text = random_text(batch=3)
    batch = sample(model, CFG(4.0), Generation(text, seed=10, draw=Draw(top_k=40, top_p=0.9, more_smooth=True,
                                                                        smooth_start_scale=1)))
    for i in range(3):
        one = TextCondition(text.hidden[i:i + 1], text.pooled[i:i + 1], text.mask[i:i + 1], text.negative)
        single = sample(model, CFG(4.0), Generation(one, seed=10, batch_index=i, draw=Draw(top_k=40, top_p=0.9,
                                                                                           more_smooth=True, smooth_start_scale=1)))
        assert all(torch.equal(b[i], s[0]) for b, s in zip(batch.tokens, single.tokens))


def test_cfg_window_drops_the_negative_and_applies_the_last_temperature(monkeypatch):
    model = tiny_switti(seed=6)
    rows = []
    original = type(model).forward_scale

    def spy(self, state, k, *a, **kw):
        rows.append(state.rows)
        return original(self, state, k, *a, **kw)

    monkeypatch.setattr(type(model), "forward_scale", spy)
    text = random_text(batch=2)
    sample(model, CFG(6.0, start_scale=1, end_scale=3),
           Generation(text, draw=Draw(top_k=1, last_scale_temperature=0.1)))
    assert rows == [2, 4, 4, 2]  # non-AR: the negative runs only where guided
    monkeypatch.undo()
    # the temperature acts only after the window: greedy tokens are unchanged by it
    a = sample(model, CFG(6.0, end_scale=3), Generation(text, draw=Draw(top_k=1, last_scale_temperature=0.1)))
    b = sample(model, CFG(6.0, end_scale=3), Generation(text, draw=Draw(top_k=1)))
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))
    c = sample(model, CFG(6.0, end_scale=3), Generation(text, seed=1, draw=Draw(top_k=0, last_scale_temperature=0.01)))
    d = sample(model, CFG(6.0, end_scale=3), Generation(text, seed=1, draw=Draw(top_k=0)))
    assert all(torch.equal(x, y) for x, y in zip(c.tokens[:3], d.tokens[:3]))


def test_softcfg_refused_on_non_ar_but_works_on_ar():
    text = random_text(batch=1)
    with pytest.raises(ValueError, match="non-autoregressive"):
        sample(tiny_switti(autoregressive=False), SoftCFG(base=CFG(4.0)), Generation(text, draw=Draw(top_k=1)))
    out = sample(tiny_switti(autoregressive=True), SoftCFG(base=CFG(4.0)), Generation(text, draw=Draw(top_k=1)))
    assert out.images.shape == (1, 3, 64, 64)


def test_guidance_needs_a_negative():
    text = random_text(batch=1)
    text.negative = None
    sample(tiny_switti(), None, Generation(text, draw=Draw(top_k=1)))  # no guidance: fine
    with pytest.raises(ValueError, match="negative"):
        sample(tiny_switti(), CFG(4.0), Generation(text, draw=Draw(top_k=1)))


def test_class_ids_are_refused():
    with pytest.raises(TypeError, match="needs conditioning from the Switti Text Encode"):
        sample(tiny_switti(), CFG(4.0), Generation([3], draw=Draw(top_k=1)))
    named = tiny_switti(autoregressive=True)
    named.source_name = "Switti-AR/model.safetensors"  # as the loader node sets it
    with pytest.raises(TypeError, match=r"^conditioning: this Switti-AR model \(64 px\) loaded from "
                                        r"'Switti-AR/model.safetensors' needs conditioning"):
        sample(named, CFG(4.0), Generation([3], draw=Draw(top_k=1)))
    with pytest.raises(TypeError, match="class ids"):
        sample(tiny_model(), CFG(4.0), Generation(random_text(), draw=Draw(top_k=1)))


# -- loading ------------------------------------------------------------------------------------

@pytest.mark.parametrize("autoregressive", [False, True])
@pytest.mark.parametrize("with_config", [False, True])
def test_round_trip_and_variant_detection(tmp_path, autoregressive, with_config):
    model = tiny_switti(autoregressive=autoregressive, seed=7)
    folder = tmp_path / "Switti"
    folder.mkdir()
    save(switti_official_state_dict(model.transformer), folder / "model.safetensors")
    if with_config:
        (folder / "config.json").write_text(json.dumps({"depth": 2, "use_ar": autoregressive}))
    vae = save(vqvae_official_state_dict(model.vae), tmp_path / "vae.safetensors")
    loaded = load_switti(folder, vae)
    assert loaded.config == model.config
    text = random_text(batch=1)
    a, b = sample(model, CFG(5.0), Generation(text, draw=Draw(top_k=1))), sample(loaded, CFG(5.0),
                                                                                 Generation(text, draw=Draw(top_k=1)))
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))
    assert load_switti(folder / "model.safetensors", vae).config.autoregressive == autoregressive


def test_wrong_files_are_named(tmp_path):
    model = tiny_switti(seed=8)
    sw = save(switti_official_state_dict(model.transformer), tmp_path / "model.safetensors")
    vae = save(vqvae_official_state_dict(model.vae), tmp_path / "vae.safetensors")
    var = save(var_official_state_dict(tiny_model().transformer), tmp_path / "var.safetensors")
    with pytest.raises(CheckpointError, match="looks like a VAR transformer"):
        load_switti(var, vae)
    with pytest.raises(CheckpointError, match="expected a multi-scale VQ-VAE"):
        load_switti(sw, sw)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_switti(empty, vae)
    sd = switti_official_state_dict(model.transformer)
    del sd["attn_bias_for_masking"]
    bare = save(sd, tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match="config.json"):
        load_switti(bare, vae)


def test_crop_vector_comes_from_the_stored_frequencies():
    model = tiny_switti(seed=9)
    before = model.transformer.crop_vector()
    with torch.no_grad():
        model.transformer.crop_embed.weight.mul_(1.5)
    assert not torch.allclose(before, model.transformer.crop_vector())
    assert TINY_PN == model.patch_nums


@pytest.mark.parametrize("autoregressive", [False, True])
def test_every_guider_works_with_switti(autoregressive):
    from scalewise.guidance import IGG, SSG
    model = tiny_switti(autoregressive=autoregressive, seed=10)
    text = random_text(batch=2)
    guiders = [CFG(6.0, start_scale=1, end_scale=3), IGG(6.0, end_scale=3), SSG(0.2),
               SSG(0.2, base=IGG(2.0, base=CFG(4.0, end_scale=-1)))]
    if autoregressive:
        guiders.append(SoftCFG(base=CFG(6.0)))
    plain = sample(model, None, Generation(text, draw=Draw(top_k=1)))
    for guider in guiders:
        out = sample(model, guider, Generation(text, draw=Draw(top_k=1, last_scale_temperature=0.1)), trace=True)
        assert out.images.shape == (2, 3, 64, 64) and len(out.trace.magnitude) == 4, guider.describe()
        assert any(not torch.equal(a, b) for a, b in zip(out.tokens, plain.tokens)), guider.describe()


def test_first_image_index_rotates_prompts_and_negatives():
    model = tiny_switti(seed=5)
    text = random_text(batch=3)
    text.negative = random_text(batch=2, seed=1)
    rows = model.prepare_condition(text, 4, first=5)  # images 5..8: prompts 2, 0, 1, 2; negatives 1, 0, 1, 0
    assert torch.equal(rows.hidden, text.hidden[[2, 0, 1, 2]]) and torch.equal(rows.mask, text.mask[[2, 0, 1, 2]])
    assert torch.equal(rows.negative.pooled, text.negative.pooled[[1, 0, 1, 0]])
