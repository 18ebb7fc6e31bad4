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
    assert down[0, 0, 1, 0].item() == 1.5  # (1 + 2) / 2 is exact


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
    assert torch.equal(vae.quantize.scale_contribution(len(pn) - 1, pn, h), expected)  # the same kernels
    up = F.interpolate(h[:, :, :2, :2], size=(4, 4), mode="bicubic", align_corners=False)
    conv = vae.quantize.quant_resi.qresi_ls[phi_index_table(len(pn))[1]]
    expected = 0.5 * up + 0.5 * F.conv2d(up, conv.weight, conv.bias, padding=1)
    assert torch.equal(vae.quantize.scale_contribution(1, pn, h[:, :, :2, :2]), expected)


def test_next_autoregressive_input_accumulates_and_downsamples():
    """One update: f_hat += phi_k(up(h_k)) in place; the next input is area_down(f_hat, pn_{k+1}), row-major; None
    after the last scale. Expected values from scale_contribution and F.interpolate directly."""
    vae = random_vqvae(seed=4)
    pn = TINY_PN
    fhat = torch.randn(2, 32, 4, 4)
    before = fhat.clone()
    h = torch.randn(2, 2 * 2, 32)  # scale 1 tokens, [B, n_1, C]
    nxt = vae.quantize.next_autoregressive_input(1, pn, fhat, h)
    grid = h.transpose(1, 2).reshape(2, 32, 2, 2).contiguous()
    assert torch.equal(fhat, before + vae.quantize.scale_contribution(1, pn, grid))
    expected = F.interpolate(fhat, size=(3, 3), mode="area").flatten(2).transpose(1, 2)
    assert nxt.shape == (2, 9, 32) and torch.equal(nxt, expected)
    assert vae.quantize.next_autoregressive_input(len(pn) - 1, pn, fhat, torch.randn(2, 16, 32)) is None


def test_teacher_forcing_inputs_are_the_sampler_updates_of_the_tokens():
    """The teacher-forcing inputs of tokens are the area-downsampled partial sums of their contributions."""
    vae = random_vqvae(seed=5)
    pn = TINY_PN
    tokens = [torch.randint(0, 4096, (2, p, p)) for p in pn]
    fhat, expected = torch.zeros(2, 32, 4, 4), []
    for k, idx in enumerate(tokens[:-1]):
        fhat = fhat + vae.quantize.scale_contribution(k, pn, vae.quantize.lookup(idx))
        expected.append(F.interpolate(fhat, size=(pn[k + 1],) * 2, mode="area").flatten(2).transpose(1, 2))
    got = vae.quantize.teacher_forcing_inputs(tokens, pn)
    assert got.shape == (2, sum(p * p for p in pn[1:]), 32)
    assert torch.equal(got, torch.cat(expected, 1))  # the same additions in the same order, the same pooling
