"""Infinity (FoundationVision/Infinity): the bitwise scale-wise text-to-image transformer in the official key layout,
and its `ScalewiseModel`.

Source of every equation and name: official repository HEAD 4c27bbb5, infinity/models/infinity.py (`Infinity`,
`TextAttentivePool`, `SharedAdaLin`, `MultipleLayers`, `autoregressive_infer_cfg`) and infinity/models/basic.py
(`SelfAttention`, `CrossAttention`, `CrossAttnBlock` fused path, `AdaLNBeforeHead`, `FFN`,
`precompute_rope2d_freqs_grid` with rope2d_normalized_by_hw=2, `apply_rotary_emb`); the released models' settings
(shared_aln, head_aln, cos_attn, LayerNorm eps 1e-6, GELU-tanh FFN, no cross-attention gate, lvl_embed before the first
block chunk only, use_bit_label) from tools/run_infinity.py. Paper: Han et al., "Infinity: Scaling Bitwise
AutoRegressive Modeling for High-Resolution Image Synthesis", CVPR 2025 (arXiv 2412.04431).

Attention is PyTorch's own (scaled_dot_product_attention), on any device; the text cross-attention runs per prompt
segment in the weights' dtype (the official code always calls flash-attn varlen in bf16 there).

Tokens are bits: scale k has n_k = h_k w_k positions of d bits each (d = the BSQ VAE's codebook dimension). The head
gives V = 2d logits per position, interleaved pairs: (2j, 2j + 1) = (bit j = 0, bit j = 1) of bit j.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import ScaleState, ScalewiseModel
from .bsq_vae import BSQVAE
from .schedule import Schedule


def layer_parameters(layer: nn.Linear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of a depth block's linear `layer` for input x, on x's device in x's dtype. A host's cast
    layer (one with `cast_parameters(x)`: the pack's ComfyUI layers, whose weights may be offloaded to the CPU or
    stored in fp8, nodes/infinity.py) hands them over itself; any other layer's are moved and cast here where they
    differ (as stored for a plain nn.Linear on x's device in x's dtype: no copy)."""
    cast = getattr(layer, "cast_parameters", None)
    if cast is not None:
        return cast(x)
    weight, bias = layer.weight, layer.bias
    if weight.dtype != x.dtype or weight.device != x.device:
        weight = weight.to(device=x.device, dtype=x.dtype)
        bias = None if bias is None else bias.to(device=x.device, dtype=x.dtype)
    return weight, bias


class CastLinear(nn.Linear):
    """nn.Linear whose weight and bias may be stored in another dtype than it computes in (fp8 storage outside
    ComfyUI): cast to the input's dtype at each use. Under ComfyUI, Load Infinity Model passes ComfyUI's own cast
    layers instead (they also move offloaded weights to the device)."""

    def cast_parameters(self, x):
        """(weight, bias) in x's dtype (the stored tensors when they already are)."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return self.weight.to(x.dtype), bias

    def forward(self, x):
        """x [..., in] -> [..., out] in x's dtype."""
        return F.linear(x, *self.cast_parameters(x))


CAST_OPERATIONS = SimpleNamespace(Linear=CastLinear)  # `operations` of plain torch cast layers

# The 1:1 template of official infinity/utils/dynamic_resolution.py: 13 (h, w) steps; pn '0.06M', '0.25M', '0.60M',
# '1M' take the first 7, 10, 12, 13. RoPE positions of every pn are normalised to the 1M grid (64 x 64).
SQUARE_STEPS = (1, 2, 4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64)
SQUARE_PN = {"0.06M": 7, "0.25M": 10, "0.60M": 12, "1M": 13}
PN_SCALES = SQUARE_PN  # every template: the scales each pn takes
ROPE_GRID_MAX = 128  # official max_height = max_width = 2048 // 16
# The aspect-ratio templates of the same file (`ratio2hws`), by h / w: 13 (h, w) token-map steps each. The
# inverse templates int(1000 / r) / 1000 (0.8, 0.75, 0.666, 0.571, 0.5, 0.4, 0.333) swap h and w. Images are
# 16 h x 16 w px (official `pixel` = last step x vae_stride 16; the 8B's stride 8 with its 2 x 2 patchify
# gives the same). RoPE positions of a template are normalised to its 1M grid (its 13th step).
_TALL_STEPS = {
    1.25: ((1, 1), (2, 2), (3, 3), (5, 4), (10, 8), (15, 12), (20, 16), (25, 20), (30, 24), (35, 28), (45, 36),
           (55, 44), (70, 56)),
    1.333: ((1, 1), (2, 2), (4, 3), (8, 6), (12, 9), (16, 12), (20, 15), (24, 18), (28, 21), (36, 27), (48, 36),
            (60, 45), (72, 54)),
    1.5: ((1, 1), (2, 2), (3, 2), (6, 4), (9, 6), (15, 10), (21, 14), (27, 18), (33, 22), (39, 26), (48, 32),
          (63, 42), (78, 52)),
    1.75: ((1, 1), (2, 2), (3, 3), (7, 4), (11, 6), (14, 8), (21, 12), (28, 16), (35, 20), (42, 24), (56, 32),
           (70, 40), (84, 48)),
    2.0: ((1, 1), (2, 2), (4, 2), (6, 3), (10, 5), (16, 8), (22, 11), (30, 15), (38, 19), (46, 23), (60, 30),
          (74, 37), (90, 45)),
    2.5: ((1, 1), (2, 2), (5, 2), (10, 4), (15, 6), (20, 8), (25, 10), (30, 12), (40, 16), (50, 20), (65, 26),
          (80, 32), (100, 40)),
    3.0: ((1, 1), (2, 2), (6, 2), (9, 3), (15, 5), (21, 7), (27, 9), (36, 12), (45, 15), (54, 18), (72, 24),
          (90, 30), (111, 37)),
}
TEMPLATES = {1.0: tuple((s, s) for s in SQUARE_STEPS), **_TALL_STEPS,
             **{int(1000 / r) / 1000: tuple((w, h) for h, w in steps) for r, steps in _TALL_STEPS.items()}}


def template_scales(h_div_w: float = 1.0, pn: str = "1M") -> tuple[tuple[int, int], ...]:
    """The official schedule of the aspect-ratio template `h_div_w` (a key of TEMPLATES: 1.0, 1.25, ..., 3.0 and
    0.8, 0.75, 0.666, 0.571, 0.5, 0.4, 0.333) at `pn` ('0.06M', '0.25M', '0.60M', '1M'): its first 7, 10, 12 or 13
    (h, w) steps. Raises ValueError naming the value for another template or pn (only the official schedules have
    RoPE tables in the official code)."""
    if h_div_w not in TEMPLATES:
        raise ValueError(f"h_div_w: {h_div_w!r} is not an official Infinity template; expected one of "
                         f"{sorted(TEMPLATES)}")
    if pn not in PN_SCALES:
        raise ValueError(f"pn: {pn!r} is not an official Infinity size; expected one of {list(PN_SCALES)}")
    return TEMPLATES[h_div_w][:PN_SCALES[pn]]


def template_rope_grid(h_div_w: float = 1.0) -> tuple[int, int]:
    """(H1, W1): the template's 1M last step, to which its RoPE positions are normalised (64, 64 for 1:1)."""
    return template_scales(h_div_w, "1M")[-1]


@dataclass(frozen=True)
class InfinityConfig:
    """Sizes of an Infinity transformer (all inferable from the official tensors, see models/infinity_loader.py).

    width C, depth, heads (head_dim = C / heads), block_chunks (key layout `block_chunks.{c}.module.{j}`), ffn hidden
    (fc1 rows), text_channels Ct5 (2048 for flan-t5-xl), text_maxlen (rows of cfg_uncond), bits d (the head gives
    V = 2d), scales: K (h, w) token-map sizes, coarse to fine; rope_grid: (H1, W1), the last 1M scale of the
    schedule's aspect-ratio template (64, 64 for 1:1), to which RoPE positions are normalised."""

    width: int
    depth: int
    heads: int
    block_chunks: int
    ffn_hidden: int
    text_channels: int
    text_maxlen: int
    bits: int
    scales: tuple[tuple[int, int], ...]
    rope_grid: tuple[int, int] = (64, 64)
    eps: float = 1e-6
    levels: int = 15  # rows of lvl_embed

    @property
    def vocab_size(self) -> int:
        """V = 2 d head outputs per position."""
        return 2 * self.bits

    @property
    def head_dim(self) -> int:
        """C / heads (128 for the released models)."""
        return self.width // self.heads

    @property
    def pool_heads(self) -> int:
        """Heads of the text pool: Ct5 / (64 if C > 4096 else 128) (official `TextAttentivePool`)."""
        return self.text_channels // (64 if self.width > 4096 else 128)

    @cached_property
    def schedule(self) -> Schedule:
        """The token pyramid of `scales` (models/schedule.py: lengths, offsets, levels, masks)."""
        return Schedule(self.scales)

    @property
    def patch_nums(self) -> tuple[int, ...]:
        """Token-map sides for square schedules (the contract's `patch_nums`); ValueError for a non-square one."""
        if not self.schedule.square:
            raise ValueError(f"scales: {self.scales} are not square token maps: use the schedule's (h, w) shapes")
        return self.schedule.patch_nums

    @property
    def lengths(self) -> tuple[int, ...]:
        """n_k = h_k w_k positions of each scale."""
        return self.schedule.lengths

    @property
    def offsets(self) -> tuple[int, ...]:
        """K + 1 positions: scale k holds offsets[k] .. offsets[k + 1] - 1 (the official RoPE `scale_ind` start)."""
        return self.schedule.offsets

    @property
    def seq_len(self) -> int:
        """L = sum_k h_k w_k."""
        return self.schedule.seq_len


def square_scales(pn: str = "1M") -> tuple[tuple[int, int], ...]:
    """The 1:1 schedule of `pn` ('0.06M', '0.25M', '0.60M', '1M') as (h, w) pairs. KeyError for another pn."""
    return tuple((s, s) for s in SQUARE_STEPS[:SQUARE_PN[pn]])


def rope_tables(cfg: InfinityConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin float32 [L, head_dim / 2] for every position of the schedule (scales concatenated in order, so scale
    k starts at offsets[k], the official `scale_ind` offset of the fused path).

    Pair p < half/2 of the head uses the row angle r' theta_p, pair p >= half/2 the column angle c' theta_{p-half/2},
    half = head_dim / 2, theta_i = 1 / 10000^(2i / half); r' = round(r H1 / h), c' = round(c W1 / w) in float32
    (official `precompute_rope2d_freqs_grid`, rope2d_normalized_by_hw=2). Raises ValueError when a normalised position
    leaves the official 128 x 128 grid."""
    half = cfg.head_dim // 2
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, half, 2, dtype=torch.int64).float() / half))
    H1, W1 = cfg.rope_grid
    angles = []
    for h, w in cfg.scales:
        rows = (torch.arange(h) * (H1 / h)).round().int()
        cols = (torch.arange(w) * (W1 / w)).round().int()
        if int(rows.max()) >= ROPE_GRID_MAX or int(cols.max()) >= ROPE_GRID_MAX:
            raise ValueError(f"scales: scale {h}x{w} leaves the {ROPE_GRID_MAX}x{ROPE_GRID_MAX} RoPE grid")
        r = torch.outer(rows.float(), inv_freq)[:, None, :].expand(h, w, -1)
        c = torch.outer(cols.float(), inv_freq)[None, :, :].expand(h, w, -1)
        angles.append(torch.cat([r, c], dim=-1).reshape(h * w, half))
    a = torch.cat(angles)
    return torch.cos(a).to(device), torch.sin(a).to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2p], x[2p+1]) of x [B, H, n, D] by the angles of cos/sin [n, D/2] (official
    `apply_rotary_emb`, computed in float32)."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    out = torch.stack([cos * x0 - sin * x1, sin * x0 + cos * x1], dim=-1)
    return out.reshape(x.shape).to(x.dtype)


class SelfAttention(nn.Module):
    """Cosine self-attention (`sa.*`): qkv = x W^T + [q_bias, 0, v_bias]; q = normalize(q) exp(min(scale_mul, ln 100)),
    k = normalize(k) (eps 1e-12), then RoPE on q and k, softmax(q k^T) with scale 1, proj. With a cache, keys and
    values of the earlier scales are prepended.

    Precision (official basic.py `SelfAttention.forward` under bf16 autocast): the input comes in the compute dtype
    (the biases' dtype, `Block`); the normalisation and RoPE of q and k run in float32, then q and k are cast back to
    the compute dtype for the cache and the attention (the official flash path's `q.to(v.dtype)`).

    mat_qkv and proj are `operations.Linear` (torch.nn, or a host's cast layers: see `layer_parameters`)."""

    def __init__(self, width, heads, operations=nn):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.scale_mul_1H11 = nn.Parameter(torch.zeros(1, heads, 1, 1))
        self.mat_qkv = operations.Linear(width, 3 * width, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(width)), nn.Parameter(torch.zeros(width))
        self.register_buffer("zero_k_bias", torch.zeros(width))
        self.proj = operations.Linear(width, width)
        self.max_scale_mul = torch.log(torch.tensor(100.0, device="cpu")).item()  # float32 ln 100, as official

    def forward(self, x, cos, sin, cache: list | None = None, mask=None, value_weights=None):
        """x [B, n, C] in the compute dtype -> [B, n, C]. cache: a [k, v] list (None entries at the first scale),
        extended in place. mask: additive float [n, n_keys] or None. value_weights: [B, n_keys] multipliers on the
        values or None."""
        B, n, C = x.shape
        weight, _ = layer_parameters(self.mat_qkv, x)
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, weight, bias).view(B, n, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        scale_mul = self.scale_mul_1H11.float().clamp_max(self.max_scale_mul).exp()
        q = F.normalize(q.float(), dim=-1, eps=1e-12).mul(scale_mul)
        k = F.normalize(k.float(), dim=-1, eps=1e-12)
        q, k = apply_rope(q, cos, sin).to(v.dtype), apply_rope(k, cos, sin).to(v.dtype)
        if mask is not None and mask.is_floating_point():
            mask = mask.to(q.dtype)
        if cache is not None:
            if cache[0] is not None:
                k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
            cache[0], cache[1] = k, v
        if value_weights is not None:
            v = v * value_weights[:, None, :, None].to(v.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        return self.proj(out.transpose(1, 2).reshape(B, n, C))


def segment_attention(q: torch.Tensor, kv: torch.Tensor, segments: list[tuple[int, int]], scale: float) -> torch.Tensor:
    """Varlen attention: row b's queries q [B, n, H, c] attend to keys/values kv[s:e] of its segment (kv [N, 2, H, c])
    (official `flash_attn_varlen_kvpacked_func`). Returns [B, n, H c]."""
    out = []
    for b, (s, e) in enumerate(segments):
        k, v = kv[s:e, 0].transpose(0, 1), kv[s:e, 1].transpose(0, 1)  # [H, l, c]
        o = F.scaled_dot_product_attention(q[b].transpose(0, 1), k, v, scale=scale)  # [H, n, c]
        out.append(o.transpose(0, 1).reshape(q.shape[1], -1))
    return torch.stack(out)


class CrossAttention(nn.Module):
    """Text cross-attention (`ca.*`, and `text_proj_for_sos.ca.*` with a learned query): q = mat_q(x) (or the learned
    `mat_q` [1, H, c] per segment), k|v = kv W_kv^T + [0, v_bias], softmax scale 1/sqrt(c), no cosine attention,
    proj. Its linear layers are `operations.Linear` (see `SelfAttention`)."""

    def __init__(self, width, kv_dim, heads, pool=False, operations=nn):
        super().__init__()
        self.heads, self.head_dim, self.pool = heads, width // heads, pool
        if pool:
            self.mat_q = nn.Parameter(torch.zeros(1, heads, width // heads))
        else:
            self.mat_q = operations.Linear(width, width)
        self.mat_kv = operations.Linear(kv_dim, 2 * width, bias=False)
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.register_buffer("zero_k_bias", torch.zeros(width))
        self.proj = operations.Linear(width, width)

    def forward(self, x, text: torch.Tensor, segments):
        """x [B, n, C] (None for the pool), text [N, kv_dim] (segments: B (start, end) rows) -> [B, n, C] in the
        compute dtype, the v bias's (x and text are cast to it)."""
        dtype = self.v_bias.dtype
        text = text.to(dtype)
        weight, _ = layer_parameters(self.mat_kv, text)
        kv = F.linear(text, weight, torch.cat((self.zero_k_bias, self.v_bias)))
        kv = kv.view(-1, 2, self.heads, self.head_dim)
        if self.pool:
            q = self.mat_q.to(kv.dtype).expand(len(segments), -1, -1)[:, None]  # [B, 1, H, c]
        else:
            q = self.mat_q(x.to(dtype)).view(x.shape[0], x.shape[1], self.heads, self.head_dim)
        return self.proj(segment_attention(q, kv, segments, 1.0 / math.sqrt(self.head_dim)))


class _TextPool(nn.Module):
    def __init__(self, cfg: InfinityConfig):
        super().__init__()
        self.ca = CrossAttention(cfg.width, cfg.text_channels, cfg.pool_heads, pool=True)


class FFN(nn.Module):
    """fc2(GELU_tanh(fc1(x))); fc1, fc2 are `operations.Linear` (see `SelfAttention`)."""

    def __init__(self, width, hidden, operations=nn):
        super().__init__()
        self.fc1, self.fc2 = operations.Linear(width, hidden), operations.Linear(hidden, width)

    def forward(self, x):
        """[..., C] in the compute dtype -> [..., C]."""
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    """One `CrossAttnBlock` (fused path, shared AdaLN): (g1, g2, s1, s2, b1, b2) = ada_gss + gss;
    x += g1 SA(LN(x)(1 + s1) + b1); x += CA(ca_norm(x)); x += g2 FFN(LN(x)(1 + s2) + b2); LN without affine.

    Precision as the official block under bf16 autocast (basic.py `CrossAttnBlock.forward`): the AdaLN parameters,
    both LayerNorms, ca_norm (affine, weights cast up) and the residual stream are float32; each branch's layers
    take their input in the compute dtype, ada_gss's (the dtype of every parameter but the linear layers' weights,
    which may be stored in fp8: `InfinityTransformer`)."""

    def __init__(self, cfg: InfinityConfig, operations=nn):
        super().__init__()
        C = cfg.width
        self.eps = cfg.eps
        self.ada_gss = nn.Parameter(torch.zeros(1, 1, 6, C))
        self.sa = SelfAttention(C, cfg.heads, operations)
        self.ca = CrossAttention(C, C, cfg.heads, operations=operations)
        self.ffn = FFN(C, cfg.ffn_hidden, operations)
        self.ca_norm = nn.LayerNorm(C, eps=cfg.eps)

    def forward(self, x, gss, text, segments, cos, sin, cache=None, mask=None, value_weights=None, prune=None,
                layer=0):
        """x [R, n, C], gss [R, 1, 6, C], text [N, C] with R segments, cos/sin [n, D/2] -> [R, n, C] (cache, mask,
        value_weights: see `SelfAttention.forward`). prune: a models/pruning.py PrunedScale (token pruning: each
        residual branch runs on the pivotal tokens only, `PrunedScale.branch`) or None; layer: this block's index."""
        g1, g2, s1, s2, b1, b2 = (self.ada_gss.float() + gss.float()).unbind(2)
        C, dtype = x.shape[-1], self.ada_gss.dtype
        norm = self.ca_norm

        def attention(y, idx):
            h = F.layer_norm(y.float(), (C,), None, None, self.eps).mul(s1.add(1)).add_(b1).to(dtype)
            # under pruning SoftCFG's weights follow what the cache holds, also on an unpruned scale after a pruned one
            weights = value_weights if prune is None else prune.value_weights(layer, value_weights, idx)
            if idx is None:
                return self.sa(h, cos, sin, cache, mask, weights).mul_(g1)
            return self.sa(h, cos[idx][:, None], sin[idx][:, None], cache, mask, weights).mul_(g1)  # kept rotations

        def cross(y, idx):
            h = F.layer_norm(y.float(), (C,), norm.weight.float(), norm.bias.float(), norm.eps)
            return self.ca(h, text, segments).float()

        def ffn(y, idx):
            h = F.layer_norm(y.float(), (C,), None, None, self.eps).mul(s2.add(1)).add_(b2).to(dtype)
            return self.ffn(h).mul(g2)

        if prune is None:
            x = x + attention(x, None)
            x = x + cross(x, None)
            return x + ffn(x, None)
        x = x + prune.branch(layer, "attn", x, attention, cached=True)
        x = x + prune.branch(layer, "cross", x, cross)
        return x + prune.branch(layer, "ffn", x, ffn)


class _Chunk(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.module = nn.ModuleList(blocks)


class _SharedAdaLin(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.register_module("1", nn.Linear(C, 6 * C))

    def forward(self, cond):
        """cond [R, C] -> gss float32 [R, 1, 6, C], computed in float32 with the weights cast up (official
        `autoregressive_infer_cfg`: autocast off, `shared_ada_lin(cond_BD.float()).float()`)."""
        lin = getattr(self, "1")
        out = F.linear(F.silu(cond.float()), lin.weight.float(), lin.bias.float())
        return out.reshape(-1, 1, 6, lin.weight.shape[0] // 6)


class _HeadNorm(nn.Module):
    """`head_nm`: (scale, shift) = ada_lin(SiLU(cond)) [B, 1, 2, C]; LN(h)(1 + scale) + shift."""

    def __init__(self, C, eps):
        super().__init__()
        self.eps = eps
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(C, 2 * C))

    def forward(self, h, cond):
        """h [R, n, C], cond [R, C] -> [R, n, C] float32 (official `get_logits`: autocast off, so in float32 with
        the weights cast up)."""
        C = h.shape[-1]
        lin = self.ada_lin[1]
        scale, shift = F.linear(F.silu(cond.float()), lin.weight.float(), lin.bias.float()).view(-1, 1, 2, C).unbind(2)
        return F.layer_norm(h.float(), (C,), None, None, self.eps).mul(scale.add(1)).add_(shift)


@dataclass
class TextRows:
    """The text path of a batch of rows: pooled `cond` [R, C] (sos and the head's AdaLN input), the shared AdaLN
    `gss` [R, 1, 6, C], the projected text `ca_kv` [N, C] and each row's (start, end) segment."""

    cond: torch.Tensor
    gss: torch.Tensor
    ca_kv: torch.Tensor
    segments: list[tuple[int, int]]

    def head(self, rows: int) -> "TextRows":
        """The first `rows` rows (the conditional ones)."""
        return TextRows(self.cond[:rows], self.gss[:rows], self.ca_kv, self.segments[:rows])


class InfinityTransformer(nn.Module):
    """The Infinity transformer with the official parameter and buffer names (`cfg_uncond`, `pos_start`, `text_norm`,
    `text_proj_for_sos.ca`, `text_proj_for_ca.{0,2}`, `lvl_embed`, `word_embed`, `shared_ada_lin.1`,
    `block_chunks.{c}.module.{j}.*`, `head_nm.ada_lin.1`, `head`).

    `operations` builds the depth blocks' linear layers (`cast_layers`: 93 % of the 2B's weights, 97 % of the
    8B's): torch.nn, or a host's cast layers (see `layer_parameters`) whose weights may stay off the device
    (ComfyUI's partial loading) or be stored in fp8 and cast per use. Every other parameter and buffer sets the
    compute dtype and must be on the compute device."""

    def __init__(self, cfg: InfinityConfig, operations=nn):
        super().__init__()
        if cfg.depth % cfg.block_chunks:
            raise ValueError(f"depth {cfg.depth} is not a multiple of block_chunks {cfg.block_chunks}")
        self.config = cfg
        C, Ct5 = cfg.width, cfg.text_channels
        self.cfg_uncond = nn.Parameter(torch.zeros(cfg.text_maxlen, Ct5))
        self.pos_start = nn.Parameter(torch.zeros(1, 1, C))
        self.text_norm = nn.Module()
        self.text_norm.weight = nn.Parameter(torch.ones(Ct5))
        self.text_proj_for_sos = _TextPool(cfg)
        self.text_proj_for_ca = nn.Sequential(nn.Linear(Ct5, C), nn.GELU(approximate="tanh"), nn.Linear(C, C))
        self.lvl_embed = nn.Embedding(cfg.levels, C)
        self.word_embed = nn.Linear(cfg.bits, C)
        self.shared_ada_lin = _SharedAdaLin(C)
        per = cfg.depth // cfg.block_chunks
        self.block_chunks = nn.ModuleList(_Chunk([Block(cfg, operations) for _ in range(per)])
                                          for _ in range(cfg.block_chunks))
        self.head_nm = _HeadNorm(C, cfg.eps)
        self.head = nn.Linear(C, cfg.vocab_size)
        self._rope = None

    def cast_layers(self) -> list[nn.Linear]:
        """The depth blocks' linear layers (built by `operations`), in order: the weights offloading and fp8
        storage act on."""
        return [m for b in self.blocks for m in (b.sa.mat_qkv, b.sa.proj, b.ca.mat_q, b.ca.mat_kv, b.ca.proj,
                                                  b.ffn.fc1, b.ffn.fc2)]

    @property
    def blocks(self) -> list[Block]:
        """The depth blocks in order (block c * per_chunk + j is `block_chunks.{c}.module.{j}`)."""
        return [b for chunk in self.block_chunks for b in chunk.module]

    def rope(self, device):
        """cos, sin [L, head_dim / 2] of the schedule, cached per device."""
        if self._rope is None or self._rope[0].device != torch.device(device):
            self._rope = rope_tables(self.config, device)
        return self._rope

    def text_rows(self, texts: list[torch.Tensor]) -> TextRows:
        """Text features of R rows (each [len_i, Ct5], only the valid tokens) -> their `TextRows`: kv = RMSNorm(kv)
        text_norm.weight (eps 1e-6, float32), cond = pool(kv), ca_kv = text_proj_for_ca(kv), gss =
        shared_ada_lin(cond) (official `autoregressive_infer_cfg` before its scale loop). cond and gss are float32
        (the official `.float()` on both), ca_kv is in the weights' dtype."""
        kv = torch.cat(texts).float()
        kv = kv * torch.rsqrt(kv.pow(2).mean(-1, keepdim=True).add_(self.config.eps)) * self.text_norm.weight.float()
        kv = kv.to(self.head.weight.dtype)
        segments, start = [], 0
        for t in texts:
            segments.append((start, start + t.shape[0]))
            start += t.shape[0]
        cond = self.text_proj_for_sos.ca(None, kv, segments).squeeze(1).float()
        return TextRows(cond, self.shared_ada_lin(cond), self.text_proj_for_ca(kv), segments)

    def logits(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Head in float32 (official `get_logits`): [R, n, C] -> [R, n, V]."""
        return F.linear(self.head_nm(h.float(), cond.float()), self.head.weight.float(), self.head.bias.float())

    def scale_input(self, k: int, rows: int, text: TextRows, latent: torch.Tensor | None) -> torch.Tensor:
        """Scale k's input float32 [rows, n_k, C] (the residual stream is float32, as the official one under bf16
        autocast): sos + pos_start at k = 0, else word_embed(latent [B, n_k, d]) repeated to `rows`; plus
        lvl_embed[k] (added once, before the first chunk)."""
        if k == 0:
            x = text.cond[:rows].unsqueeze(1) + self.pos_start.float()
        else:
            x = self.word_embed(latent.to(self.word_embed.weight.dtype)).float()
            x = x.repeat(rows // x.shape[0], 1, 1)
        return x + self.lvl_embed.weight[k].float()

    def forward_scale(self, k, x, text: TextRows, caches, value_weights=None, prune=None):
        """Run all blocks on scale k's input x [R, n_k, C] with the KV caches (one [k, v] list per block); prune:
        token pruning's hooks of this scale (models/pruning.py PrunedScale) or None."""
        s, e = self.config.offsets[k], self.config.offsets[k + 1]
        cos, sin = self.rope(x.device)
        for i, (block, cache) in enumerate(zip(self.blocks, caches)):
            x = block(x, text.gss, text.ca_kv, text.segments, cos[s:e], sin[s:e], cache, None, value_weights,
                      prune, i)
        return self.logits(x, text.cond)

    def forward_teacher(self, text: TextRows, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced pass over the whole pyramid (block-causal mask): inputs float32 [R, L - 1, d] (the latent
        inputs of scales 1..K-1) -> logits float32 [R, L, V] (official `Infinity.forward` without the training
        extras)."""
        cfg = self.config
        R = inputs.shape[0]
        parts = [self.scale_input(0, R, text, None)]
        for k in range(1, len(cfg.scales)):
            s, e = cfg.offsets[k] - 1, cfg.offsets[k + 1] - 1
            parts.append(self.scale_input(k, R, text, inputs[:, s:e]))
        x = torch.cat(parts, 1)
        mask = cfg.schedule.attention_mask(causal=True, device=x.device).to(x.dtype)
        cos, sin = self.rope(x.device)
        for block in self.blocks:
            x = block(x, text.gss, text.ca_kv, text.segments, cos, sin, None, mask)
        return self.logits(x, text.cond)


def generation_bytes(cfg: InfinityConfig, vae_cfg, batch: int, guided: bool, itemsize: int,
                     patch: int = 1) -> tuple[int, int]:
    """(sampling, decoding) bytes beyond the weights for `batch` images, with the unconditional rows when `guided`,
    activations of `itemsize` bytes: sampling = the KV cache of every block over all L positions (2 rows L C depth
    itemsize; the sampler frees it before decoding) + the last scale's float32 logits with their copies (6x);
    decoding = the BSQ decoder's largest activations (about 8 maps of ch ch_mult[0] channels at the image size:
    `patch` x the VAE's stride pixels per token side, 2 with the 8B's spatial patchify)."""
    rows = batch * (2 if guided else 1)
    kv = 2 * rows * cfg.seq_len * cfg.width * cfg.depth * itemsize
    logits = 6 * rows * cfg.lengths[-1] * cfg.vocab_size * 4
    height, width = cfg.scales[-1]
    pixels = height * width * (patch * vae_cfg.downsample) ** 2
    return kv + logits, 8 * batch * vae_cfg.ch * vae_cfg.ch_mult[0] * pixels * itemsize


@dataclass(frozen=True)
class InfinityText:
    """Text conditioning of Infinity: per prompt, flan-t5-xl encoder features of its valid tokens (prompt + `</s>`,
    no padding) float [len_i, Ct5]; optionally a negative prompt's per entry (None: the learned cfg_uncond[:len_i])."""

    features: tuple[torch.Tensor, ...]
    negative: tuple[torch.Tensor, ...] | None = None

    def __post_init__(self):
        """Lists (or any sequence) of tensors are stored as tuples."""
        for name in ("features", "negative"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                if isinstance(value, torch.Tensor) or not hasattr(value, "__len__"):
                    raise TypeError(f"InfinityText.{name} must be a tuple or list of text feature tensors, one per "
                                    f"prompt, got {type(value).__name__}")
                object.__setattr__(self, name, tuple(value))


class InfinityState(ScaleState):
    """Per-run state of `InfinityModel`: the text rows (cond first, then uncond) and one KV cache per block."""

    def __init__(self, model: "InfinityModel", batch: int, text: TextRows, with_uncond: bool):
        self.model, self.batch, self.text = model, batch, text
        self.has_uncond = with_uncond
        self.uncond_active = with_uncond
        self.dropped = False
        self.caches = [[None, None] for _ in model.transformer.blocks]

    @property
    def rows(self) -> int:
        return 2 * self.batch if self.uncond_active else self.batch

    def set_uncond(self, active: bool) -> None:
        if active and (not self.has_uncond or self.dropped):
            raise RuntimeError("the unconditional rows cannot run: " + (
                "start() was called with with_uncond=False" if not self.has_uncond else
                "they were dropped at an earlier scale and their KV cache is incomplete"))
        if not active and self.uncond_active:
            self.dropped = any(c[0] is not None for c in self.caches)
            for c in self.caches:
                if c[0] is not None:
                    c[0], c[1] = c[0][:self.batch], c[1][:self.batch]
        self.uncond_active = active

    def close(self) -> None:
        self.caches = []
        self.text = None


class InfinityModel(ScalewiseModel):
    """Infinity transformer + BSQ VAE behind the model contract.

    Logits of scale k are float32 [rows, n_k, V], V = 2d interleaved bit pairs (the official tau, which divides
    them before guidance, is the request's `guidance.Draw.temperature`). Each position holds d
    independent 2-way draws (`token_groups` = d): token ids of a scale are bits int64 [B, n_k, d]. The cfg
    convention is the official cfg l_c + (1 - cfg) l_u (`unguided_cfg` = 1: cfg 1 is no guidance), which the
    pack's (1 + t) l_c - t l_u gives with t = cfg - 1. No Gumbel smoothing (`smoothing` None: the official
    `gumbel` argument is never read). With a transformer of 4 d bits per token and a d-bit VAE (the 8B: d = 14,
    stride 8) each token is a 2 x 2 patch of VAE positions (`patchify`; official apply_spatial_patchify): the canvas
    is at twice the token grid and bits go through pixel_shuffle(2) / pixel_unshuffle(2)."""

    family = "infinity"
    smoothing = None
    unguided_cfg = 1.0

    def __init__(self, transformer: InfinityTransformer, vae: BSQVAE):
        super().__init__(transformer, vae)
        if transformer.config.bits not in (vae.config.bits, 4 * vae.config.bits):
            raise ValueError(f"the transformer takes {transformer.config.bits}-bit tokens, the VAE gives "
                             f"{vae.config.bits} (or 4 x {vae.config.bits} with spatial patchify)")
        # the 8B: a token is a 2 x 2 patch of VAE positions, 4 d bits (official apply_spatial_patchify)
        self.patchify = transformer.config.bits == 4 * vae.config.bits

    @property
    def bits(self) -> int:
        """d, bits per position."""
        return self.config.bits

    @property
    def token_groups(self) -> int:
        """d: every bit of a position is its own 2-way draw (logit pair (2j, 2j + 1) = bit j = 0, 1)."""
        return self.config.bits

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) px: the last token map's (h, w) times the VAE's stride, times 2 with patchify."""
        return self.config.schedule.image_shape(self.vae.config.downsample * (2 if self.patchify else 1))

    @property
    def vae_scales(self) -> tuple[tuple[int, int], ...]:
        """The VAE grid of each scale: the token maps' (h, w), doubled with patchify (official
        `vae_scale_schedule`)."""
        f = 2 if self.patchify else 1
        return tuple((f * h, f * w) for h, w in self.config.scales)

    @property
    def autoregressive(self) -> bool:
        return True

    def prepare_condition(self, conditioning, batch_size, first: int = 0):
        """See `ScalewiseModel.prepare_condition`. Raises TypeError for another conditioning, ValueError for text
        features of the wrong shape or holding NaN/inf (the prompt or negative prompt named), a negative-prompt
        count that is neither 1 nor one per prompt, or a batch_size that is not an integer >= 1."""
        if batch_size is not None:
            if isinstance(batch_size, bool) or not isinstance(batch_size, (int, float)) or \
                    int(batch_size) != batch_size:
                raise ValueError(f"batch_size must be an integer, got {batch_size!r}")
            if batch_size < 1:
                raise ValueError(f"batch_size must be at least 1, got {batch_size}")
            batch_size = int(batch_size)
        if not isinstance(conditioning, InfinityText):
            raise TypeError(f"conditioning: Infinity takes the prompts of an Infinity Text Encode node, got "
                            f"{type(conditioning).__name__}")
        feats = conditioning.features
        if not feats:
            raise ValueError("conditioning: no prompt")
        Ct5, maxlen = self.config.text_channels, self.config.text_maxlen
        named = [(f"prompt {i + 1}", f) for i, f in enumerate(feats)]
        named += [(f"negative prompt {i + 1}", f) for i, f in enumerate(conditioning.negative or ())]
        for name, f in named:
            if not isinstance(f, torch.Tensor) or not f.is_floating_point():
                raise ValueError(f"conditioning: {name}'s text features must be a float tensor, got "
                                 f"{getattr(f, 'dtype', type(f).__name__)}")
            if f.ndim == 2 and f.shape[1] == Ct5 and f.shape[0] > maxlen:
                raise ValueError(f"conditioning: {name} has {f.shape[0]} tokens, more than this model's text length "
                                 f"of {maxlen}: shorten the prompt (or encode it for this model)")
            if f.ndim != 2 or f.shape[1] != Ct5 or not 1 <= f.shape[0] <= maxlen:
                raise ValueError(f"conditioning: text features must be [1..{maxlen}, {Ct5}], got {tuple(f.shape)} "
                                 f"({name})")
            if not bool(torch.isfinite(f).all()):
                raise ValueError(f"conditioning: {name}'s text features hold NaN/inf (the text encoder overflowed? "
                                 "encode the prompt in fp32 or bf16)")
        n = len(feats) if batch_size is None else batch_size
        pick = [(first + i) % len(feats) for i in range(n)]
        neg = conditioning.negative
        if neg is not None and len(neg) not in (1, len(feats)):
            raise ValueError(f"conditioning: {len(neg)} negative prompts for {len(feats)} prompts; give one for "
                             "all of them or one per prompt")
        return InfinityText(tuple(feats[i] for i in pick),
                            None if neg is None else tuple(neg[i % len(neg)] for i in pick))

    def batch_size(self, prepared) -> int:
        return len(prepared.features)

    def start(self, prepared: InfinityText, with_uncond: bool) -> InfinityState:
        dev = self.weight_device
        texts = [f.to(dev) for f in prepared.features]
        if with_uncond:
            if prepared.negative is None:
                texts += [self.transformer.cfg_uncond[:f.shape[0]] for f in prepared.features]
            else:
                texts += [f.to(dev) for f in prepared.negative]
        return InfinityState(self, len(prepared.features), self.transformer.text_rows(texts), with_uncond)

    def forward_scale(self, state: InfinityState, k, latent_tokens, value_weights=None):
        rows = state.rows
        text = state.text if rows == len(state.text.segments) else state.text.head(rows)
        x = self.transformer.scale_input(k, rows, text, latent_tokens)
        prune = state.pruning.scale(k) if state.pruning is not None else None  # token pruning (models/pruning.py)
        return self.transformer.forward_scale(k, x, text, state.caches, value_weights, prune)

    def cached_positions(self) -> int:
        return self.config.seq_len

    def memory_estimate(self, batch: int, guided: bool = True) -> int:
        """Bytes beyond the weights (as `ScalewiseModel.memory_estimate`): `generation_bytes`, both parts."""
        sampling, decoding = generation_bytes(self.config, self.vae.config, batch, guided,
                                              torch.finfo(self.dtype).bits // 8, 2 if self.patchify else 1)
        return sampling + decoding

    # -- bits <-> latent canvas ----------------------------------------------------------------------------
    # With patchify, channel 4 c + 2 dy + dx of a token is bit c of VAE position (2 y + dy, 2 x + dx): torch's
    # pixel_shuffle(2) / pixel_unshuffle(2) order, as the official sampler uses them.
    def new_canvas(self, batch: int) -> torch.Tensor:
        """The empty latent float32 [B, d_vae, H, W] at the final VAE grid."""
        h, w = self.vae_scales[-1]
        return torch.zeros(batch, self.vae.config.bits, h, w, device=self.weight_device)

    def embed_tokens(self, idx: torch.Tensor) -> torch.Tensor:
        """Bits int64 [B, n, G] -> codes float32 [B, n, G] = (2 b - 1)/sqrt(d_vae) (G = d_vae, or 4 d_vae with
        patchify: the l2norm is over each VAE position's d_vae bits)."""
        if not self.patchify:
            return self.vae.quantizer.bits_to_codes(idx)
        d = self.vae.config.bits
        per_position = idx.reshape(*idx.shape[:-1], d, 4).transpose(-1, -2)  # [..., 4 (dy dx), d]
        return self.vae.quantizer.bits_to_codes(per_position).transpose(-1, -2).reshape(idx.shape)

    def next_autoregressive_input(self, k, canvas, h):
        hk, wk = self.config.scales[k]
        codes = h.transpose(1, 2).reshape(h.shape[0], self.bits, hk, wk)
        if self.patchify:
            codes = F.pixel_shuffle(codes, 2)  # [B, 4d, h, w] -> [B, d, 2h, 2w]
        nxt = self.vae.quantizer.next_input(k, self.vae_scales, canvas, codes)
        if nxt is None or not self.patchify:
            return nxt
        h2, w2 = self.vae_scales[k + 1]
        grid = nxt.transpose(1, 2).reshape(nxt.shape[0], -1, h2, w2)
        return F.pixel_unshuffle(grid, 2).flatten(2).transpose(1, 2)  # [B, h w, 4d]

    def encode_image(self, image):
        maps = self.vae.encode_bits(image, self.vae_scales)
        if self.patchify:  # [B, 2h, 2w, d] -> [B, h, w, 4d]
            maps = [F.pixel_unshuffle(m.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1) for m in maps]
        return maps

    def teacher_forcing_inputs(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """K bit maps [B, n_k, d] (or [B, h, w, d]) -> inputs of scales 1..K-1 float32 [B, L - n_0, d]."""
        canvas = self.new_canvas(tokens[0].shape[0])
        out = []
        for k, t in enumerate(tokens):
            nxt = self.next_autoregressive_input(k, canvas, self.embed_tokens(t.reshape(t.shape[0], -1, self.bits)))
            if nxt is not None:
                out.append(nxt)
        return torch.cat(out, 1)


__all__ = ["CAST_OPERATIONS", "CastLinear", "InfinityConfig", "InfinityModel", "InfinityState", "InfinityText", "InfinityTransformer", "generation_bytes",
           "PN_SCALES", "SQUARE_STEPS", "TEMPLATES", "apply_rope", "rope_tables", "square_scales", "template_rope_grid",
           "template_scales"]
