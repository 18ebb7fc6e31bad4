"""Tiny random checkpoints of the official layouts, written into the test server's models folder."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from scalewise.models import (switti_official_state_dict, var_clip_official_state_dict, var_official_state_dict,
                              vqvae_official_state_dict)
from tiny import SCHEDULES, save, tiny_model, tiny_switti, tiny_var_clip

VAR_TINY = "var_tiny.pth"                    # 64 px schedule (1, 2, 3, 4): fast
VAR_TINY_256 = "var_tiny256.safetensors"      # the official 256 px schedule: slow enough to interrupt
VAE = "vae_tiny.safetensors"                  # shared by both (same tiny VQ-VAE seed)
BROKEN = "broken.safetensors"
# Stand-ins under the official file names, so the example workflows run unchanged in CI.
OFFICIAL_VAR, OFFICIAL_VAE = "var_d16.pth", "vae_ch160v4096z32.pth"
# d36's layout (shared AdaLN) on the fast (1, 2, 3, 4) schedule, for the "VAR d36 editing (official demo settings)" example
OFFICIAL_VAR_D36 = "var_d36.pth"
# Switti: one folder per Hugging Face repo, as users keep them (every Hub file is model.safetensors).
SWITTI, SWITTI_AR, SWITTI_VAE = "Switti/model.safetensors", "Switti-AR/model.safetensors", \
    "VQVAE-Switti/model.safetensors"
# A fast stand-in under the official Switti-1024 folder name, for the switti_1024 example workflow: the same tiny
# (1, 2, 3, 4) schedule as the others and no "reso" in its config.json, *not* the 1024 px schedule (the 1024 layout
# itself is covered by the unit tests). The example's end_scale 11 then lies beyond its 4 scales: CFG never turns off.
SWITTI_1024 = "Switti-1024/model.safetensors"
CLIP_L, CLIP_G = "clip_l.safetensors", "clip_g.safetensors"
# VAR-CLIP: a tiny training dump shaped like the released ar-ckpt-last.pth (the model under ['trainer']['var_wo_ddp']
# beside a VQ-VAE copy and optimizer state), on the official 256 px schedule with the VQ-VAE of OFFICIAL_VAE
OFFICIAL_VAR_CLIP = "var_clip_d16.pth"
# Infinity: a tiny transformer in the official layout (the 0.06M schedule's 7 scales, 8 bits) and its small BSQ VAE
INFINITY_TINY, INFINITY_VAE_TINY = "infinity_tiny.safetensors", "infinity_vae_tiny.safetensors"
# ... under the official names, in the official formats, for the example workflows: the 2B's flat .pth and its VAE
# nested under "vae"; the 8B's layout in small (8 bits per token over a 2-bit stride-8 VAE: 2 x 2 patches) as a
# Hugging Face sharded folder, which Load Infinity Model lists as its index JSON
OFFICIAL_INFINITY, OFFICIAL_INFINITY_VAE = "infinity_2b_reg.pth", "infinity_vae_d32reg.pth"
OFFICIAL_INFINITY_8B = "infinity_8b_weights/model.safetensors.index.json"
OFFICIAL_INFINITY_8B_VAE = "infinity_vae_d56_f8_14_patchify.pth"
# Infinity's text encoder: the Hub download folder (listed as its index) and an encoder-only fp16 file
FLAN_T5_HUB = "flan-t5-xl/model.safetensors.index.json"
FLAN_T5_FILE = "flan_t5_xl_encoder_fp16.safetensors"


def write_tiny_models(models_dir):
    folder = models_dir / "var"
    folder.mkdir(parents=True, exist_ok=True)
    small = tiny_model(seed=11)
    save(var_official_state_dict(small.transformer), folder / VAR_TINY)
    save(vqvae_official_state_dict(small.vae), folder / VAE)
    big = tiny_model(patch_nums=SCHEDULES[256], seed=11)
    save(var_official_state_dict(big.transformer), folder / VAR_TINY_256)
    save(var_official_state_dict(big.transformer), folder / OFFICIAL_VAR)
    save(vqvae_official_state_dict(big.vae), folder / OFFICIAL_VAE)
    d36 = tiny_model(shared_adaln=True, seed=11)  # the same VQ-VAE (seed 11) as the stand-in above
    save(var_official_state_dict(d36.transformer), folder / OFFICIAL_VAR_D36)
    clip = tiny_var_clip(patch_nums=SCHEDULES[256], seed=11)  # seed 11: the same VQ-VAE as OFFICIAL_VAE
    torch.save({"epoch": 1, "iter": 0, "args": {"depth": 2},
                "trainer": {"config": {"patch_nums": SCHEDULES[256]},
                            "var_wo_ddp": var_clip_official_state_dict(clip.transformer),
                            "vae_local": vqvae_official_state_dict(clip.vae),
                            "var_opt": {"optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": []}]}}}},
               folder / OFFICIAL_VAR_CLIP)
    (folder / BROKEN).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    write_tiny_switti(models_dir / "switti")
    write_tiny_infinity(models_dir / "infinity")
    write_random_clip(models_dir / "text_encoders")
    write_tiny_flan_t5(models_dir / "text_encoders")


def write_tiny_flan_t5(folder):
    """A tiny random flan-like T5 as users keep flan-t5-xl: the Hugging Face download folder (full model, shards +
    index; FLAN_T5_HUB is what Load Infinity Text Encoder lists for it) and the converter's encoder-only file."""
    from safetensors.torch import save_file
    from tiny_t5 import SERVER_T5, tiny_t5_encoder, write_download
    encoder = tiny_t5_encoder(seed=7, cfg=SERVER_T5)
    write_download(folder / os.path.dirname(FLAN_T5_HUB), encoder)
    save_file({k: v.half() for k, v in encoder.items()}, str(folder / FLAN_T5_FILE))


def write_tiny_switti(folder):
    for name, ar in ((SWITTI, False), (SWITTI_AR, True), (SWITTI_1024, False)):
        model = tiny_switti(autoregressive=ar, seed=21)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        save(switti_official_state_dict(model.transformer), path)
        (path.parent / "config.json").write_text(json.dumps({"depth": 2, "use_ar": ar}))
    (folder / SWITTI_VAE).parent.mkdir(parents=True, exist_ok=True)
    save(vqvae_official_state_dict(model.vae), folder / SWITTI_VAE)


def write_tiny_infinity(folder):
    from scalewise.models.bsq_vae import BSQVAE, BSQVAEConfig
    from scalewise.tools.tiny_weights import randomise_infinity, tiny_infinity
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_infinity(seed=31)
    transformer = {k: v.clone() for k, v in model.transformer.state_dict().items()}
    vae = {k: v.clone() for k, v in model.vae.state_dict().items()}  # (lfq.mask twice: one tensor in the module)
    save(transformer, folder / INFINITY_TINY)
    save(vae, folder / INFINITY_VAE_TINY)
    torch.save(transformer, folder / OFFICIAL_INFINITY)
    torch.save({"vae": vae}, folder / OFFICIAL_INFINITY_VAE)
    patchify = randomise_infinity(BSQVAE(BSQVAEConfig(ch=32, ch_mult=(1, 2, 2, 2), bits=2, downsample=8)), 32)
    torch.save({"vae": {k: v.clone() for k, v in patchify.state_dict().items()}}, folder / OFFICIAL_INFINITY_8B_VAE)
    shards = folder / os.path.dirname(OFFICIAL_INFINITY_8B)
    shards.mkdir(exist_ok=True)
    keys, weight_map = list(transformer), {}
    for i in range(2):
        name = f"model-{i + 1:05d}-of-00002.safetensors"
        save({k: transformer[k] for k in keys[i::2]}, shards / name)
        weight_map.update({k: name for k in keys[i::2]})
    (shards / os.path.basename(OFFICIAL_INFINITY_8B)).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def clip_cache() -> Path:
    """The folder of the full-size random SDXL text encoders (made once, next to the ComfyUI tree)."""
    comfy_dir = Path(os.environ["COMFY_DIR"])
    cache = comfy_dir.parent / "test-cache" / "clip-v1"
    if not (cache / CLIP_G).is_file():
        script = Path(__file__).with_name("make_clip.py")
        subprocess.run([sys.executable, str(script), str(comfy_dir), str(cache)], check=True,
                       stdout=subprocess.DEVNULL)
    return cache


def write_random_clip(folder):
    """Symlinks to the random SDXL text encoders of clip_cache() in `folder`."""
    cache = clip_cache()
    folder.mkdir(parents=True, exist_ok=True)
    for name in (CLIP_L, CLIP_G):
        (folder / name).symlink_to(cache / name)
