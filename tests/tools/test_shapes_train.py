"""Training code of the built-in model: the training quantiser agrees with inference, and the script writes
files the official-layout loaders read."""
import pytest
import torch

from scalewise.models import VQVAE, VQVAEConfig, load_var
from scalewise.models.shapes import PATCH_NUMS
from scalewise.tools.shapes.train import quantize_for_training
from rounding import U, stack_bound

pytestmark = pytest.mark.slow  # the fast tier leaves this file out (tests/conftest.py)


def test_training_quantiser_matches_inference():
    torch.manual_seed(0)
    vae = VQVAE(VQVAEConfig(vocab_size=64, z_channels=32, ch=32))
    f = torch.randn(3, 32, 4, 4, requires_grad=True)
    f_hat, loss, codes = quantize_for_training(vae, f)
    expected = vae.quantize.encode(f.detach(), PATCH_NUMS)
    assert all(torch.equal(a, b) for a, b in zip(codes, expected))
    expected = vae.quantize.tokens_to_fhat(codes, PATCH_NUMS)
    # the phi convs may run on differently laid-out inputs (stack_bound of the four, twice), and the
    # straight-through sum target + (f_hat - target) rounds twice (u each of |f_hat - target| and |f_hat|)
    scale = expected.abs().max().item()
    tol = 2 * stack_bound(vae.quantize.quant_resi) * scale + 2 * U * (scale + f.detach().abs().max().item())
    assert (f_hat - expected).abs().max() <= tol
    (f_hat.square().sum() + loss).backward()
    assert f.grad.abs().sum() > 0                                  # straight-through to the encoder
    assert vae.quantize.embedding.weight.grad.abs().sum() > 0        # codebook learns from the VQ loss
    assert vae.quantize.quant_resi.qresi_ls[0].weight.grad.abs().sum() > 0


def test_training_script_writes_loadable_files(tmp_path):
    from scalewise.tools.train_shapes import main
    main(["--out", str(tmp_path), "--scale", "0.002"])
    model = load_var(tmp_path / "shapes_var.safetensors", tmp_path / "shapes_vae.safetensors")
    assert model.patch_nums == PATCH_NUMS and model.num_classes == 10
    assert (tmp_path / "shapes_judge.safetensors").stat().st_size > 0


def test_scenes_training_script_writes_loadable_files(tmp_path):
    """--model scenes at a tiny scale: one step per stage, files the official loaders read (128 px, 7 scales)."""
    from scalewise.tools.train_shapes import main
    from scalewise.models.scenes import PATCH_NUMS as SCENES_PATCH_NUMS
    main(["--model", "scenes", "--out", str(tmp_path), "--scale", "0.002"])
    model = load_var(tmp_path / "scenes_var.safetensors", tmp_path / "scenes_vae.safetensors")
    assert model.patch_nums == SCENES_PATCH_NUMS == (1, 2, 3, 4, 5, 6, 8)
    assert model.image_size == 128 and model.num_classes == 10
    assert (tmp_path / "scenes_judge.safetensors").stat().st_size > 0


def test_training_quantiser_matches_inference_on_the_scenes_schedule():
    """The same agreement on the 7-scale schedule of scenes-128 (8x8 latent)."""
    from scalewise.models.scenes import PATCH_NUMS as SCENES_PATCH_NUMS
    torch.manual_seed(1)
    vae = VQVAE(VQVAEConfig(vocab_size=64, z_channels=32, ch=32, encoder_blocks=1))
    f = torch.randn(2, 32, 8, 8)
    _, _, codes = quantize_for_training(vae, f, SCENES_PATCH_NUMS)
    expected = vae.quantize.encode(f, SCENES_PATCH_NUMS)
    assert [c.shape[-1] for c in codes] == list(SCENES_PATCH_NUMS)
    assert all(torch.equal(a, b) for a, b in zip(codes, expected))
