"""Infinity's BSQ VAE (binary spherical quantisation) in the official key layout, and its multi-scale bitwise
quantiser, which owns the latent update of the scale-wise sampler.

Layout and equations: official FoundationVision/Infinity (HEAD 4c27bbb5) infinity/models/bsq_vae/flux_vqgan.py
(Encoder, Decoder, ResnetBlock, Downsample, Upsample; every conv wrapped as `<name>.conv`, every GroupNorm as
`<name>.norm`), conv.py, multiscale_bsq.py (MultiScaleBSQ, BSQ) and vae.py `vae_model` (base_ch 128, 2 res-blocks,
no attention, GroupNorm 32 groups eps 1e-6, 2-D convs). Images are RGB in [-1, 1] at the network boundary; the
public helpers take and return [0, 1]. Latents are float32 [B, d, h, w], d = the codebook dimension (bits).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class BSQVAEConfig:
    """ch: base channels (128 in the released files); ch_mult: per-level multipliers ([1,2,4,4,4] for the 2B VAE);
    num_res_blocks: 2; bits: d, the latent channels and bits per position (32 for the 2B VAE, 14 for 8B's);
    downsample: pixels per latent position (16 or 8, = 2^number of resampling levels)."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4, 4)
    num_res_blocks: int = 2
    bits: int = 32
    downsample: int = 16

    @property
    def levels_resampled(self) -> int:
        """Levels with a down/upsampling: log2(downsample) (official `max_down`/`max_up`)."""
        return self.downsample.bit_length() - 1


class _Conv(nn.Module):
    """A 2-D conv stored as `<name>.conv.*` (official conv.py `Conv`, cnn_type '2d')."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)

    def forward(self, x):
        return self.conv(x)


class _Norm(nn.Module):
    """GroupNorm(32, eps 1e-6, affine) stored as `<name>.norm.*` (official flux_vqgan.py `Normalize`; the released
    widths are multiples of 32)."""

    def __init__(self, channels):
        super().__init__()
        self.norm = nn.GroupNorm(32 if channels % 32 == 0 else 24, channels, eps=1e-6, affine=True)

    def forward(self, x):
        return self.norm(x)


def _swish(x):
    return x * torch.sigmoid(x)


class _ResBlock(nn.Module):
    """x' + conv2(swish(norm2(conv1(swish(norm1(x)))))), x' = 1x1 `nin_shortcut`(x) when the width changes."""

    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = _Norm(cin), _Conv(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _Norm(cout), _Conv(cout, cout, 3, padding=1)
        self.nin_shortcut = _Conv(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv2(_swish(self.norm2(self.conv1(_swish(self.norm1(x))))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class _Down(nn.Module):
    """Pad (0, 1, 0, 1) with zeros, conv 3x3 stride 2 (`downsample.conv.conv.*`)."""

    def __init__(self, ch):
        super().__init__()
        self.conv = _Conv(ch, ch, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _Up(nn.Module):
    """Nearest x2 upsampling, conv 3x3 (`upsample.conv.conv.*`)."""

    def __init__(self, ch):
        super().__init__()
        self.conv = _Conv(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Level(nn.Module):
    def __init__(self, blocks, resample=None, name=None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if resample is not None:
            setattr(self, name, resample)


class _Mid(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.block_1, self.block_2 = _ResBlock(ch, ch), _ResBlock(ch, ch)

    def forward(self, x):
        return self.block_2(self.block_1(x))


class BSQEncoder(nn.Module):
    """Image [B, 3, H, W] in [-1, 1] -> latent [B, d, H/s, W/s] (no quant conv). Levels 0..log2(s)-1 end with a
    downsampling."""

    def __init__(self, cfg: BSQVAEConfig):
        super().__init__()
        ch, mult = cfg.ch, cfg.ch_mult
        self.conv_in = _Conv(3, ch, 3, padding=1)
        ins = (1,) + tuple(mult)
        self.down = nn.ModuleList()
        for lvl, m in enumerate(mult):
            cin, cout = ch * ins[lvl], ch * m
            blocks = [_ResBlock(cin if b == 0 else cout, cout) for b in range(cfg.num_res_blocks)]
            self.down.append(_Level(blocks, _Down(cout) if lvl < cfg.levels_resampled else None, "downsample"))
        top = ch * mult[-1]
        self.mid = _Mid(top)
        self.norm_out = _Norm(top)
        self.conv_out = _Conv(top, cfg.bits, 3, padding=1)

    def forward(self, x):
        """Image float [B, 3, H, W] in [-1, 1] -> latent [B, d, H/s, W/s]."""
        h = self.conv_in(x)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(_swish(self.norm_out(self.mid(h))))


class BSQDecoder(nn.Module):
    """Latent [B, d, h, w] -> image [B, 3, s h, s w] (unclamped). Levels from the deepest, num_res_blocks + 1 blocks
    each; levels 1..log2(s) end with an upsampling."""

    def __init__(self, cfg: BSQVAEConfig):
        super().__init__()
        ch, mult = cfg.ch, cfg.ch_mult
        block_in = ch * mult[-1]
        self.conv_in = _Conv(cfg.bits, block_in, 3, padding=1)
        self.mid = _Mid(block_in)
        levels = []
        for lvl in reversed(range(len(mult))):
            cout = ch * mult[lvl]
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(_ResBlock(block_in, cout))
                block_in = cout
            up = _Up(block_in) if 1 <= lvl <= cfg.levels_resampled else None
            levels.insert(0, _Level(blocks, up, "upsample"))
        self.up = nn.ModuleList(levels)
        self.norm_out = _Norm(block_in)
        self.conv_out = _Conv(block_in, 3, 3, padding=1)

    def forward(self, z):
        """Latent [B, d, h, w] -> image [B, 3, s h, s w], unclamped."""
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


class _LFQ(nn.Module):
    """Holds the official `lfq.mask` buffer: int64 [d] = 2^(d-1), ..., 2, 1 (a persistent buffer of the files)."""

    def __init__(self, bits):
        super().__init__()
        self.register_buffer("mask", 2 ** torch.arange(bits - 1, -1, -1))


class BitwiseQuantizer(nn.Module):
    """The multi-scale bitwise quantiser (official multiscale_bsq.py `MultiScaleBSQ` with `BSQ`; no parameters: the
    released files have codebook dim d = log2(codebook size), so no projections).

    A bit b in {0, 1} is the code (2b - 1)/sqrt(d) (official `BSQ.bits_to_codes` with codebook_scale 1/sqrt(d),
    then `l2norm`, which leaves these codes unchanged). Scale k's codes, [B, d, h_k, w_k], are resized to the final
    latent grid with 'trilinear' (align_corners False, on [B, d, 1, h, w]: the official `z_interplote_up`) and summed;
    the last scale is added without resizing."""

    def __init__(self, bits):
        super().__init__()
        self.bits = bits
        self.lfq = _LFQ(bits)

    def bits_to_codes(self, bits: torch.Tensor) -> torch.Tensor:
        """Bits (any integer or float dtype, values 0/1) [..., d] -> float32 codes (2 b - 1) / sqrt(d), same shape."""
        scale = 1.0 / (self.bits ** 0.5)
        codes = bits.float() * scale * 2 - scale
        return F.normalize(codes, dim=-1)  # the official l2norm (eps 1e-12): a no-op on these codes

    @staticmethod
    def _resize(x: torch.Tensor, size, mode: str) -> torch.Tensor:
        """[B, d, h, w] -> [B, d, *size] through the official 5-D call (t = 1)."""
        return F.interpolate(x.unsqueeze(2), size=(1, *size), mode=mode).squeeze(2)

    def next_input(self, k: int, scales, canvas: torch.Tensor, codes: torch.Tensor) -> torch.Tensor | None:
        """Add scale k's codes float32 [B, d, h_k, w_k] to `canvas` [B, d, H, W] in place (trilinear up, the last
        scale without resizing) and return the next scale's input: the canvas resized (trilinear, not area) to
        scales[k + 1], as [B, h w, d] (official infinity.py `autoregressive_infer_cfg`, vae_type != 0 branch);
        None after the last scale. scales: K (h, w) pairs."""
        if k == len(scales) - 1:
            canvas += codes
            return None
        canvas += self._resize(codes, canvas.shape[-2:], "trilinear")
        nxt = self._resize(canvas, scales[k + 1], "trilinear")
        return nxt.flatten(2).transpose(1, 2)

    def encode_bits(self, latent: torch.Tensor, scales) -> list[torch.Tensor]:
        """Residual quantisation of an encoder latent float32 [B, d, H, W]: per scale, the residual is resized to
        (h_k, w_k) with 'area' (none at the full size), quantised by sign (bit = value > 0, after the official
        l2norm, which keeps signs), the codes resized back with 'trilinear' and subtracted (official
        `MultiScaleBSQ.forward`). Returns K int64 bit maps [B, h_k, w_k, d]."""
        residual, out = latent.float(), []
        full = tuple(residual.shape[-2:])
        for hw in scales:
            part = residual if tuple(hw) == full else self._resize(residual, hw, "area")
            bits = (part > 0).long()
            out.append(bits.permute(0, 2, 3, 1))
            codes = self.bits_to_codes(bits.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            if tuple(hw) != full:
                codes = self._resize(codes, full, "trilinear")
            residual = residual - codes
        return out


class BSQVAE(nn.Module):
    """Encoder, decoder and quantiser in the official key layout: `encoder.*`, `decoder.*`, `quantizer.lfq.mask`
    and its alias `quantize.lfq.mask` (the official module registers the quantiser under both names).

    `label`, `source_name`, `decoder_dtype`, `fhat_to_image`, `decoder_in_float32`, `non_finite_weight` and
    `latent_fault` are the hooks of `ScalewiseModel.decode`'s guard (as models/vqvae.py `VQVAE`'s; the BSQ VAE has
    no post_quant_conv: the decoder alone is the image side)."""

    label = "BSQ VAE"               # the VAE's kind, in messages
    source_name: str | None = None  # its file, named in messages (models/infinity_loader.py `load_bsq_vae` sets it)

    def __init__(self, cfg: BSQVAEConfig):
        super().__init__()
        self.config = cfg
        self.encoder = BSQEncoder(cfg)
        self.decoder = BSQDecoder(cfg)
        self.quantizer = BitwiseQuantizer(cfg.bits)
        self.quantize = self.quantizer

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent float [B, d, h, w] -> images float32 [B, 3, s h, s w] in [0, 1]: the decoder's output clamped to
        [-1, 1] (official `AutoEncoder.decode`) then (x + 1) / 2 (official sampler)."""
        dtype = self.decoder.conv_in.conv.weight.dtype
        x = self.decoder(latent.to(dtype)).float().clamp(-1, 1)
        return (x + 1) / 2

    def fhat_to_image(self, latent: torch.Tensor) -> torch.Tensor:
        """`decode` (NaN where a half-precision decoder overflowed: see ScalewiseModel.decode, which guards it)."""
        return self.decode(latent)

    @property
    def decoder_dtype(self) -> torch.dtype:
        """The decoder's precision."""
        return self.decoder.conv_in.conv.weight.dtype

    @contextlib.contextmanager
    def decoder_in_float32(self):
        """Runs the decoder in float32 inside the block, then restores its precision (exactly: every fp16/bf16
        value is a float32 value). For re-decoding after a half-precision overflow."""
        dtype = self.decoder_dtype
        self.decoder.float()
        try:
            yield
        finally:
            self.decoder.to(dtype)

    def non_finite_weight(self) -> str | None:
        """Name of the first parameter holding NaN/inf (a damaged file), or None."""
        return next((n for n, p in self.named_parameters() if not bool(torch.isfinite(p).all())), None)

    def latent_fault(self) -> str:
        """Why a latent holds NaN/inf before decoding (for `ScalewiseModel.decode`'s message): the sampler's
        latent is a sum of codes +-1/sqrt(d), which cannot overflow, so it came from elsewhere."""
        return ("the BSQ VAE's latent is a sum of bit codes +-1/sqrt(d) and cannot overflow: it was built outside "
                "the sampler (decode a canvas of finite values)")

    def encode_bits(self, image: torch.Tensor, scales) -> list[torch.Tensor]:
        """Images float [B, 3, H, W] in [0, 1] -> K bit maps int64 [B, h_k, w_k, d] (see
        `BitwiseQuantizer.encode_bits`)."""
        dtype = self.encoder.conv_in.conv.weight.dtype
        latent = self.encoder((image * 2 - 1).to(dtype)).float()
        return self.quantizer.encode_bits(latent, scales)
