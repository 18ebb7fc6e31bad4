"""tools/convert_var_clip.py: the released training dump in, the model alone out as .safetensors, loading to the same
weights; other files are refused by the pack's loader."""
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from scalewise.models import CheckpointError, load_var_clip, var_clip_official_state_dict, vqvae_official_state_dict
from tiny import save, tiny_model, tiny_var_clip
from scalewise.tools.convert_var_clip import convert

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools",
                      "convert_var_clip.py")


def test_the_dump_becomes_the_model_alone(tmp_path):
    model = tiny_var_clip(seed=4)
    sd = var_clip_official_state_dict(model.transformer)
    dump = tmp_path / "ar-ckpt-last.pth"
    torch.save({"epoch": 1, "iter": 0, "args": {"depth": 2},
                "trainer": {"config": {"patch_nums": (1, 2, 3, 4)}, "var_wo_ddp": sd,
                            "vae_local": vqvae_official_state_dict(model.vae),
                            "var_opt": {"optimizer": {"state": {0: {"exp_avg": torch.ones(1000)}},
                                                      "param_groups": [{"lr": 1e-4, "params": [0]}]}}}}, dump)
    out = tmp_path / "var_clip.safetensors"
    proc = subprocess.run([sys.executable, SCRIPT, str(dump), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "text width 768" in proc.stdout
    with safe_open(str(out), framework="pt") as f:
        assert list(f.keys()) == sorted(sd)  # safetensors sorts its keys; nothing of the dump's rest
        assert all(torch.equal(f.get_tensor(k), sd[k]) for k in sd)
    vae = save(vqvae_official_state_dict(model.vae), tmp_path / "vae.safetensors")
    loaded = load_var_clip(out, vae)
    want = model.transformer.state_dict()
    assert all(torch.equal(loaded.transformer.state_dict()[k], want[k]) for k in want)


def test_bf16_and_refusals(tmp_path):
    model = tiny_var_clip(seed=4)
    src = save(var_clip_official_state_dict(model.transformer), tmp_path / "m.pth")
    info = convert(src, str(tmp_path / "m.safetensors"), torch.bfloat16)
    assert info["config"].text_width == 768
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        assert f.get_tensor("cond_proj.weight").dtype == torch.bfloat16
    var = save(var_clip_official_state_dict(model.transformer), tmp_path / "x.pth")
    with pytest.raises(ValueError, match="must be a .safetensors"):
        convert(var, str(tmp_path / "out.pth"))
    plain = save(vqvae_official_state_dict(tiny_model(seed=1).vae), tmp_path / "vae.pth")
    with pytest.raises(CheckpointError, match="VQ-VAE"):
        convert(plain, str(tmp_path / "out.safetensors"))
