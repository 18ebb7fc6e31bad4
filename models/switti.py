"""Switti and Switti-AR (text-to-image next-scale prediction) with the official checkpoint layout.

Differences from VAR that matter: sandwich RMSNorms, a non-affine LayerNorm over the whole width on
q and k (before the head split), 2-D RoPE normalised per scale, cross-attention to CLIP token states,
SwiGLU, and a crop micro-condition added to each block's AdaLN input. Switti (non-AR) attends only
within the current scale; Switti-AR also attends to cached earlier scales.

Paper: Voronov, Kuznedelev, Khoroshikh, Khrulkov & Baranchuk, "Switti: Designing Scale-Wise Transformers for
Text-to-Image Synthesis", 2024 (arXiv 2412.01819). Official code: yandex-research/switti models/switti.py
(`Switti`), models/basic_switti.py (blocks), models/rope.py and models/pipeline.py (`SwittiPipeline.__call__`).
Shapes: R rows (B prompts, then B negatives while guided), n tokens of a scale, C = width, T text tokens (77),
V codes, L = sum pn_k^2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kv_cache import KVCache
from .base import GumbelSmoothing, ScaleState, ScalewiseModel
from .schedule import ScheduledConfig
from .torch_compat import attention

EPS = 1e-6
CROP_CONDITION = (512.0, 512.0, 0.0, 0.0)  # the official pipeline's [orig_h, orig_w, top, left], also at 1024 px


@dataclass(frozen=True)
class SwittiConfig(ScheduledConfig):
    """Sizes of a Switti transformer, inferred from an official checkpoint and its config.json
    (models/switti_loader.py). Released models: depth 20, width 1920, 30 heads, 512 px (10 scales) or 1024 px
    (14 scales), Switti (each scale attends within itself) or Switti-AR (block-causal); context_dim 2048 =
    CLIP-L 768 + bigG 1280, pooled_dim 1280, RoPE theta 10000 over coordinates stretched to [0, 128]."""

    depth: int
    width: int
    heads: int
    patch_nums: tuple[int, ...]
    autoregressive: bool = False
    crop_condition: bool = True
    vocab_size: int = 4096
    latent_channels: int = 32
    context_dim: int = 2048
    pooled_dim: int = 1280
    rope_theta: float = 10000.0
    rope_size: float = 128.0


@dataclass
class TextCondition:
    """CLIP-L ⊕ bigG last-layer states [B, T, 2048], the unprojected bigG pooled vector [B, 1280] and the
    padding mask [B, T] (True = real token). `negative` (batch 1 or B) feeds the unconditional branch.

    hidden and pooled are float (any dtype; moved to the model's device by `SwittiModel.start`), mask bool; T is
    CLIP's 77-token context. This is the official pipeline's `encode_prompt` output (prompt_embeds,
    pooled_prompt_embeds, attn_bias), with the null prompt kept apart as `negative`."""

    hidden: torch.Tensor
    pooled: torch.Tensor
    mask: torch.Tensor
    negative: "TextCondition | None" = None

    @property
    def batch(self) -> int:
        """Number of prompts (rows)."""
        return self.hidden.shape[0]

    def rows(self, index) -> "TextCondition":
        """The rows `index` (int tensor or slice) of hidden, pooled and mask, without the negative."""
        return TextCondition(self.hidden[index], self.pooled[index], self.mask[index])

    def check(self, what="text conditioning"):
        """Raise ValueError (naming `what`) unless hidden is [B, T, 2048], pooled [B, 1280], mask [B, T] and every
        prompt has a valid token."""
        b, t, c = self.hidden.shape
        if self.pooled.shape != (b, 1280) or self.mask.shape != (b, t) or c != 2048:
            raise ValueError(f"{what}: expected hidden [B, T, 2048], pooled [B, 1280] and mask [B, T]; got "
                             f"{tuple(self.hidden.shape)}, {tuple(self.pooled.shape)}, {tuple(self.mask.shape)}")
        if not bool(self.mask.any(-1).all()):
            raise ValueError(f"{what}: a prompt has no valid token in its mask")


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + 1e-6) * weight over the last dimension, computed in float32 (official basic_switti.py
    RMSNorm); same shape and dtype as x."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        """Normalise x [..., C]; same shape and dtype."""
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + EPS)
        return normed.type_as(x) * self.weight


def _layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=EPS)


def rope_table(side: int, head_dim: int, theta: float, size: float) -> torch.Tensor:
    """Complex rotations [side², head_dim/2] of one scale: the first half follows the column, the
    second the row, both with coordinates stretched to [0, size]."""
    coeff = size / (side - 1 if side > 1 else 1)
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 4, device="cpu")[: head_dim // 4].float() / head_dim)) * coeff
    t = torch.arange(side * side, dtype=torch.float32, device="cpu")
    cols, rows = t % side, torch.div(t, side, rounding_mode="floor")
    angles = torch.cat((torch.outer(cols, freqs), torch.outer(rows, freqs)), dim=-1)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of x [B, H, n, D] in fp32 by table [n, D/2] (or [B, 1, n, D/2])."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    table = table[None, None] if table.dim() == 2 else table  # [n, D/2], or per row [B, 1, n, D/2] (pruning)
    return torch.view_as_real(pairs * table).flatten(3).type_as(x)


def _split_heads(x, heads):
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


class SelfAttention(nn.Module):
    """Switti's self-attention (official basic_switti.py SelfAttention): fused q/k/v with bias, a non-affine LayerNorm
    over the whole width on q and k before the head split, 2-D RoPE, SDPA with scale 1/sqrt(head_dim)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x, rope, cache=None, layer=0, attn_mask=None, value_weights=None):
        """x [R, n, C] -> [R, n, C] with the rotations `rope` [n, head_dim/2] of these positions. With a cache (Switti-
        AR) attention covers the cached earlier scales; value_weights [R, cached + n] multiply the values
        per position."""
        b, n, c = x.shape
        q, k, v = self.to_qkv(x).view(b, n, 3, c).unbind(2)
        q = apply_rope(_split_heads(_layer_norm(q), self.heads), rope)
        k = apply_rope(_split_heads(_layer_norm(k), self.heads), rope)
        v = _split_heads(v, self.heads)
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        if value_weights is not None:
            v = v * value_weights[:, None, :, None].to(v.dtype)
        out = attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class CrossAttention(nn.Module):
    """Attention from the image tokens to the CLIP token states (official basic_switti.py CrossAttention): LayerNorm
    over the width on q and k, padding masked by an additive bias; no RoPE."""

    def __init__(self, width: int, context_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(width, width)
        self.to_kv = nn.Linear(context_dim, 2 * width)
        self.proj = nn.Linear(width, width)

    def keys_values(self, context):
        """Text keys and values [R, H, T, D]: computed once per generation."""
        b, t, _ = context.shape
        k, v = self.to_kv(context).view(b, t, 2, -1).unbind(2)
        return _split_heads(_layer_norm(k), self.heads), _split_heads(v, self.heads)

    def forward(self, x, kv, bias):
        """x [R, n, C] attends to the text keys/values kv ([R, H, T, D] each) with the additive padding bias [R, 1, 1,
        T]."""
        b, n, c = x.shape
        q = _split_heads(_layer_norm(self.to_q(x)), self.heads)
        out = attention(q, kv[0], kv[1], attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), hidden width int(8 C / 3), no biases (official basic_switti.py SwiGLUFFN); [.., C]
    -> [.., C]."""

    def __init__(self, width: int):
        super().__init__()
        hidden = int(width * 8 / 3)
        self.up_proj = nn.Linear(width, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, width, bias=False)
        self.gate_proj = nn.Linear(width, hidden, bias=False)

    def forward(self, x):
        """[..., C] -> [..., C]."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """One Switti block (official basic_switti.py AdaLNSelfCrossAttn): sandwich RMSNorms around AdaLN-modulated self-
    attention, plain cross-attention and an AdaLN-modulated SwiGLU; the modulation's condition is the pooled
    text vector plus a per-block scale times the crop vector."""

    def __init__(self, cfg: SwittiConfig):
        super().__init__()
        c = cfg.width
        self.attn = SelfAttention(c, cfg.heads)
        self.cross_attn = CrossAttention(c, cfg.context_dim, cfg.heads)
        self.ffn = SwiGLU(c)
        for name in ("self_attention_norm1", "self_attention_norm2", "cross_attention_norm1",
                     "cross_attention_norm2", "ffn_norm1", "ffn_norm2"):
            setattr(self, name, RMSNorm(c))
        self.attention_y_norm = RMSNorm(cfg.context_dim)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c))
        if cfg.crop_condition:
            self.crop_cond_scales = nn.Parameter(torch.zeros(1, c))

    def modulation(self, cond, crop):
        """[R, 6, C] chunks (gamma1, gamma2, scale1, scale2, shift1, shift2) from cond [R, C] (+ crop_cond_scales *
        crop)."""
        if crop is not None:
            cond = cond + self.crop_cond_scales * crop
        return self.ada_lin(cond).view(cond.shape[0], 6, -1)

    def forward(self, x, mod, rope, text_kv, text_bias, cache=None, layer=0, attn_mask=None, value_weights=None,
                prune=None):
        """x [R, n, C] -> [R, n, C]: self-attention, cross-attention to the text, SwiGLU, each through its norms;
        prune: a models/pruning.py PrunedScale (token pruning) or None."""
        g1, g2, s1, s2, b1, b2 = mod[:, :, None].unbind(1)
        if prune is None:
            a = self.self_attention_norm1(x) * (1 + s1) + b1
            x = x + self.self_attention_norm2(self.attn(a, rope, cache, layer, attn_mask, value_weights)) * g1
            x = x + self.cross_attention_norm2(self.cross_attn(self.cross_attention_norm1(x), text_kv, text_bias))
            f = self.ffn_norm1(x) * (1 + s2) + b2
            return x + self.ffn_norm2(self.ffn(f)) * g2

        def attend(y, idx):
            rot = rope if idx is None else rope[idx][:, None]  # the kept positions' rotations [R, 1, m, D/2]
            a = self.self_attention_norm1(y) * (1 + s1) + b1
            weights = prune.value_weights(layer, value_weights, idx)
            return self.self_attention_norm2(self.attn(a, rot, cache, layer, attn_mask, weights)) * g1
        x = x + prune.branch(layer, "attn", x, attend, cached=True)
        x = x + prune.branch(layer, "cross", x, lambda y, idx: self.cross_attention_norm2(
            self.cross_attn(self.cross_attention_norm1(y), text_kv, text_bias)))
        return x + prune.branch(layer, "ffn", x, lambda y, idx: self.ffn_norm2(
            self.ffn(self.ffn_norm1(y) * (1 + s2) + b2)) * g2)


class _FourierWeight(nn.Module):
    """Holds `crop_embed.weight`: the frozen random frequencies of the crop condition's features."""

    def __init__(self, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(size), requires_grad=False)


class _HeadNorm(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))


@dataclass
class SwittiCondition:
    """Everything that depends only on the prompts: computed once per generation."""

    pooled: torch.Tensor            # [R, C] text_pooler output (start token and AdaLN condition)
    block_mods: list[torch.Tensor]  # depth x [R, 6, C]
    head_mod: torch.Tensor          # [R, 2, C]
    text_kv: list[tuple]            # depth x (k, v) [R, H, T, D]
    text_bias: torch.Tensor         # [R, 1, 1, T] additive: 0 = token, -inf = padding

    @property
    def rows(self) -> int:
        """Number of rows (prompts, negatives included)."""
        return self.pooled.shape[0]

    def select(self, rows: slice) -> "SwittiCondition":
        """The same condition restricted to `rows` (views)."""
        return SwittiCondition(self.pooled[rows], [m[rows] for m in self.block_mods], self.head_mod[rows],
                               [(k[rows], v[rows]) for k, v in self.text_kv], self.text_bias[rows])

    def copy(self) -> "SwittiCondition":
        """A copy that owns its tensors (so dropped rows' memory is released)."""
        return SwittiCondition(self.pooled.clone(), [m.clone() for m in self.block_mods], self.head_mod.clone(),
                               [(k.clone(), v.clone()) for k, v in self.text_kv], self.text_bias.clone())


class SwittiTransformer(nn.Module):
    """Switti's next-scale prediction network with the official state-dict layout (yandex-research/switti
    models/switti.py `Switti`): text pooler, start tokens, level embeddings, RoPE, `depth` blocks with cross-
    attention, crop micro-conditioning, an AdaLN head. Maps inputs to logits only; per-run state lives in a
    SwittiState."""

    def __init__(self, cfg: SwittiConfig):
        super().__init__()
        self.config = cfg
        c = cfg.width
        self.pos_start = nn.Parameter(torch.zeros(1, cfg.schedule.lengths[0], c))
        self.word_embed = nn.Linear(cfg.latent_channels, c)
        self.text_pooler = nn.Linear(cfg.pooled_dim, c)
        self.lvl_embed = nn.Embedding(len(cfg.patch_nums), c)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        if cfg.crop_condition:
            self.crop_embed = _FourierWeight(c // 8)
            self.crop_proj = nn.Linear(c, c)
        self.head_nm = _HeadNorm(c)
        self.head = nn.Linear(c, cfg.vocab_size)
        head_dim = c // cfg.heads
        # Complex fp32 rotations: kept out of the buffers so that casting the model to bf16 cannot touch them.
        self._rope = {"cpu": torch.cat([rope_table(p, head_dim, cfg.rope_theta, cfg.rope_size)
                                        for p in cfg.patch_nums])}
        self.register_buffer("levels", cfg.schedule.levels(), persistent=False)  # the scale of each position

    def rope(self, start: int, end: int, device) -> torch.Tensor:
        """The complex RoPE rotations of positions start..end-1 ([end - start, head_dim/2], complex64), cached per
        device."""
        key = str(device)
        if key not in self._rope:
            self._rope[key] = self._rope["cpu"].to(device)
        return self._rope[key][start:end]

    def crop_vector(self, rows: int = 1) -> torch.Tensor:
        """crop_proj of the Fourier features of [512, 512, 0, 0], in fp32 (a constant of the model);
        computed for every row, as the reference does, so the matmul rounds alike."""
        w = self.crop_embed.weight.float()
        q = torch.tensor(CROP_CONDITION, device=w.device)
        angles = q[:, None] * w[None, :] * 2 * math.pi
        features = torch.cat((angles.sin(), angles.cos()), dim=-1).reshape(1, -1).expand(rows, -1)
        return self.crop_proj(features.to(self.crop_proj.weight.dtype).contiguous())

    def condition(self, text: TextCondition) -> SwittiCondition:
        """Everything that depends only on the prompts: pooled condition c = text_pooler(pooled), block modulations (c
        + crop), text keys/values of every block and the padding bias; computed once per generation."""
        dtype = self.word_embed.weight.dtype
        pooled = self.text_pooler(text.pooled.to(dtype))
        crop = self.crop_vector(pooled.shape[0]) if self.config.crop_condition else None
        context = text.hidden.to(dtype)
        mods, kv = [], []
        for blk in self.blocks:
            mods.append(blk.modulation(pooled, crop))
            kv.append(blk.cross_attn.keys_values(blk.attention_y_norm(context)))
        bias = torch.zeros(text.mask.shape, dtype=dtype, device=pooled.device)
        bias = bias.masked_fill(~text.mask.to(pooled.device), float("-inf"))[:, None, None]
        return SwittiCondition(pooled, mods, self.head_nm.ada_lin(pooled).view(pooled.shape[0], 2, -1), kv, bias)

    def embed_start(self, cond: SwittiCondition) -> torch.Tensor:
        """Scale 0 input [R, n_0, C]: c + pos_start + lvl_embed[0]."""
        return cond.pooled[:, None] + self.pos_start + self.lvl_embed(self.levels[:1])

    def embed_scale(self, k: int, latent_tokens: torch.Tensor) -> torch.Tensor:
        """Scale k >= 1 input: word_embed(latent_tokens [R, n_k, Cvae]) + lvl_embed[k] -> [R, n_k, C] (no absolute
        positions: RoPE)."""
        x = self.word_embed(latent_tokens.to(self.word_embed.weight.dtype))
        return x + self.lvl_embed(self.levels[self.config.schedule.offsets[k]])

    def run_blocks(self, x, cond: SwittiCondition, rope, cache=None, attn_mask=None, value_weights=None,
                   prune=None):
        """All blocks on x [R, n, C]; with a cache, its length advances by n afterwards (by the kept tokens under
        token pruning: `prune`, a models/pruning.py PrunedScale)."""
        for i, blk in enumerate(self.blocks):
            x = blk(x, cond.block_mods[i], rope, cond.text_kv[i], cond.text_bias, cache, i, attn_mask,
                    value_weights, prune)
        if cache is not None:
            cache.advance(x.shape[1] if prune is None else prune.count)
        return x

    def logits(self, h, cond: SwittiCondition) -> torch.Tensor:
        """Head: LN(h)(1 + scale) + shift (modulated by c, without the crop vector), then the linear head:
        [R, n, C] -> float32 [R, n, V]."""
        scale, shift = cond.head_mod[:, :, None].unbind(1)
        return self.head(_layer_norm(h) * (1 + scale) + shift).float()

    def forward_teacher(self, text: TextCondition, latent_inputs: torch.Tensor) -> torch.Tensor:
        """Logits [B, L, V] of the whole sequence given the inputs of scales 1..K-1 [B, L - n_0, Cvae]."""
        cond = self.condition(text)
        n0 = self.pos_start.shape[1]
        x = self.word_embed(latent_inputs.to(self.word_embed.weight.dtype))
        x = torch.cat((self.embed_start(cond), x + self.lvl_embed(self.levels[n0:])), dim=1)
        # block-diagonal (Switti) or block-causal (Switti-AR)
        mask = self.config.schedule.attention_mask(causal=self.config.autoregressive, device=x.device).to(x.dtype)
        rope = self.rope(0, x.shape[1], x.device)
        return self.logits(self.run_blocks(x, cond, rope, attn_mask=mask), cond)


class SwittiState(ScaleState):
    """Per-generation state: prompt rows (positive first, then negative) and, for Switti-AR, the KV cache."""

    def __init__(self, cond: SwittiCondition, cache: KVCache | None, batch: int):
        self.full, self.cond, self.cache, self.batch = cond, cond, cache, batch

    @property
    def has_uncond(self) -> bool:
        """Whether the negative-prompt rows are currently computed."""
        return self.cond.rows > self.batch

    @property
    def rows(self) -> int:
        return self.cond.rows

    def set_uncond(self, active: bool):
        """Non-AR: the negative rows run only where guidance needs them (scales share no cache).
        AR: as for VAR, they can only be dropped for good."""
        if self.cache is None:
            self.cond = self.full if active else self.full.select(slice(0, self.batch))
            return
        if active and not self.has_uncond:
            raise RuntimeError("the unconditional branch cannot restart once its KV cache was dropped")
        if not active and self.has_uncond:
            # Copies, not views: a view would keep the negative prompt's text keys/values alive.
            self.cond = self.full = self.cond.select(slice(0, self.batch)).copy()
            self.cache.keep_rows(slice(0, self.batch))

    def close(self):
        if self.cache is not None:
            self.cache.release()


class SwittiModel(ScalewiseModel):
    """A Switti transformer with its VQ-VAE (VQVAE-Switti), driven by the scale-wise sampler."""

    family = "switti"
    # SwittiPipeline.__call__: the Gumbel mixture replaces the token draw (no top-k/top-p) before the CFG-off scales
    smoothing = GumbelSmoothing(replaces_draw=True, guided_scales_only=True)

    @property
    def autoregressive(self) -> bool:
        """True for Switti-AR (every scale attends to the cached earlier ones), False for Switti (each scale sees
        only itself and the text), as the loader inferred it from the checkpoint."""
        return self.config.autoregressive

    def describe(self) -> str:
        """What this model is, for error messages: its variant and size and, for files, the name it was loaded
        from."""
        what = f"this Switti{'-AR' if self.config.autoregressive else ''} model ({self.image_size} px)"
        return f"{what} loaded from {self.source_name!r}" if self.source_name else what

    def prepare_condition(self, conditioning, batch_size: int | None, first: int = 0) -> TextCondition:
        """A TextCondition with one row per image: image i gets prompt (first + i) % B_text and negative
        (first + i) % B_negative (B = batch_size, or the number of prompts when None; `first` is the index of the
        batch's first image, the sampler's batch_index). Raises TypeError for a conditioning that is not a
        TextCondition (class ids are for VAR), ValueError for malformed shapes or a prompt without a valid token
        (`TextCondition.check`) or batch_size < 1."""
        if not isinstance(conditioning, TextCondition):
            raise TypeError(f"conditioning: {self.describe()} needs conditioning from the Switti Text Encode node (a "
                            f"TextCondition), got {type(conditioning).__name__}; class ids are for VAR models")
        conditioning.check()
        batch = conditioning.batch if batch_size is None else int(batch_size)
        if batch < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        images = first + torch.arange(batch)
        out = conditioning.rows(images % conditioning.batch)
        if conditioning.negative is not None:
            conditioning.negative.check("negative text conditioning")
            out.negative = conditioning.negative.rows(images % conditioning.negative.batch)
        return out

    def batch_size(self, prepared: TextCondition) -> int:
        """B, the number of prompts of a prepared conditioning."""
        return prepared.batch

    def cached_positions(self) -> int:
        # Switti-AR caches every scale; Switti keeps only the text keys (77) and one scale at a time
        return self.config.seq_len if self.config.autoregressive else 77 + self.config.schedule.lengths[-1]

    def start(self, text: TextCondition, with_uncond: bool) -> SwittiState:
        """Begin a generation: the prompt rows, then (with `with_uncond`) the negative rows, as the official
        pipeline concatenates prompt and null-prompt embeddings; computes the text keys/values and modulations
        once and, for Switti-AR, allocates the KV cache. Raises ValueError when guidance needs the negative
        encoding and `text.negative` is None."""
        batch = text.batch
        if with_uncond:
            if text.negative is None:
                raise ValueError("guidance needs the negative (empty-prompt) encoding: TextCondition(..., negative=...)")
            neg = text.negative
            text = TextCondition(torch.cat((text.hidden, neg.hidden)), torch.cat((text.pooled, neg.pooled)),
                                 torch.cat((text.mask, neg.mask)))
        device = self.weight_device
        text = TextCondition(text.hidden.to(device), text.pooled.to(device), text.mask.to(device))
        cfg = self.config
        cache = None
        if cfg.autoregressive:
            cache = KVCache(cfg.depth, text.batch, cfg.heads, cfg.seq_len, cfg.width // cfg.heads, self.dtype, device)
        return SwittiState(self.transformer.condition(text), cache, batch)

    def forward_scale(self, state: SwittiState, k: int, latent_tokens, value_weights=None) -> torch.Tensor:
        """Logits float32 [R, n_k, V] of scale k: scale 0 from the pooled condition c + pos_start, later scales
        from word_embed(latent_tokens [B, n_k, Cvae]) shared by all rows, with the RoPE rotations of scale k
        (official models/pipeline.py `SwittiPipeline.__call__`). value_weights [R, cached + n_k] as in
        `ScalewiseModel.forward_scale` (Switti-AR only)."""
        t = self.transformer
        if k == 0:
            x = t.embed_start(state.cond)
        else:
            x = t.embed_scale(k, latent_tokens)
            x = x.repeat(state.rows // x.shape[0], 1, 1)
        start, end = self.config.schedule.bounds(k)
        prune = state.pruning.scale(k) if state.pruning is not None else None  # token pruning (models/pruning.py)
        h = t.run_blocks(x, state.cond, t.rope(start, end, x.device), state.cache, value_weights=value_weights,
                         prune=prune)
        return t.logits(h, state.cond)
