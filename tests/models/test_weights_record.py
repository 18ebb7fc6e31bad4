"""Issue 13.3: the weights' own record wins over a sidecar config.json, a file name or a folder name that
disagrees with them, with a warning naming the file and both values; where no record in the weights decides and
the others disagree, the load is refused naming both."""
import json

import pytest
import torch

from scalewise.guidance import CFG, Draw, Generation, sample
from scalewise.models import (CheckpointError, load_switti, load_var, switti_official_state_dict,
                              var_official_state_dict, vqvae_official_state_dict)
from scalewise.models.checkpoint import CheckpointWarning, name_claims
from tiny import random_text, save, tiny_model, tiny_switti


def write_switti(tmp_path, folder, autoregressive, config=None, mask=True, seed=7):
    model = tiny_switti(autoregressive=autoregressive, seed=seed)
    (tmp_path / folder).mkdir(parents=True)
    sd = switti_official_state_dict(model.transformer)
    if not mask:
        del sd["attn_bias_for_masking"]
    path = save(sd, tmp_path / folder / "model.safetensors")
    if config is not None:
        (tmp_path / folder / "config.json").write_text(json.dumps(config))
    vae = save(vqvae_official_state_dict(model.vae), tmp_path / "vae.safetensors")
    return model, path, vae


def messages(record):
    return [str(w.message) for w in record if issubclass(w.category, CheckpointWarning)]


@pytest.mark.parametrize("autoregressive", [True, False])
def test_stored_attention_mask_beats_config_use_ar(tmp_path, autoregressive):
    """The issue's case: Switti-AR weights renamed, beside a config.json {"use_ar": false} from another download
    (and the reverse). The stored mask decides; the images are those of the true variant."""
    model, path, vae = write_switti(tmp_path, "renamed", autoregressive, {"use_ar": not autoregressive})
    with pytest.warns(CheckpointWarning) as record:
        loaded = load_switti(path, vae)
    assert loaded.config.autoregressive is autoregressive
    [note] = messages(record)
    for fragment in (path, "config.json", f"use_ar {json.dumps(not autoregressive)}", "stored attention mask",
                     "Switti-AR" if autoregressive else "non-AR", "using the weights"):
        assert fragment in note, (fragment, note)
    text = random_text(batch=1)
    a, b = sample(model, CFG(5.0), Generation(text, draw=Draw(top_k=1))), sample(loaded, CFG(5.0),
                                                                                 Generation(text, draw=Draw(top_k=1)))
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))


def test_config_depth_reso_and_crop_disagreeing_are_named(tmp_path):
    _, path, vae = write_switti(tmp_path, "Switti", False,
                                {"use_ar": False, "depth": 24, "reso": 1024, "use_crop_cond": False})
    with pytest.warns(CheckpointWarning) as record:
        loaded = load_switti(path, vae)
    notes = "\n".join(messages(record))
    assert loaded.config.depth == 2 and loaded.config.patch_nums == (1, 2, 3, 4) and loaded.config.crop_condition
    for fragment in ("says depth 24", "2 blocks", "says reso 1024", "64 px schedule", "says use_crop_cond false",
                     "holds the crop embedding"):
        assert fragment in notes, (fragment, notes)


@pytest.mark.parametrize("folder,autoregressive,says", [("Switti-AR", False, "says AR"),
                                                        ("Switti-1024", False, "says 1024 px")])
def test_folder_name_disagreeing_is_named(tmp_path, folder, autoregressive, says):
    _, path, vae = write_switti(tmp_path, folder, autoregressive, {"use_ar": autoregressive})
    with pytest.warns(CheckpointWarning) as record:
        loaded = load_switti(path, vae)
    assert loaded.config.autoregressive is autoregressive
    assert any(says in m and folder in m for m in messages(record)), messages(record)


def test_without_a_stored_mask_config_and_folder_disagreeing_is_refused(tmp_path):
    _, path, vae = write_switti(tmp_path, "Switti-AR", True, {"use_ar": False}, mask=False)
    with pytest.raises(CheckpointError) as info:
        load_switti(path, vae)
    for fragment in (path, "config.json", "use_ar false", "'Switti-AR' says AR", "no attention mask"):
        assert fragment in str(info.value)


def test_without_a_stored_mask_the_name_ar_decides(tmp_path):
    _, path, vae = write_switti(tmp_path, "Switti-AR", True, None, mask=False)
    assert load_switti(path, vae).config.autoregressive is True


def test_matching_records_give_no_warning(tmp_path, recwarn):
    _, path, vae = write_switti(tmp_path, "Switti-AR", True, {"use_ar": True, "depth": 2})
    load_switti(path, vae)
    assert messages(recwarn) == []


def test_var_file_name_disagreeing_with_the_weights(tmp_path):
    model = tiny_model(seed=3)                       # depth 2, the 64 px schedule (1, 2, 3, 4)
    var = save(var_official_state_dict(model.transformer), tmp_path / "var_d16_512.safetensors")
    vae = save(vqvae_official_state_dict(model.vae), tmp_path / "vae_ch160v4096z32.safetensors")
    with pytest.warns(CheckpointWarning) as record:
        loaded = load_var(var, vae)
    assert loaded.transformer.config.depth == 2
    notes = "\n".join(messages(record))
    for fragment in ("var_d16_512.safetensors: the name 'var_d16_512' says d16", "2 blocks", "says 512 px",
                     "64 px schedule", "vae_ch160v4096z32.safetensors", "ch32v4096z32"):
        assert fragment in notes, (fragment, notes)


def test_name_claims():
    assert name_claims("models/switti/Switti-1024-AR/model.safetensors") == {
        "reso": 1024, "ar": True, "sources": {"reso": "Switti-1024-AR", "ar": "Switti-1024-AR"}}
    assert name_claims("var/var_d30.pth")["depth"] == 30
    assert name_claims("Switti/model.safetensors") == {"sources": {}}
    assert name_claims("var_tiny256.safetensors") == {"sources": {}}      # no explicit token
