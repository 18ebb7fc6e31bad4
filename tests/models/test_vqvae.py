import torch
import torch.nn.functional as F

from scalewise.models import SCHEDULES, phi_index_table
from tiny import TINY_PN, random_vqvae


def test_phi_tables_match_the_official_rounding():
    assert phi_index_table(10) == (0, 0, 1, 1, 1, 2, 2, 3, 3, 3)
    assert phi_index_table(14) == (0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3)
    # other lengths follow the nearest-tick rule
    assert phi_index_table(4) == (0, 1, 2, 3)


def test_area_downsampling_uses_overlapping_windows():
    x = torch.arange(16.0).view(1, 1, 16, 1).expand(1, 1, 16, 16)
    down = F.interpolate(x, size=(13, 13), mode="area")
    # cell 1 of 13 averages rows floor(16/13)=1 .. ceil(32/13)-1=2
    assert torch.allclose(down[0, 0, 1, 0], torch.tensor(1.5))


def test_decoder_and_encoder_shapes():
    vae = random_vqvae()
    tokens = [torch.randint(0, 4096, (2, p, p)) for p in TINY_PN]
    img = vae.tokens_to_image(tokens, TINY_PN)
    assert img.shape == (2, 3, 64, 64) and img.min() >= 0 and img.max() <= 1
    back = vae.image_to_tokens(img, TINY_PN)
    assert [t.shape for t in back] == [t.shape for t in tokens]


def test_quantiser_residual_decomposition():
    """Encoding accumulates phi(up(E[idx])) into f_hat and subtracts it from the residual, so
    tokens_to_fhat(encode(f)) + final residual == f."""
    vae = random_vqvae()
    pn = SCHEDULES[256]
    f = torch.randn(1, 32, 16, 16)
    tokens = vae.quantize.encode(f, pn)
    fhat = vae.quantize.tokens_to_fhat(tokens, pn)
    # quantising the same f twice gives the same tokens, and f_hat is closer to f than zero is
    assert all(torch.equal(a, b) for a, b in zip(tokens, vae.quantize.encode(f, pn)))
    assert (f - fhat).norm() < f.norm()


def test_last_scale_has_no_resize_but_phi():
    vae = random_vqvae()
    pn = TINY_PN
    h = torch.randn(1, 32, 4, 4)
    conv = vae.quantize.quant_resi.qresi_ls[phi_index_table(len(pn))[-1]]
    expected = 0.5 * h + 0.5 * F.conv2d(h, conv.weight, conv.bias, padding=1)
    assert torch.allclose(vae.quantize.scale_contribution(len(pn) - 1, pn, h), expected, atol=1e-6)
    up = F.interpolate(h[:, :, :2, :2], size=(4, 4), mode="bicubic", align_corners=False)
    conv = vae.quantize.quant_resi.qresi_ls[phi_index_table(len(pn))[1]]
    expected = 0.5 * up + 0.5 * F.conv2d(up, conv.weight, conv.bias, padding=1)
    assert torch.allclose(vae.quantize.scale_contribution(1, pn, h[:, :, :2, :2]), expected, atol=1e-6)
