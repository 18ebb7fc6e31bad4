"""The scale-wise sampler: one forward per scale, guidance, token draw, latent update."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .base import Guider, RunInfo, ScaleRecord
from .sampling import check_sampling_args, draw_tokens, filter_logits_, make_generators, smooth_probabilities
from .schedules import ramp
from .stack import GuidanceRun
from .trace import GuidanceTrace, guidance_magnitude, sampled_confidence


@dataclass
class SampleOutput:
    images: torch.Tensor         # float32 [B, 3, H, W] in [0, 1]
    tokens: list[torch.Tensor]   # K int64 maps [B, h_k, w_k], coarse to fine
    trace: GuidanceTrace | None = None


@dataclass
class ScaleProgress:
    """Handed to the callback after each scale; raising from the callback cancels the run cleanly."""

    k: int
    num_scales: int
    fhat: torch.Tensor = field(repr=False)
    model: object = field(repr=False)

    def preview(self, max_images: int | None = None, low_res: bool = False) -> torch.Tensor:
        """Decode the partial latent: float32 [b, 3, H, W] in [0, 1]. `low_res` decodes it at this
        scale's own size (16 px per token), which costs (pn_k / pn_K)^2 of a full decode."""
        fhat = self.fhat if max_images is None else self.fhat[:max_images]
        side = self.model.patch_nums[self.k]
        if low_res and side < fhat.shape[-1]:
            fhat = F.interpolate(fhat, size=(side, side), mode="area")
        return self.model.vae.fhat_to_image(fhat)


def class_labels(conditioning, num_classes: int, batch_size: int | None, device) -> torch.Tensor:
    """Class ids for a VAR batch: image i gets conditioning[i % len]; `num_classes` is the null class."""
    if isinstance(conditioning, torch.Tensor):
        ids = conditioning.flatten().tolist()
    elif isinstance(conditioning, int):
        ids = [conditioning]
    elif isinstance(conditioning, Sequence) and not isinstance(conditioning, str):
        ids = list(conditioning)
    else:
        raise TypeError(f"VAR conditioning must be class ids (int, list or tensor), got {type(conditioning).__name__}")
    if not ids:
        raise ValueError("no class given: pass at least one class id")
    for c in ids:
        if isinstance(c, bool) or int(c) != c or not 0 <= c <= num_classes:
            raise ValueError(f"class id {c!r} is out of range: use 0..{num_classes - 1}, or {num_classes} "
                             "for the null (unconditional) class")
    if batch_size is not None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        ids = [ids[i % len(ids)] for i in range(int(batch_size))]
    return torch.tensor([int(c) for c in ids], dtype=torch.long, device=device)


@torch.inference_mode()
def sample(model, guider: Guider | None = None, conditioning=None, *, seed: int = 0,
           batch_size: int | None = None, top_k: int = 0, top_p: float = 0.0, more_smooth: bool = False,
           trace: bool = False, callback: Callable[[ScaleProgress], None] | None = None) -> SampleOutput:
    """Generate images scale by scale. Image i uses its own random stream seeded with seed + i, so it
    is the same whatever the batch size; `top_k=1` is greedy decoding. `trace=True` also records the
    per-token guidance magnitude and sampled-token confidence of every scale."""
    check_sampling_args(top_k, top_p, model.vocab_size)
    device = model.weight_device
    labels = class_labels(conditioning, model.num_classes, batch_size, device)
    batch, patch_nums = labels.shape[0], model.patch_nums
    num_scales = len(patch_nums)
    run = GuidanceRun(guider, RunInfo(tuple(patch_nums), batch, model.vocab_size, model.family,
                                      model.autoregressive))
    generators = make_generators(seed, batch, device)
    vae = model.vae
    side = patch_nums[-1]
    fhat = torch.zeros(batch, vae.config.z_channels, side, side, device=device)
    tokens, latent_in, cached = [], None, 0
    record = GuidanceTrace(tuple(patch_nums), model.image_size,
                                                  guider.describe() if guider else "unguided") if trace else None
    state = model.start(labels, with_uncond=0 in run.uncond_scales)
    try:
        for k, pn in enumerate(patch_nums):
            if state.has_uncond and k not in run.uncond_scales:
                state.drop_uncond()
            rows = state.cond.embedding.shape[0]
            weights = _value_weights(run, k, cached, pn * pn, batch, rows, device)
            logits = model.forward_scale(state, k, latent_in, value_weights=weights)
            cached += pn * pn
            cond, uncond = logits[:batch], (logits[batch:] if rows > batch else None)
            combined = run.combine(k, cond, uncond)
            guided = run.postprocess(k, combined)

            filtered = filter_logits_(guided.clone(), top_k, top_p)
            idx = draw_tokens(filtered, generators)
            if more_smooth:
                probs = smooth_probabilities(filtered, ramp(k, num_scales), generators)
                h = probs @ vae.quantize.embedding.weight.float()
            else:
                h = vae.quantize.embedding.weight.float()[idx]
            tokens.append(idx.view(batch, pn, pn))
            run.observe(ScaleRecord(k, pn, cond, uncond, guided, idx))
            if record is not None:
                _record(record, k, pn, cond, uncond, combined, guided, idx)

            fhat += vae.quantize.scale_contribution(k, patch_nums, h.transpose(1, 2).reshape(batch, -1, pn, pn).contiguous())
            if k + 1 < num_scales:
                nxt = patch_nums[k + 1]
                latent_in = F.interpolate(fhat, size=(nxt, nxt), mode="area").flatten(2).transpose(1, 2)
            if callback is not None:
                callback(ScaleProgress(k, num_scales, fhat, model))
    finally:
        state.close()
    return SampleOutput(vae.fhat_to_image(fhat), tokens, record)


def _record(trace: GuidanceTrace, k, pn, cond, uncond, combined, guided, idx):
    """Guidance magnitude: against l_u before post-processing where the uncond branch ran, else the
    post-processing's own push against l_c (SSG alone, unguided scales)."""
    magnitude = guidance_magnitude(combined, uncond) if uncond is not None else guidance_magnitude(guided, cond)
    shape = (cond.shape[0], pn, pn)
    trace.magnitude.append(magnitude.view(shape).cpu())
    trace.confidence.append(sampled_confidence(guided, idx).view(shape).cpu())
    trace.guided.append(uncond is not None)


def _value_weights(run: GuidanceRun, k, cached, fresh, batch, rows, device):
    """Full [rows, cached + fresh] value multipliers: cond rows and this scale's positions stay 1."""
    if rows == batch or cached == 0:
        return None
    uncond_w = run.value_weights(k, cached)
    if uncond_w is None:
        return None
    full = torch.ones(rows, cached + fresh, device=device)
    full[batch:, :cached] = uncond_w.to(device)
    return full
