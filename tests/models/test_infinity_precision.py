"""Infinity in half precision (models/infinity.py): sampling with bf16 (the GPU default) and fp16 weights through
guidance.sample, and the decode guard of models/base.py on the BSQ VAE (damaged weights named, an fp16 overflow
decoded again in float32). Tiny random weights (tools/tiny_weights.py `tiny_infinity`)."""
import copy
import warnings
from dataclasses import dataclass, field

import pytest
import torch
from safetensors.torch import save_file

from scalewise.guidance import CFG, Draw, Generation, sample
from scalewise.guidance.base import Guider, GuiderRuntime
from scalewise.models.base import NonFiniteImageError
from scalewise.models.infinity import InfinityModel, InfinityText
from scalewise.models.infinity_loader import load_bsq_vae
from scalewise.tools.tiny_weights import tiny_infinity


def prompts(lens=(5, 9), seed=3):
    g = torch.Generator().manual_seed(seed)
    return InfinityText(tuple(torch.randn(n, 256, generator=g) for n in lens))


@dataclass(frozen=True)
class DrawnLogits(Guider):
    """Keeps the logits each scale's tokens were drawn from (after its base's guidance); changes nothing."""

    base: Guider | None = None
    seen: list = field(default_factory=list, compare=False)
    kind = "drawn-logits"

    def label(self):
        return "drawn logits"

    def runtime(self, info):
        seen = self.seen

        class Runtime(GuiderRuntime):
            def observe(self, record):
                seen.append(record.logits.clone())
        return Runtime()


GENERATION = Generation(prompts(), seed=1, draw=Draw(top_k=1))  # greedy: each bit is its pair's larger logit


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_sampling_gives_finite_images_and_mostly_the_fp32_bits(dtype):
    """A bit can differ from the fp32 run only where its fp32 margin |l_1 - l_0| is within the half-precision
    error of the logits. Both dtypes keep p significant bits (bf16 8, fp16 11: eps = 2^(1 - p) = finfo.eps);
    each rounding adds at most eps/2 relative, and the logits come out of 4 blocks of 3 branches and the head,
    about 32 roundings in sequence: error <= 16 eps times the logits' scale (their rms). Bits with a smaller
    margin ("near ties") may flip, and a flipped bit changes the next scales' inputs slightly, so a few more may
    follow: the test allows twice the near ties plus 1 %."""
    model = tiny_infinity()
    recorded = DrawnLogits(base=CFG(3.0))
    exact = sample(model, recorded, GENERATION)
    half = copy.deepcopy(model).to(dtype)
    assert half.dtype == dtype and half.vae.decoder.conv_in.conv.weight.dtype == dtype
    out = sample(half, CFG(3.0), GENERATION)
    assert out.images.dtype == torch.float32 and bool(torch.isfinite(out.images).all())
    eps = torch.finfo(dtype).eps
    near = []
    for logits in recorded.seen:
        pairs = logits.view(*logits.shape[:2], -1, 2)
        margin = (pairs[..., 1] - pairs[..., 0]).abs()
        near.append((margin < 16 * eps * logits.pow(2).mean().sqrt()).flatten())
    near_ties = torch.cat(near).float().mean().item()
    agree = torch.cat([(a == b).flatten() for a, b in zip(exact.tokens, out.tokens)]).float().mean().item()
    assert agree >= 1 - 2 * near_ties - 0.01, (agree, near_ties)


# --- the decode guard (models/base.py ScalewiseModel.decode) on the BSQ VAE ----------------------------------------
def inject_inf(module, dtypes):
    """A forward hook writing one inf into the module's output when it runs in one of `dtypes` (what an fp16
    overflow leaves)."""
    def hook(mod, args, out):
        if out.dtype in dtypes:
            out = out.clone()
            out.view(-1)[0] = float("inf")
            return out
    return module.register_forward_hook(hook)


def canvas(model, seed=0):
    h, w = model.vae_scales[-1]
    return torch.randn(2, model.vae.config.bits, h, w, generator=torch.Generator().manual_seed(seed)) / 8 ** 0.5


def test_fp16_overflow_is_decoded_again_in_float32():
    model = tiny_infinity()
    model.vae.half()
    fhat = canvas(model)
    reference = copy.deepcopy(model.vae).float().decode(fhat)  # the same fp16 weights, in float32
    handle = inject_inf(model.vae.decoder.conv_in, {torch.float16})
    try:
        assert not torch.isfinite(model.vae.decode(fhat)).all()   # the fault: NaN images
        with pytest.warns(RuntimeWarning, match="BSQ VAE decoder overflowed in float16: decoded again in float32"):
            images = model.decode(fhat)
    finally:
        handle.remove()
    assert torch.equal(images, reference)
    assert all(p.dtype == torch.float16 for p in model.vae.decoder.parameters())  # precision restored


def test_overflow_in_float32_too_is_a_named_error():
    model = tiny_infinity()
    model.vae.half()
    handle = inject_inf(model.vae.decoder.conv_in, {torch.float16, torch.float32})
    try:
        with pytest.raises(NonFiniteImageError, match="BSQ VAE decoder gives NaN/inf even in float32: the latent is "
                                                      "out of the decoder's range"):
            model.decode(canvas(model))
    finally:
        handle.remove()
    assert model.vae.decoder_dtype == torch.float16


def test_a_damaged_vae_weight_is_named_with_its_file(tmp_path):
    model = tiny_infinity()
    sd = {k: v.clone() for k, v in model.vae.state_dict().items() if not k.startswith("quantize.")}
    sd["decoder.conv_out.conv.weight"][0, 0, 0, 0] = float("nan")
    save_file(sd, str(tmp_path / "damaged_vae.safetensors"))
    damaged = InfinityModel(model.transformer, load_bsq_vae(tmp_path / "damaged_vae.safetensors"))
    with pytest.raises(NonFiniteImageError, match="its weight decoder.conv_out.conv.weight holds NaN/inf: the BSQ "
                                                  "VAE file 'damaged_vae.safetensors' is damaged, download it again"):
        damaged.decode(canvas(model))
    with pytest.raises(NonFiniteImageError, match="damaged_vae.safetensors"):  # the sampler's final decode too
        sample(damaged, CFG(3.0), GENERATION)


def test_a_non_finite_latent_is_named():
    model = tiny_infinity()
    fhat = canvas(model)
    fhat[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteImageError, match="holds NaN/inf before decoding: the BSQ VAE's latent"):
        model.decode(fhat)


def test_sampling_in_fp16_gives_finite_images_from_the_float32_redecode():
    """The tiny BSQ decoder overflows fp16 on its own (no injected fault): the images come from the float32
    re-decode."""
    half = copy.deepcopy(tiny_infinity()).to(torch.float16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sample(half, CFG(3.0), GENERATION)
    assert bool(torch.isfinite(out.images).all())
    assert any("BSQ VAE decoder overflowed in float16" in str(w.message) for w in caught)
