"""Tiny random checkpoints of the official layouts, written into the test server's models folder."""
from scalewise.models import var_official_state_dict, vqvae_official_state_dict
from tiny import SCHEDULES, save, tiny_model

VAR_TINY = "var_tiny.pth"                    # 64 px schedule (1, 2, 3, 4): fast
VAR_TINY_256 = "var_tiny256.safetensors"      # the official 256 px schedule: slow enough to interrupt
VAE = "vae_tiny.safetensors"                  # shared by both (same tiny VQ-VAE seed)
BROKEN = "broken.safetensors"
# Stand-ins under the official file names, so the example workflows run unchanged in CI.
OFFICIAL_VAR, OFFICIAL_VAE = "var_d16.pth", "vae_ch160v4096z32.pth"


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
    (folder / BROKEN).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
