"""Issue 13.4: no non-finite image leaves the model's decode (the final image and every preview go through
ScalewiseModel.decode). One inf inside a half-precision VQ-VAE decoder (what an fp16 overflow leaves) used to turn
the whole image into NaN (saved as black): the decode is redone in float32; what float32 cannot fix is an error
naming the cause and the fix."""
import copy

import pytest
import torch

from scalewise.guidance import CFG, Draw, Generation, sample
from scalewise.models.base import NonFiniteImageError
from tiny import tiny_model


def inject_inf(module, dtypes):
    """A forward hook writing one inf into the module's output when it runs in one of `dtypes`."""
    def hook(mod, args, out):
        if out.dtype in dtypes:
            out = out.clone()
            out.view(-1)[0] = float("inf")
            return out
    return module.register_forward_hook(hook)


@pytest.fixture
def half_model():
    model = tiny_model(seed=9)
    model.vae.half()
    return model


def canvas(model, seed=0):
    side = model.patch_nums[-1]
    return torch.randn(2, model.vae.config.z_channels, side, side, generator=torch.Generator().manual_seed(seed))


def test_fp16_overflow_is_decoded_again_in_float32(half_model):
    fhat = canvas(half_model)
    reference = copy.deepcopy(half_model.vae).float().fhat_to_image(fhat)  # the same fp16 weights, in float32
    handle = inject_inf(half_model.vae.decoder.conv_in, {torch.float16})
    try:
        assert not torch.isfinite(half_model.vae.fhat_to_image(fhat)).all()   # the fault: NaN images
        with pytest.warns(RuntimeWarning, match="overflowed in float16: decoded again in float32"):
            images = half_model.decode(fhat)
    finally:
        handle.remove()
    assert torch.equal(images, reference)
    assert half_model.vae.post_quant_conv.weight.dtype == torch.float16       # precision restored
    assert all(p.dtype == torch.float16 for p in half_model.vae.decoder.parameters())


def test_sampler_images_and_previews_are_finite(half_model):
    handle = inject_inf(half_model.vae.decoder.conv_in, {torch.float16})
    previews = []
    try:
        with pytest.warns(RuntimeWarning):
            out = sample(half_model, CFG(2.0), Generation([3, 7], seed=1, draw=Draw(top_k=50, top_p=0.9)),
                         callback=lambda p: previews.append(p.preview(low_res=True)))
    finally:
        handle.remove()
    assert torch.isfinite(out.images).all() and len(previews) == len(half_model.patch_nums)
    assert all(torch.isfinite(p).all() for p in previews)


def test_overflow_in_float32_too_is_a_named_error(half_model):
    handle = inject_inf(half_model.vae.decoder.conv_in, {torch.float16, torch.float32})
    try:
        with pytest.raises(NonFiniteImageError, match="even in float32: the latent is out of the decoder's range"):
            half_model.decode(canvas(half_model))
    finally:
        handle.remove()
    assert half_model.vae.post_quant_conv.weight.dtype == torch.float16


def test_damaged_weights_are_named():
    model = tiny_model(seed=9)
    with torch.no_grad():
        model.vae.decoder.conv_out.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteImageError, match="decoder.conv_out.weight holds NaN/inf: the VQ-VAE file is damaged"):
        model.decode(canvas(model))


def test_non_finite_latent_names_the_quantiser_and_the_fix(half_model):
    fhat = canvas(half_model)
    fhat[0, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteImageError, match="quantiser convolutions overflowed in float16.*dtype fp32"):
        half_model.decode(fhat)
