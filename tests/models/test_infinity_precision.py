"""Infinity in half precision (models/infinity.py): sampling with bf16 (the GPU default) and fp16 weights through
guidance.sample, and the decode guard of models/base.py on the BSQ VAE (damaged weights named, an fp16 overflow
decoded again in float32). Tiny random weights (tools/tiny_weights.py `tiny_infinity`)."""
import copy
from dataclasses import dataclass, field

import pytest
import torch

from scalewise.guidance import CFG, Draw, Generation, sample
from scalewise.guidance.base import Guider, GuiderRuntime
from scalewise.models.infinity import InfinityText
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


@pytest.mark.parametrize("dtype", [torch.bfloat16])
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
