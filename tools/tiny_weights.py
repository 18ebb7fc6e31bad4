"""Random weights of the official layouts, for the tests (tests/tiny.py re-exports these names) and the benchmarks
(tools/benchmark.py and the GPU scripts that take its models): the one home of their statistics. Nothing here is
downloaded or trained.

Statistics (not the reference init, which gives near-identity blocks and tiny logits: these give O(1) modulation and
logits of std ~3, so that greedy decoding and guidance produce varied tokens), per parameter by its full name, with
fan_in = the last dimension of a matrix:

  VAR     `*scale_mul_1H11` N(log 4, 0.5); `head.*` matrices N(0, 3/sqrt(fan_in)); other matrices
          N(0, 1/sqrt(fan_in)); vectors N(0, 0.1); then every `*ada_lin*` / `*ada_gss*` parameter x 0.5
          (AdaLN outputs ~0.5 rather than ~1).
  Switti  `*norm1.weight`, `*norm2.weight`, `*y_norm.weight` N(1, 0.1); `head.*` matrices N(0, 3/sqrt(fan_in));
          `crop_embed.weight` N(0, 1); other matrices N(0, 1/sqrt(fan_in)); vectors N(0, 0.1); then every
          `*ada_lin*` / `*crop_cond_scales*` parameter x 0.5.
  VQ-VAE  PyTorch's default init after torch.manual_seed(seed), codebook N(0, 1).
  Infinity (randomise_infinity) matrices N(0, 0.3), vectors N(0, 0.1), norm weights N(1, 0.1), in parameter order.
  Infinity at any width (infinity_init / infinity_state_dict, the GPU script tools/gpu_infinity_bench.py):
          `*scale_mul_1H11` N(log 4, 0.5); `head.*` matrices N(0, 3/sqrt(fan_in)); other matrices and embeddings
          N(0, 1/sqrt(fan_in)); `*norm.weight` N(1, 0.1); other vectors N(0, 0.1); the zero_k_bias buffers 0 (the
          official constant). N(0, 0.3) matrices would grow the activations by 0.3 sqrt(C) per layer at the
          released widths; these keep them O(1) at any width.
  T5      (tiny_t5_encoder, flan-t5-xl's encoder layout) layer-norm weights N(1, 0.1); the token table and the
          relative attention bias N(0, 1); other matrices N(0, 1/sqrt(fan_in)).

Two ways of drawing them, each bit for bit what its users have always had (the tests' recorded values and images
depend on the first, the published benchmark figures on the second):

  * random_var / random_switti: the model is built on the CPU (PyTorch's init, which consumes the global RNG, then
    overwritten), and every parameter in `named_parameters()` order becomes z * gain / sqrt(fan_in) + mean, z from
    torch.randn with a torch.Generator seeded `seed`; fp32.
  * materialised_var / materialised_switti: the model is built on the meta device and each parameter is drawn on
    `device` in fp32 by Tensor.normal_(mean, gain / sqrt(fan_in), generator) and stored in `dtype`, one at a time
    (one fp32 parameter is the only extra memory: full-size models fit a GPU). The same distributions, rounded
    differently (and on CUDA another random stream), so these are not the first's tensors.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from scalewise.models import (SCHEDULES, SwittiConfig, SwittiModel, SwittiTransformer, TextCondition, VARConfig,
                              VARTransformer, VQVAEConfig)
from scalewise.models.flan_t5 import T5EncoderConfig
from scalewise.models.var import VARModel
from scalewise.models.var_loader import build_var_transformer
from scalewise.models.vqvae_loader import build_vqvae

TINY_PN = (1, 2, 3, 4)  # a 64 px schedule: fast, and still exercises every code path
VQVAE_MULT = (1, 1, 2, 2, 4)  # the official VQ-VAE's channel multipliers (VAR and Switti alike)


class Init(NamedTuple):
    """One parameter's distribution: N(mean, gain / sqrt(fan_in)), then multiplied by `post`."""

    mean: float = 0.0
    gain: float = 1.0
    fan_in: int = 1
    post: float = 1.0


def var_init(name: str, shape: torch.Size) -> Init:
    """The VAR statistics (module docstring) of the parameter `name` of `shape`."""
    fan_in = shape[-1] if len(shape) > 1 else 1
    post = 0.5 if "ada_lin" in name or "ada_gss" in name else 1.0
    if name.endswith("scale_mul_1H11"):
        return Init(math.log(4.0), 0.5, post=post)
    if name.startswith("head.") and len(shape) == 2:
        return Init(gain=3.0, fan_in=fan_in, post=post)
    if len(shape) >= 2:
        return Init(fan_in=fan_in, post=post)
    return Init(gain=0.1, post=post)


def switti_init(name: str, shape: torch.Size) -> Init:
    """The Switti statistics (module docstring) of the parameter `name` of `shape`."""
    fan_in = shape[-1] if len(shape) > 1 else 1
    post = 0.5 if "ada_lin" in name or "crop_cond_scales" in name else 1.0
    if name.endswith(("norm1.weight", "norm2.weight", "y_norm.weight")):
        return Init(1.0, 0.1, post=post)
    if name.startswith("head.") and len(shape) == 2:
        return Init(gain=3.0, fan_in=fan_in, post=post)
    if name == "crop_embed.weight":
        return Init(post=post)
    if len(shape) >= 2:
        return Init(fan_in=fan_in, post=post)
    return Init(gain=0.1, post=post)


InitRule = Callable[[str, torch.Size], Init]


@torch.no_grad()
def redraw(model: torch.nn.Module, rule: InitRule, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter of a built (CPU, fp32) `model`, in `named_parameters()` order, by
    z * gain / sqrt(fan_in) + mean (z = torch.randn from a Generator seeded `seed`), then x post; eval mode, no
    gradients. Returns `model`."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        init = rule(name, p.shape)
        t = torch.randn(p.shape, generator=gen)
        if init.gain != 1.0:
            t = t * init.gain
        if init.fan_in != 1:
            t = t / math.sqrt(init.fan_in)
        if init.mean != 0.0:
            t = init.mean + t
        p.copy_(t)
        if init.post != 1.0:
            p.mul_(init.post)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def materialise(model: torch.nn.Module, rule: InitRule, device, dtype: torch.dtype, seed: int = 0) -> None:
    """Replace every (meta) parameter of `model`, module by module in `named_modules()` order, by one drawn on
    `device` in fp32 by normal_(mean, gain / sqrt(fan_in)) from a Generator of `device` seeded `seed`, x post,
    and stored in `dtype` without gradients: one fp32 parameter at a time is the only extra memory."""
    gen = torch.Generator(device=device).manual_seed(seed)
    for mod_name, mod in model.named_modules():
        for name, p in list(mod._parameters.items()):
            if p is None:
                continue
            full = f"{mod_name}.{name}" if mod_name else name
            init = rule(full, p.shape)
            t = torch.empty(p.shape, device=device, dtype=torch.float32)
            t.normal_(init.mean, init.gain / math.sqrt(init.fan_in), generator=gen)
            if init.post != 1.0:
                t.mul_(init.post)
            mod._parameters[name] = torch.nn.Parameter(t.to(dtype), requires_grad=False)
            del t


def check_materialised(model: torch.nn.Module) -> None:
    """Raises RuntimeError naming the first parameters or buffers of `model` still on the meta device."""
    meta = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if meta:
        raise RuntimeError(f"still on the meta device after building: {', '.join(meta[:5])}")


# -- VAR ---------------------------------------------------------------------------------------------------------

def var_config(depth=2, heads=2, patch_nums=SCHEDULES[256], shared_adaln=False, num_classes=1000) -> VARConfig:
    """A VAR layout of width 64 x heads (the official d16-d36 have heads = depth)."""
    return VARConfig(depth=depth, width=64 * heads, heads=heads, patch_nums=tuple(patch_nums),
                     shared_adaln=shared_adaln, num_classes=num_classes)


def random_var(cfg: VARConfig, seed=0) -> VARTransformer:
    """A VARTransformer of `cfg` on the CPU in fp32 with the VAR statistics, drawn by redraw() (eval, no grad)."""
    return redraw(VARTransformer(cfg), var_init, seed)


@torch.no_grad()
def materialised_var(cfg: VARConfig, device, dtype: torch.dtype, seed: int = 0) -> VARTransformer:
    """A VARTransformer of `cfg` built on meta, each parameter then drawn on `device` and stored in `dtype` by
    materialise() (the VAR statistics); eval mode. Raises RuntimeError if anything stayed on meta."""
    model = build_var_transformer(cfg, "meta")
    materialise(model, var_init, device, dtype, seed)
    model.levels = cfg.schedule.levels(device)  # a non-persistent buffer, created on meta above
    check_materialised(model)
    return model.eval()


def random_vqvae(seed=0, ch=32, ch_mult=VQVAE_MULT, device="cpu", dtype=torch.float32):
    """A VQVAE of channel width `ch` and `ch_mult` on `device` in `dtype`: PyTorch's default init after
    torch.manual_seed(seed) (which this resets), the codebook redrawn N(0, 1); eval mode, no gradients."""
    torch.manual_seed(seed)
    vae = build_vqvae(VQVAEConfig(ch=ch, ch_mult=tuple(ch_mult)), device)
    with torch.no_grad():
        vae.quantize.embedding.weight.normal_()
    return vae.to(dtype).eval().requires_grad_(False)


def tiny_model(patch_nums=TINY_PN, depth=2, heads=2, shared_adaln=False, seed=0) -> VARModel:
    """A tiny VAR (random_var of var_config(...) and random_vqvae(seed)), CPU, fp32."""
    return VARModel(random_var(var_config(depth, heads, patch_nums, shared_adaln), seed), random_vqvae(seed))


# -- Switti ------------------------------------------------------------------------------------------------------

def switti_config(depth=2, heads=2, patch_nums=TINY_PN, autoregressive=False) -> SwittiConfig:
    """A Switti layout of width 64 x heads (the released models: depth 30, heads 30)."""
    return SwittiConfig(depth=depth, width=64 * heads, heads=heads, patch_nums=tuple(patch_nums),
                        autoregressive=autoregressive)


def random_switti(cfg: SwittiConfig, seed=0) -> SwittiTransformer:
    """A SwittiTransformer of `cfg` on the CPU in fp32 with the Switti statistics, drawn by redraw() (eval, no
    grad)."""
    return redraw(SwittiTransformer(cfg), switti_init, seed)


@torch.no_grad()
def materialised_switti(cfg: SwittiConfig, device, dtype: torch.dtype, seed: int = 0) -> SwittiTransformer:
    """A SwittiTransformer of `cfg` built on meta, each parameter then drawn on `device` and stored in `dtype` by
    materialise() (the Switti statistics); eval mode. Raises RuntimeError if anything stayed on meta or the RoPE
    table came out wrong."""
    with torch.device("meta"):
        model = SwittiTransformer(cfg)
    materialise(model, switti_init, device, dtype, seed)
    # `levels` is a non-persistent buffer, created on meta above (the loader recreates it the same way).
    model.levels = cfg.schedule.levels(device)
    # The complex RoPE table is no buffer: rope_table() builds it on the CPU explicitly, so the meta
    # context does not reach it; it is copied to the device on first use.
    rope = model._rope["cpu"]
    if rope.is_meta or rope.device.type != "cpu" or rope.shape[0] != cfg.seq_len or not bool(torch.isfinite(
            torch.view_as_real(rope)).all()):
        raise RuntimeError(f"bad RoPE table after building on meta: {rope.device}, {tuple(rope.shape)}")
    check_materialised(model)
    return model.eval()


def tiny_switti(patch_nums=TINY_PN, autoregressive=False, seed=0) -> SwittiModel:
    """A tiny Switti (random_switti of switti_config(...) and random_vqvae(seed)), CPU, fp32."""
    return SwittiModel(random_switti(switti_config(patch_nums=patch_nums, autoregressive=autoregressive), seed),
                       random_vqvae(seed))


def text_condition(lengths, gen: torch.Generator, tokens: int = 77, negative_valid: int = 2, device="cpu",
                   dtype=torch.float32) -> TextCondition:
    """Random CLIP-like conditioning in place of the text encoders: states [B, tokens, 2048] and pooled [B, 1280]
    N(0, 1) in `dtype` on `device`, a padding mask bool [B, tokens] of `lengths` (int, B of them) valid tokens,
    and an 'empty prompt' negative of batch 1 with `negative_valid` valid tokens; drawn from `gen` (CPU) in that
    order."""

    def make(b, valid):
        mask = torch.arange(tokens)[None] < valid[:, None]
        return TextCondition(torch.randn(b, tokens, 2048, generator=gen).to(device, dtype),
                             torch.randn(b, 1280, generator=gen).to(device, dtype), mask.to(device))

    lengths = torch.as_tensor(lengths)
    cond = make(lengths.shape[0], lengths)
    cond.negative = make(1, torch.tensor([negative_valid]))
    return cond


def random_text(batch=2, tokens=77, seed=0, valid=(5, 9)) -> TextCondition:
    """text_condition() of `batch` prompts with valid[i % len(valid)] valid tokens each and a negative of 2, from a
    Generator seeded `seed`; CPU, fp32."""
    return text_condition([valid[i % len(valid)] for i in range(batch)], torch.Generator().manual_seed(seed),
                          tokens)


# --- Infinity: a tiny transformer in the official layout and a small BSQ VAE (8 bits per position) --------------
INFINITY_TINY = dict(width=128, depth=4, heads=2, block_chunks=2, ffn_hidden=512, text_channels=256, text_maxlen=16,
                     bits=8)


def infinity_config(pn: str = "0.06M", h_div_w: float = 1.0, **sizes):
    """A tiny InfinityConfig on the template `h_div_w` (h / w; 1:1 by default) of `pn` (1:1 0.06M: 7 scales up to
    16 x 16, a 256 px image; 0.5 0.06M: up to 11 x 22, 176 x 352 px)."""
    from scalewise.models.infinity import InfinityConfig, template_rope_grid, template_scales
    return InfinityConfig(**{**INFINITY_TINY, **sizes}, scales=template_scales(h_div_w, pn),
                          rope_grid=template_rope_grid(h_div_w))


def randomise_infinity(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Gaussian weights (0.3 for matrices, 0.1 for vectors; norm weights around 1), in parameter order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.ndim > 1 else 0.1)
                    + (1.0 if name.endswith(("norm.weight", "text_norm.weight")) else 0.0))
    return module.eval()


def infinity_init(name: str, shape: torch.Size) -> Init:
    """The statistics of Infinity at any width (module docstring) of the parameter `name` of `shape`."""
    if name.endswith("scale_mul_1H11"):
        return Init(mean=math.log(4), gain=0.5)
    if len(shape) > 1:
        return Init(gain=3.0 if name.startswith("head.") else 1.0, fan_in=shape[-1])
    return Init(mean=1.0 if name.endswith("norm.weight") else 0.0, gain=0.1)


@torch.no_grad()
def infinity_state_dict(cfg, device, dtype: torch.dtype, seed: int = 0, draw_device=None) -> dict[str, torch.Tensor]:
    """A random state dict of the InfinityTransformer of `cfg` (models/infinity.py InfinityConfig; the official key
    layout, ready for models/infinity_loader.py `infinity_transformer_from`): each parameter drawn in fp32 on
    `draw_device` (default `device`; a GPU draws the 8B's 8.4 B numbers in a second) by normal_ from a Generator
    of that device seeded `seed` (`infinity_init`), stored in `dtype` on `device` one tensor at a time (one fp32
    tensor is the only extra memory). Buffers are the zero_k_bias zeros; RuntimeError for any other buffer (a
    layout this function does not know)."""
    from scalewise.models.infinity import InfinityTransformer
    draw_device = torch.device(draw_device or device)
    with torch.device("meta"):
        model = InfinityTransformer(cfg)
    params = dict(model.named_parameters())
    gen = torch.Generator(device=draw_device).manual_seed(seed)
    sd = {}
    for name, t in model.state_dict(keep_vars=True).items():
        if name in params:
            init = infinity_init(name, t.shape)
            x = torch.empty(t.shape, device=draw_device, dtype=torch.float32)
            x.normal_(init.mean, init.gain / math.sqrt(init.fan_in), generator=gen)
        elif name.endswith("zero_k_bias"):
            x = torch.zeros(t.shape, device=draw_device)
        else:
            raise RuntimeError(f"infinity_state_dict: unknown buffer {name} {list(t.shape)}")
        sd[name] = x.to(device=device, dtype=dtype)
        del x
    return sd


def tiny_infinity(seed: int = 0, pn: str = "0.06M", h_div_w: float = 1.0):
    """A random Infinity model: the transformer of `infinity_config(pn, h_div_w)` and a 5-level BSQ VAE (ch 32,
    8 bits)."""
    from scalewise.models.bsq_vae import BSQVAE, BSQVAEConfig
    from scalewise.models.infinity import InfinityModel, InfinityTransformer
    transformer = randomise_infinity(InfinityTransformer(infinity_config(pn, h_div_w)), seed)
    vae = randomise_infinity(BSQVAE(BSQVAEConfig(ch=32, ch_mult=(1, 2, 2, 2, 2), bits=8)), seed + 1)
    return InfinityModel(transformer, vae)


# --- T5 v1.1 encoders in flan-t5-xl's layout (models/flan_t5.py; tests/tiny_t5.py writes downloads of them) ------
# The real vocabulary size: ComfyUI's T5 tokenizer gives ids up to 32099.
TINY_T5 = T5EncoderConfig(d_model=64, d_ff=96, num_layers=3, num_heads=4, d_kv=16, vocab_size=32128)
# The test server's: as wide as the tiny Infinity model's text_channels (INFINITY_TINY above)
SERVER_T5 = T5EncoderConfig(d_model=256, d_ff=96, num_layers=2, num_heads=4, d_kv=16, vocab_size=32128)


def tiny_t5_encoder(seed: int = 0, cfg: T5EncoderConfig = TINY_T5) -> dict[str, torch.Tensor]:
    """Random encoder tensors (float32) of `cfg`, scaled so that activations stay of order 1 through the layers."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in cfg.shapes().items():
        if name.endswith("layer_norm.weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        elif name == "shared.weight" or "relative_attention_bias" in name:
            t = torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        out[name] = t
    return out


def decoder_tensors(cfg: T5EncoderConfig = TINY_T5, seed: int = 1) -> dict[str, torch.Tensor]:
    """Stand-ins for what a full encoder-decoder file holds beside the encoder (decoder block, table copy, lm_head;
    small: they are never read)."""
    g = torch.Generator().manual_seed(seed)
    d, inner = cfg.d_model, cfg.num_heads * cfg.d_kv
    return {"decoder.embed_tokens.weight": torch.randn(16, d, generator=g),
            "decoder.block.0.layer.1.EncDecAttention.q.weight": torch.randn(inner, d, generator=g),
            "decoder.final_layer_norm.weight": torch.ones(d),
            "lm_head.weight": torch.randn(16, d, generator=g)}
