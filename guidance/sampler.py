"""The scale-wise sampler: one forward per scale, guidance, token draw, latent update.

The loop of the official `VAR.autoregressive_infer_cfg` (FoundationVision/VAR, models/var.py; VAR paper, Tian et al.
2024, arXiv 2404.02905, Alg. 2) and `SwittiPipeline.__call__` (yandex-research/switti, models/pipeline.py; Voronov
et al. 2024, arXiv 2412.01819), with the guidance step delegated to a guider stack (guidance/stack.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .base import Guider, RunInfo, ScaleRecord
from .contract import ScalewiseModelLike
from .draw import (check_probabilities, draw_tokens, filter_logits_, invalid_probabilities, make_generators,
                   per_draw, smooth_probabilities)
from .editing import plan_edit
from .request import Generation
from .schedules import ramp
from .stack import GuidanceRun
from .trace import GuidanceTrace, guidance_magnitude, sampled_confidence


@dataclass
class SampleOutput:
    """What `sample` returns: the decoded images, the token maps of every scale and, with trace=True, the guidance
    trace."""

    images: torch.Tensor         # float32 [B, 3, H, W] in [0, 1], (H, W) = model.image_shape (pixels)
    tokens: list[torch.Tensor]   # K int64 maps [B, h_k, w_k] ([B, h_k, w_k, G] for token_groups G > 1), coarse to fine
    trace: GuidanceTrace | None = None


@dataclass
class ScaleProgress:
    """Handed to the callback after each scale; raising from the callback cancels the run cleanly (the model's
    caches are released, the exception propagates out of `sample`).

    k: the scale just finished (0-based) of num_scales = K. fhat: the accumulated latent float32
    [B, Cvae, h_K, w_K] after scale k (live: copy it to keep it). model: the ScalewiseModel, for `preview`."""

    k: int
    num_scales: int
    fhat: torch.Tensor = field(repr=False)
    model: object = field(repr=False)

    def preview(self, max_images: int | None = None, low_res: bool = False) -> torch.Tensor:
        """Decode the partial latent: float32 [b, 3, H, W] in [0, 1]. `low_res` decodes it at this
        scale's own size (16 px per token), which costs h_k w_k / (h_K w_K) of a full decode. `max_images` keeps
        the first b images of the batch (None: all B). (H, W) = 16 (h_K, w_K), or 16 (h_k, w_k) with `low_res`
        (the token grid, also where Infinity's 8B doubles the canvas). May raise models.base.NonFiniteImageError (see
        `ScalewiseModel.decode`)."""
        fhat = self.fhat if max_images is None else self.fhat[:max_images]
        height, width = self.model.scale_shapes[self.k]
        if low_res and (height < fhat.shape[-2] or width < fhat.shape[-1]):
            fhat = _area_down(fhat, (height, width))
        return self.model.decode(fhat)


def _area_down(fhat: torch.Tensor, size) -> torch.Tensor:
    """Area down-sampling for the low-resolution preview. Backends without it for sizes that do not divide
    (MPS: pytorch/pytorch#143864) run it on the CPU: one small latent per preview. The sampling path itself
    uses the model's exact equivalent (models/resize.py)."""
    try:
        return F.interpolate(fhat, size=size, mode="area")
    except (RuntimeError, NotImplementedError):
        return F.interpolate(fhat.cpu(), size=size, mode="area").to(fhat.device)


@torch.inference_mode()
def sample(model: ScalewiseModelLike, guider: Guider | None, generation: Generation, *, trace: bool = False,
           callback: Callable[[ScaleProgress], None] | None = None) -> SampleOutput:
    """Generate images scale by scale; returns a `SampleOutput` (images float32 [B, 3, H, W] in [0, 1], (H, W) =
    model.image_shape; the K token maps int64 [B, h_k, w_k], or [B, h_k, w_k, G] for a model whose positions
    hold G > 1 independent draws (`model.token_groups`, Infinity's bits: each group is filtered and drawn from its
    own softmax); the trace or None).

    model: an object with the model contract (`contract.ScalewiseModelLike`: models/base.py's `ScalewiseModel`). guider: a guider stack
    (guidance/base.py), None = unguided (cond-only logits, as the official samplers with cfg = 0, where
    (1 + t) l_c - t l_u with t = cfg * ratio is l_c). generation: what to generate (`guidance.Generation`, already
    checked): its conditioning goes to `model.prepare_condition`; image j of the batch uses its own random stream,
    that of image `batch_index + j` of the seed (image 0: the seed itself, as the official samplers; others:
    guidance.draw.image_seed), so it is the same whatever the batch size, a new seed gives all new images, and
    batch_size=1, batch_index=i re-makes image i alone (its stream and its conditioning entry: image j takes entry
    (batch_index + j) % len, `model.prepare_condition(..., first=batch_index)`). Its `draw`
    (`Draw`) sets top-k/top-p (`top_k=1` is greedy decoding), Gumbel smoothing, the temperature tau of every
    scale's logits before guidance and that of the scales after the guider's window; its `edit` (`Edit`, rules in `editing.py`; the official VAR demo
    `demo_zero_shot_edit.ipynb`) keeps the image's tokens where the mask is 0 and on the first
    round((1 - denoise) K) scales: they replace the drawn ones right after each draw (the draws still consume the
    random streams), so `out.tokens` holds the effective tokens; a mask that marks nothing keeps its image and warns
    (guidance.editing.InputNotice). `trace=True` records the per-token guidance magnitude and sampled-token
    confidence of every scale. `callback` gets a `ScaleProgress` after each scale.

    Raises: ValueError for a guider stack that cannot serve this model (two guiders of one kind, a model it cannot
    guide, a missing base), for more_smooth on a model without Gumbel smoothing (`model.smoothing` None), or an edit
    image or mask of the wrong size or batch (the message names it); TypeError/
    ValueError from `model.prepare_condition` for a conditioning of another family or out of range; RuntimeError
    when some logits row has no finite value to draw from (NaN/inf from an overflow, checked once after the last
    scale); models.base.NonFiniteImageError when the decoded image cannot be made finite; whatever `callback`
    raises.
    """
    draw = generation.draw
    top_k, top_p, more_smooth = draw.top_k, draw.top_p, draw.more_smooth
    smooth_start_scale, last_scale_temperature = draw.smooth_start_scale, draw.last_scale_temperature
    inverse_temperature = None if draw.temperature == 1.0 else 1 / draw.temperature
    seed, batch_index = generation.seed, generation.batch_index
    device = model.weight_device
    smoothing, groups = model.smoothing, model.token_groups
    if more_smooth and smoothing is None:
        raise ValueError(f"more_smooth: the {model.family} family has no Gumbel smoothing (its official sampler has "
                         "none): turn more_smooth off")
    prepared = model.prepare_condition(generation.conditioning, generation.batch_size, first=batch_index)
    batch = model.batch_size(prepared)
    info = RunInfo.of(model, batch)
    shapes = info.scale_shapes
    edit = plan_edit(model, generation.edit, batch, first=batch_index)
    num_scales = len(shapes)
    run = GuidanceRun(guider, info)
    generators = make_generators(seed, batch, device, batch_index)
    token_shape = () if groups == 1 else (groups,)
    fhat = model.new_canvas(batch)
    tokens, latent_in, cached = [], None, 0
    image_size = info.image_shape if info.image_shape[0] != info.image_shape[1] else info.image_shape[0]
    record = GuidanceTrace(info.patch_nums, image_size, guider.describe() if guider else "unguided",
                           edit_mask=_cpu(edit.regenerated) if edit is not None else None) if trace else None
    state = model.start(prepared, with_uncond=bool(run.uncond_scales))
    invalid = None  # device-side flag of the draws' validity, read once at the end (no per-scale sync)
    try:
        for k, (height, width) in enumerate(shapes):
            state.set_uncond(k in run.uncond_scales)
            if edit is not None:  # token pruning forwards the regenerated tokens first
                state.prefer(k, ~edit.keep[k])
            rows = state.rows
            weights = _value_weights(run, k, cached, height * width, batch, rows, device)
            logits = model.forward_scale(state, k, latent_in, value_weights=weights)
            if inverse_temperature is not None:  # tau before guidance, as the official mul(1 / tau)
                logits = logits.mul(inverse_temperature)
            cached += height * width
            cond, uncond = logits[:batch], (logits[batch:] if rows > batch else None)
            combined = run.combine(k, cond, uncond)
            guided = run.postprocess(k, combined)
            logits = guided  # what the tokens are drawn from
            if last_scale_temperature is not None and k >= run.guidance_end:
                logits = guided / last_scale_temperature

            ratio = ramp(k, num_scales)
            smooth = (more_smooth and k >= smooth_start_scale
                      and (k < run.guidance_end or not smoothing.guided_scales_only))
            if smooth and smoothing.replaces_draw:
                probs = smooth_probabilities(logits, ratio, generators)  # no draw, no filtering
                idx = probs.argmax(-1)  # recorded only: the mixture, not this code, feeds the model
                h = model.embed_mixture(probs)
            else:
                filtered = filter_logits_(per_draw(logits.clone(), groups), top_k, top_p)
                bad = invalid_probabilities(filtered)
                invalid = bad if invalid is None else invalid | bad
                idx = draw_tokens(filtered, generators).view(batch, height * width, *token_shape)
                if smooth:  # the mixture of the filtered logits, after the draw
                    h = model.embed_mixture(smooth_probabilities(filtered, ratio, generators))
                else:
                    h = model.embed_tokens(idx)
            if edit is not None:
                idx, h = edit.force(k, idx, h, model.embed_tokens)
            tokens.append(idx.view(batch, height, width, *token_shape))
            run.observe(ScaleRecord(k, height, cond, uncond, logits, idx, (height, width)))
            if record is not None:
                _record(record, (height, width), cond, uncond, combined, guided, logits, idx, groups)
            # Release this scale's [rows, n, V] logits now, not when the next scale overwrites the
            # names: otherwise they stay alive through the next forward pass and the final decode.
            logits = cond = uncond = combined = guided = probs = filtered = None

            latent_in = model.next_autoregressive_input(k, fhat, h)
            if callback is not None:
                callback(ScaleProgress(k, num_scales, fhat, model))
    finally:
        state.close()
    check_probabilities(invalid)
    if record is not None:  # device -> host copies once, after the last scale
        record.magnitude = [m.cpu() for m in record.magnitude]
        record.confidence = [c.cpu() for c in record.confidence]
    return SampleOutput(model.decode(fhat), tokens, record)


def _cpu(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else x.cpu()


def _record(trace: GuidanceTrace, shape, cond, uncond, combined, guided, logits, idx, groups):
    """Guidance magnitude: against l_u before post-processing where the uncond branch ran, else the
    post-processing's own push against l_c (SSG alone, unguided scales), before any temperature.
    Confidence: the drawn token's probability under the distribution it was drawn from."""
    magnitude = guidance_magnitude(combined, uncond) if uncond is not None else guidance_magnitude(guided, cond)
    shape = (cond.shape[0], *shape)
    trace.magnitude.append(magnitude.view(shape))  # moved to the host after the run (no per-scale sync)
    trace.confidence.append(sampled_confidence(logits, idx, groups).view(shape))
    trace.uncond_ran.append(uncond is not None)


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
