"""Training of the built-in models (tiny-shapes, and scenes-128 through tools/scenes/train.py): multi-scale VQ-VAE,
VAR and judge. Seeded and CPU-capable. Every function takes a `TrainingSpec` (default: the tiny-shapes model's), which
names the data, the scale schedule and the network sizes.

The VQ-VAE learns with straight-through residual quantisation over the VAR scale schedule (commitment
loss beta = 0.25, as in VAR's tokenizer) plus dead-code restarts; the VAR learns next-scale prediction with
teacher forcing and 10 % label dropout (the null class that classifier-free guidance needs).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from scalewise.models.shapes import CLASS_NAMES, PATCH_NUMS, RESOLUTION
from scalewise.models.var import VARConfig, VARTransformer
from scalewise.models.vqvae import VQVAE, AttnBlock, ResBlock, VQVAEConfig

from .data import VAE_CLASSES, sample
from scalewise.models.judge import Judge

VAE_CONFIG = VQVAEConfig(vocab_size=512, z_channels=32, ch=32)
VAR_CONFIG = VARConfig(depth=4, width=256, heads=4, patch_nums=PATCH_NUMS, num_classes=len(CLASS_NAMES),
                       vocab_size=VAE_CONFIG.vocab_size, latent_channels=VAE_CONFIG.z_channels)


@dataclass(frozen=True)
class TrainingSpec:
    """What one built-in model is trained on and how large it is.

    sample(count, seed, size, classes) -> (images float32 [N, 3, size, size] in [0, 1], masks bool [N, size, size],
    labels int64 [N]) renders the data; `vae_classes` is the class list the VQ-VAE trains on; `autocast_bf16` runs
    the VQ-VAE's encoder and decoder under CPU bfloat16 autocast while training (the quantiser stays float32)."""

    name: str
    resolution: int
    patch_nums: tuple[int, ...]
    class_names: tuple[str, ...]
    vae_classes: tuple[str, ...]
    sample: Callable
    vae_config: VQVAEConfig
    var_config: VARConfig
    autocast_bf16: bool = False


SHAPES_SPEC = TrainingSpec("tiny-shapes", RESOLUTION, PATCH_NUMS, CLASS_NAMES, VAE_CLASSES, sample, VAE_CONFIG,
                           VAR_CONFIG)
COMMITMENT = 0.25
COLOUR_POOL = 8  # pixels per side of the blocks whose mean colour train_vqvae's colour term compares
LABEL_DROPOUT = 0.1
# Seed ranges of the rendered data: training batches, the VAR's token set, held-out images (never trained on).
VAE_SEED, VAR_SEED, JUDGE_SEED, DECODER_SEED, HELD_OUT_SEED = 10_000, 20_000, 30_000, 40_000, 99


def _schedule(step: int, steps: int, lr: float, warmup: int = 100) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))


def _set_lr(opt, lr):
    for group in opt.param_groups:
        group["lr"] = lr


def _batch(seed: int, count: int, classes=None, spec: TrainingSpec = SHAPES_SPEC):
    images, masks, labels = spec.sample(count, seed, spec.resolution, classes or spec.class_names)
    return torch.from_numpy(images), torch.from_numpy(masks), torch.from_numpy(labels)


def _autocast(spec: TrainingSpec):
    return torch.autocast("cpu", dtype=torch.bfloat16) if spec.autocast_bf16 else contextlib.nullcontext()


def quantize_for_training(vae: VQVAE, f: torch.Tensor, patch_nums=PATCH_NUMS):
    """Residual quantisation of f float32 [B, C, h, w] (h = w = patch_nums[-1]) with gradients: (f_hat float32
    [B, C, h, w] with a straight-through path to f, commitment + codebook loss (scalar), the chosen codes int64
    [B, pn_k, pn_k] per scale). The codes are those of `MultiScaleQuantizer.encode` (VAR paper Alg. 1); the loss is
    VQ-VAE's codebook + beta commitment terms (van den Oord et al. 2017, Eq. 3, beta = 0.25) averaged over scales."""
    q, pns = vae.quantize, tuple(patch_nums)
    target = f.detach()
    residual, f_hat, loss, codes = target.clone(), torch.zeros_like(target), 0.0, []
    codebook = q.embedding.weight
    for k, pn in enumerate(pns):
        z = residual if k == len(pns) - 1 else F.interpolate(residual, size=(pn, pn), mode="area")
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        with torch.no_grad():
            idx = torch.cdist(flat, codebook.detach()).argmin(1).view(f.shape[0], pn, pn)
        codes.append(idx)
        h = q.scale_contribution(k, pns, codebook[idx].permute(0, 3, 1, 2))
        f_hat = f_hat + h
        residual = residual - h.detach()
        loss = loss + COMMITMENT * F.mse_loss(f_hat.detach(), f) + F.mse_loss(f_hat, target)
    return target + (f_hat - target).detach() + (f - target), loss / len(pns), codes


def _restart_dead_codes(vae: VQVAE, usage: torch.Tensor, f: torch.Tensor, gen: torch.Generator) -> int:
    """Move codes unused since the last restart onto random latent vectors of the current batch."""
    dead = (usage == 0).nonzero()[:, 0]
    if len(dead):
        pool = f.detach().permute(0, 2, 3, 1).reshape(-1, f.shape[1])
        pick = torch.randint(len(pool), (len(dead),), generator=gen)
        with torch.no_grad():
            vae.quantize.embedding.weight[dead] = pool[pick] * 0.5  # early scales carry about half of f
    usage.zero_()
    return len(dead)


def _zero_init_residuals(vae: VQVAE) -> VQVAE:
    """Residual and attention branches start at zero, so the network starts shallow and learns faster."""
    with torch.no_grad():
        for m in vae.modules():
            if isinstance(m, ResBlock):
                m.conv2.weight.zero_(), m.conv2.bias.zero_()
            elif isinstance(m, AttnBlock):
                m.proj_out.weight.zero_(), m.proj_out.bias.zero_()
    return vae


def train_vqvae(steps: int = 1500, batch: int = 32, lr: float = 1e-3, seed: int = 0, log=print,
                resume: VQVAE | None = None, first_step: int = 0, spec: TrainingSpec = SHAPES_SPEC,
                init: Callable[[VQVAE], VQVAE] | None = None, colour_weight: float = 0.0) -> VQVAE:
    """A VQ-VAE of `spec.vae_config` trained for `steps` Adam steps on batches of `spec.vae_classes` (fp32 weights,
    eval mode). `resume` continues from a VQ-VAE with a fresh schedule; `first_step` offsets the data seeds so a
    continued run sees new images; `init` edits the freshly built network first (a warm start). Loss: MSE + L1 of the
    image in [-1, 1], the quantiser's, and `colour_weight` times the MSE of the images' COLOUR_POOL x COLOUR_POOL
    block means (their local colour, which the pixel loss weighs no more than an edge's)."""
    torch.manual_seed(seed)
    if resume is None:
        vae = _zero_init_residuals(VQVAE(spec.vae_config))
        vae = init(vae) if init is not None else vae
    else:
        vae = resume.float().train().requires_grad_(True)
    opt = torch.optim.Adam(vae.parameters(), lr=lr, betas=(0.9, 0.99))
    usage = torch.zeros(spec.vae_config.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(steps):
        _set_lr(opt, _schedule(step, steps, lr))
        images, _, _ = _batch(VAE_SEED + first_step + step, batch, spec.vae_classes, spec)
        x = images * 2 - 1
        with _autocast(spec):
            f = vae.quant_conv(vae.encoder(x)).float()
        f_hat, vq_loss, codes = quantize_for_training(vae, f, spec.patch_nums)
        with _autocast(spec):
            recon = vae.decoder(vae.post_quant_conv(f_hat)).float()
        rec_loss = F.mse_loss(recon, x) + F.l1_loss(recon, x)
        loss = rec_loss + vq_loss
        if colour_weight:
            loss = loss + colour_weight * F.mse_loss(F.avg_pool2d(recon, COLOUR_POOL), F.avg_pool2d(x, COLOUR_POOL))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for c in codes:
            usage += torch.bincount(c.flatten(), minlength=len(usage)).float()
        if step % 50 == 49 and step < steps * 0.8:
            restarted = _restart_dead_codes(vae, usage, f, gen)
        else:
            restarted = None
        if step % 50 == 49:
            log(f"vqvae step {step + 1}/{steps}  recon {rec_loss.item():.4f}  vq {vq_loss.item():.4f}  "
                f"restarted {restarted}  {time.time() - t0:.0f}s")
    return vae.eval().requires_grad_(False)


def train_decoder(vae: VQVAE, steps: int = 400, batch: int = 32, lr: float = 3e-4, seed: int = 0,
                  log=print, spec: TrainingSpec = SHAPES_SPEC) -> VQVAE:
    """Fine-tune only the decoder (and post_quant_conv) on the model's class list: the tokens, and so any
    transformer trained on them, stay the same; the rendering of shapes the tokenizer never saw improves."""
    torch.manual_seed(seed)
    vae = vae.float().eval().requires_grad_(False)
    params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))
    t0 = time.time()
    for step in range(steps):
        _set_lr(opt, _schedule(step, steps, lr, warmup=20))
        images, _, _ = _batch(DECODER_SEED + step, batch, spec=spec)
        x = images * 2 - 1
        with torch.no_grad():
            fhat = vae.quantize.tokens_to_fhat(vae.image_to_tokens(images, spec.patch_nums), spec.patch_nums)
        with _autocast(spec):
            recon = vae.decoder(vae.post_quant_conv(fhat)).float()
        loss = F.mse_loss(recon, x) + F.l1_loss(recon, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 49:
            log(f"decoder step {step + 1}/{steps}  recon {loss.item():.4f}  {time.time() - t0:.0f}s")
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def encode_tokens(vae: VQVAE, count: int, seed: int = VAR_SEED, chunk: int = 500, spec: TrainingSpec = SHAPES_SPEC):
    """Labels int64 [N], tokens int64 [N, L] and teacher-forcing inputs float16 [N, L - n_0, C] of `count` rendered
    images (L = sum of pn_k^2 over `spec.patch_nums`; C the VQ-VAE's z_channels)."""
    labels, tokens, inputs = [], [], []
    for i, start in enumerate(range(0, count, chunk)):
        images, _, lab = _batch(seed + i, min(chunk, count - start), spec=spec)
        codes = vae.image_to_tokens(images, spec.patch_nums)
        labels.append(lab)
        tokens.append(torch.cat([c.flatten(1) for c in codes], 1))
        inputs.append(vae.quantize.teacher_forcing_inputs(codes, spec.patch_nums).half())
    return torch.cat(labels), torch.cat(tokens), torch.cat(inputs)


def init_var(model: VARTransformer, seed: int) -> VARTransformer:
    """VAR's initialisation recipe: std sqrt(1/3C) weights, near-zero block gates (gamma), half-strength
    AdaLN scale/shift, a small head."""
    gen = torch.Generator().manual_seed(seed)
    c = model.config.width
    std = math.sqrt(1 / (3 * c))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale_mul_1H11"):
                continue  # log(4), the official start
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            else:
                p.zero_()
        for block in model.blocks:
            w = block.ada_lin[1].weight
            w[: 2 * c].mul_(1e-5)
            w[2 * c:].mul_(0.5)
        model.head.weight.mul_(0.02 / std)
    return model


def train_var(labels, tokens, inputs, steps: int = 1500, batch: int = 128, lr: float = 1e-3, seed: int = 0,
              log=print, resume: VARTransformer | None = None, spec: TrainingSpec = SHAPES_SPEC) -> VARTransformer:
    """A VARTransformer of `spec.var_config` trained by teacher forcing on (labels int64 [N], tokens int64 [N, L],
    inputs float [N, L - n_0, C]) from `encode_tokens`, cross-entropy on every token, AdamW, labels replaced by the
    null class with probability LABEL_DROPOUT (VAR paper §4 / classifier-free guidance training). `resume` continues
    training that transformer with a fresh schedule. Returns fp32 weights in eval mode."""
    torch.manual_seed(seed)
    config = spec.var_config
    model = init_var(VARTransformer(config), seed) if resume is None else resume.float().train().requires_grad_(True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "pos" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(seed)
    null = config.num_classes
    t0 = time.time()
    for step in range(steps):
        _set_lr(opt, _schedule(step, steps, lr))
        pick = torch.randint(len(labels), (batch,), generator=gen)
        lab = labels[pick].clone()
        lab[torch.rand(batch, generator=gen) < LABEL_DROPOUT] = null
        with _autocast(spec):
            logits = model.forward_teacher(lab, inputs[pick].float()).float()
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[pick].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        if step % 50 == 49:
            log(f"var step {step + 1}/{steps}  loss {loss.item():.4f}  {time.time() - t0:.0f}s")
    return model.eval().requires_grad_(False)


def _augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur, noise and loss of colour of random strength, so the judge reads shapes in soft, grey, decoder-made
    images as well as in the crisp coloured originals."""
    grey = (images * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True)
    fade = (torch.rand(len(images), 1, 1, 1, generator=gen) * 1.6).clamp(max=1)  # fully grey 3 times in 8
    images = images * (1 - fade) + grey * fade
    k = torch.tensor([1.0, 2.0, 1.0])
    kernel = (k[:, None] * k[None]) / 16
    blurred = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel.expand(3, 1, 3, 3), groups=3)
    mix = torch.rand(len(images), 1, 1, 1, generator=gen)
    noise = torch.randn(images.shape, generator=gen) * 0.03 * torch.rand(len(images), 1, 1, 1, generator=gen)
    return (images * (1 - mix) + blurred * mix + noise).clamp(0, 1)


def train_judge(steps: int = 1500, batch: int = 64, lr: float = 2e-3, seed: int = 0, log=print,
                spec: TrainingSpec = SHAPES_SPEC, batches: Callable | None = None) -> Judge:
    """The judge (class + mask + features) trained on `spec`'s data with the `_augment` corruptions; cross-entropy on
    the class plus per-pixel binary cross-entropy on the mask. `batches(step, count)` -> (images, masks, labels)
    replaces rendering a fresh batch per step (e.g. a pre-rendered pool). Returns fp32 weights in eval mode."""
    torch.manual_seed(seed)
    judge = Judge(len(spec.class_names))
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(steps):
        _set_lr(opt, _schedule(step, steps, lr))
        images, masks, labels = (batches(step, batch) if batches is not None
                                 else _batch(JUDGE_SEED + step, batch, spec=spec))
        logits, mask_logits, _ = judge(_augment(images, gen))
        loss = F.cross_entropy(logits, labels) + F.binary_cross_entropy_with_logits(mask_logits, masks.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 99:
            acc = (logits.argmax(1) == labels).float().mean().item()
            log(f"judge step {step + 1}/{steps}  loss {loss.item():.4f}  batch acc {acc:.3f}  {time.time() - t0:.0f}s")
    return judge.eval().requires_grad_(False)


def held_out(count: int = 2000, spec: TrainingSpec = SHAPES_SPEC):
    """Real images never trained on (for accuracy checks and the Fréchet reference): images float32 [N, 3, S, S] in
    [0, 1], masks bool [N, S, S], labels int64 [N] (S = spec.resolution)."""
    images, masks, labels = spec.sample(count, HELD_OUT_SEED, spec.resolution)
    return torch.from_numpy(images), torch.from_numpy(masks), torch.from_numpy(labels)


def fp16_state_dict(sd: dict) -> dict:
    return {k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
            for k, v in sd.items()}


__all__ = ["VAE_CONFIG", "VAR_CONFIG", "TrainingSpec", "SHAPES_SPEC", "train_vqvae", "train_decoder", "encode_tokens", "train_var", "train_judge", "held_out",
           "quantize_for_training", "fp16_state_dict"]
