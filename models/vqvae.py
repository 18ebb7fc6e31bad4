"""Multi-scale VQ-VAE with the layout of VAR's `vae_ch160v4096z32.pth` (also Switti's VQ-VAE).

Images are RGB in [-1, 1] at the network boundary; the public helpers take and return [0, 1].
Token maps are int64 [B, h, w], coarse to fine. The running latent f_hat is kept in float32.
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .resize import area_resize
from .torch_compat import attention

# Which of the 4 shared phi convolutions serves scale k. The official choice is a float64 argmin
# with two exact ties settled by rounding, so the tables for the released schedules are fixed here.
PHI_TABLES = {
    10: (0, 0, 1, 1, 1, 2, 2, 3, 3, 3),
    14: (0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3),
}


def phi_index_table(num_scales: int, num_phi: int = 4) -> tuple[int, ...]:
    """Which of the `num_phi` shared phi convolutions serves each scale k of K: the tick nearest to k / (K - 1) among
    `num_phi` ticks linspace(1/(3 num_phi), 1 - 1/(3 num_phi)) (official quant.py PhiPartiallyShared, which uses
    these ticks for 4 convs, all released models). The released 10- and 14-scale tables are hard-coded because the
    official float64 argmin settles two exact ties by rounding."""
    if num_phi == 4 and num_scales in PHI_TABLES:
        return PHI_TABLES[num_scales]
    ticks = torch.linspace(1 / (3 * num_phi), 1 - 1 / (3 * num_phi), num_phi, dtype=torch.float64)
    ratios = [k / max(num_scales - 1, 1) for k in range(num_scales)]
    return tuple(int((ticks - r).abs().argmin()) for r in ratios)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x)))))) with GroupNorm(32, eps 1e-6) and a 1x1 shortcut when the width changes
    (official basic_vae.py ResnetBlock, dropout 0)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = _group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _group_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        """[B, cin, H, W] -> [B, cout, H, W]."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with one fused q/k/v 1x1 conv (official basic_vae.py AttnBlock, the key
    `qkv`): x + proj_out(softmax(q k^T / sqrt(C)) v) over the H W positions of GroupNorm(x)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        """[B, C, H, W] -> [B, C, H, W] (residual)."""
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        # the contiguous [B, C, H, W] copy of reshape, not a permuted view: the conv's summation order follows the
        # layout, and saved workflows' images stay bit-identical (tests/integration/test_workflow_images.py)
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding right and bottom by one (official basic_vae.py Downsample2x)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        """[B, C, H, W] -> [B, C, H/2, W/2]."""
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling, then a 3x3 conv (official basic_vae.py Upsample2x)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        """[B, C, H, W] -> [B, C, 2H, 2W]."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


@dataclass(frozen=True)
class VQVAEConfig:
    """Sizes of the multi-scale VQ-VAE (defaults: VAR's vae_ch160v4096z32, also VQVAE-Switti): codebook of vocab_size
    codes of z_channels dims, base width ch, per-level width multipliers ch_mult (4 downsamplings: 16 px per
    token)."""

    vocab_size: int = 4096
    z_channels: int = 32
    ch: int = 160
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    encoder_blocks: int = 2  # residual blocks per encoder level; the decoder has one more

    @property
    def downsample(self) -> int:
        """Pixels per latent cell along each axis: 2^(levels - 1) (16 for the official VQ-VAE)."""
        return 2 ** (len(self.ch_mult) - 1)


class _Level(nn.Module):
    """One resolution level: residual blocks, optional attention after each, optional resampling."""

    def __init__(self, cin, cout, n_blocks, with_attn, resample: str | None):
        super().__init__()
        self.block = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout) for i in range(n_blocks))
        self.attn = nn.ModuleList(AttnBlock(cout) for _ in range(n_blocks)) if with_attn else nn.ModuleList()
        if resample == "down":
            self.downsample = Downsample(cout)
        elif resample == "up":
            self.upsample = Upsample(cout)

    def forward(self, x):
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        if hasattr(self, "downsample"):
            x = self.downsample(x)
        if hasattr(self, "upsample"):
            x = self.upsample(x)
        return x


class _Mid(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.block_1 = ResBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResBlock(channels, channels)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """Image [B, 3, H, W] in [-1, 1] -> latent [B, z_channels, H/16, W/16] (official basic_vae.py Encoder, double_z
    False)."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        last = len(widths) - 1
        self.conv_in = nn.Conv2d(3, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList(
            _Level(cfg.ch if i == 0 else widths[i - 1], widths[i], cfg.encoder_blocks,
                   with_attn=i == last, resample=None if i == last else "down")
            for i in range(len(widths)))
        self.mid = _Mid(widths[-1])
        self.norm_out = _group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], cfg.z_channels, 3, padding=1)

    def forward(self, x):
        """[B, 3, H, W] -> [B, z_channels, H/ds, W/ds] (ds = `VQVAEConfig.downsample`)."""
        x = self.conv_in(x)
        for level in self.down:
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(self.mid(x))))


class Decoder(nn.Module):
    """Latent [B, z_channels, h, w] -> image [B, 3, 16h, 16w] in about [-1, 1] (official basic_vae.py Decoder)."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        last = len(widths) - 1
        self.conv_in = nn.Conv2d(cfg.z_channels, widths[-1], 3, padding=1)
        self.mid = _Mid(widths[-1])
        # Stored by resolution level (0 = full resolution), executed from the coarsest level down.
        self.up = nn.ModuleList(
            _Level(widths[min(i + 1, last)], widths[i], cfg.encoder_blocks + 1,
                   with_attn=i == last, resample=None if i == 0 else "up")
            for i in range(len(widths)))
        self.norm_out = _group_norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, z):
        """[B, z_channels, h, w] -> [B, 3, h ds, w ds]."""
        x = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Phi(nn.Conv2d):
    """phi(h) = 0.5 h + 0.5 conv(h): the residual refinement applied to each scale's embedding."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, padding=1)

    def forward(self, h):
        """[B, C, h, w] -> [B, C, h, w] (0.5 h + 0.5 conv(h); the official quant_resi ratio 0.5)."""
        return h * 0.5 + super().forward(h) * 0.5


class _PhiSet(nn.Module):
    def __init__(self, channels: int, count: int = 4):
        super().__init__()
        self.qresi_ls = nn.ModuleList(Phi(channels) for _ in range(count))


class MultiScaleQuantizer(nn.Module):
    """The multi-scale residual quantiser (official quant.py VectorQuantizer2 with 4 partially shared phi convs): a
    token map per scale, each scale's code vectors upsampled to the last scale's side, refined by phi and summed
    into the latent f_hat."""

    def __init__(self, vocab_size: int, channels: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, channels)
        self.quant_resi = _PhiSet(channels)

    @property
    def dtype(self) -> torch.dtype:
        """The phi convolutions' weight dtype (the codebook is read in float32 whatever its dtype)."""
        return self.quant_resi.qresi_ls[0].weight.dtype

    def phi(self, k: int, num_scales: int, h: torch.Tensor) -> torch.Tensor:
        """Scale k's phi conv (`phi_index_table`) applied to h [B, C, s, s] (cast to the weights' dtype), returned
        as float32 [B, C, s, s]."""
        conv = self.quant_resi.qresi_ls[phi_index_table(num_scales, len(self.quant_resi.qresi_ls))[k]]
        return conv(h.to(conv.weight.dtype)).float()

    def scale_contribution(self, k: int, patch_nums, h: torch.Tensor) -> torch.Tensor:
        """phi_k(up(h)) for scale k: h float [B, C, pn_k, pn_k] -> float32 [B, C, pn_K, pn_K], up = bicubic
        (align_corners False) to the last side pn_K; no resize at the last scale (official quant.py; VAR paper
        Alg. 1, the term phi_k(z_k) of the residual update)."""
        side = patch_nums[-1]
        if k != len(patch_nums) - 1:
            h = F.interpolate(h.float(), size=(side, side), mode="bicubic", align_corners=False)
        return self.phi(k, len(patch_nums), h)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Token map int64 [B, h, w] in [0, V) -> embeddings float32 [B, C, h, w] (channels first)."""
        return rearrange(self.embedding.weight.float()[idx], "b h w c -> b c h w").contiguous()

    def encode(self, f: torch.Tensor, patch_nums) -> list[torch.Tensor]:
        """Residual quantisation of latent f [B, C, H, W] (H = W = pn_K) into K index maps int64 [B, pn_k, pn_k]:
        at each scale the residual is area-downsampled to pn_k (not at the last scale), each vector takes its
        nearest code in squared L2 distance, and phi_k(up(code map)) is subtracted from the residual (official
        quant.py `VectorQuantizer2.f_to_idxBl_or_fhat`; VAR paper Alg. 1). Ties go to the lowest code id."""
        residual = f.float().clone()
        codebook = self.embedding.weight.float()
        sq_norms = codebook.square().sum(1)
        out = []
        for k, pn in enumerate(patch_nums):
            z = residual if k == len(patch_nums) - 1 else area_resize(residual, (pn, pn))
            z = rearrange(z, "b c h w -> (b h w) c")
            dist = z.square().sum(1, keepdim=True) + sq_norms - 2 * z @ codebook.T
            idx = dist.argmin(1).view(f.shape[0], pn, pn)
            out.append(idx)
            residual -= self.scale_contribution(k, patch_nums, self.lookup(idx))
        return out

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of token ids: int64 [B, n] -> float32 [B, n, C]."""
        return self.embedding.weight.float()[idx]

    def embed_mixture(self, probs: torch.Tensor) -> torch.Tensor:
        """sum_v probs[..., v] * codebook[v]: [B, n, V] -> float32 [B, n, C] (the Gumbel-smoothing mixture)."""
        return probs @ self.embedding.weight.float()

    def next_autoregressive_input(self, k: int, patch_nums, fhat: torch.Tensor, h: torch.Tensor):
        """The next-scale latent update of the official `VectorQuantizer2.get_next_autoregressive_input`
        (VAR models/quant.py): f_hat += phi_k(up(h_k)) in place, then the next scale's input is
        area_down(f_hat, pn_{k+1}) flattened row-major.

        fhat: float32 [B, C, pn_K, pn_K], updated in place. h: scale k's embeddings, float32 [B, n_k, C] with
        n_k = pn_k^2 (row-major). Returns float32 [B, n_{k+1}, C], or None after the last scale."""
        pn = patch_nums[k]
        h = rearrange(h, "b (h w) c -> b c h w", h=pn).contiguous()
        fhat += self.scale_contribution(k, patch_nums, h)
        if k + 1 == len(patch_nums):
            return None
        nxt = patch_nums[k + 1]
        return rearrange(area_resize(fhat, (nxt, nxt)), "b c h w -> b (h w) c")

    def teacher_forcing_inputs(self, tokens, patch_nums) -> torch.Tensor:
        """Inputs of scales 1..K-1 given the token maps of every scale (int64 [B, pn_k, pn_k]):
        float32 [B, L - n_0, C], what the sampler feeds the transformer when it draws exactly these tokens
        (official `idxBl_to_var_input`, the same update as `next_autoregressive_input`)."""
        side = patch_nums[-1]
        fhat = torch.zeros(tokens[0].shape[0], self.embedding.weight.shape[1], side, side,
                           device=self.embedding.weight.device)
        out = [self.next_autoregressive_input(k, patch_nums, fhat, self.embed(idx.flatten(1)))
               for k, idx in enumerate(tokens[:-1])]
        return torch.cat(out, dim=1)

    def tokens_to_fhat(self, tokens, patch_nums) -> torch.Tensor:
        """f_hat float32 [B, C, pn_K, pn_K] = sum over scales of phi_k(up(E[tokens_k])) (official embed_to_fhat with
        last_one)."""
        fhat = None
        for k, idx in enumerate(tokens):
            h = self.scale_contribution(k, patch_nums, self.lookup(idx))
            fhat = h if fhat is None else fhat + h
        return fhat


IMAGE_SIDE = ("encoder", "quant_conv", "post_quant_conv", "decoder")  # VQVAE parts between pixels and latent


class VQVAE(nn.Module):
    """The multi-scale VQ-VAE with the official key layout (encoder, decoder, quant_conv, post_quant_conv, quantize).
    Images are RGB; its public methods take and return [0, 1]. `label`, `source_name`, `decoder_dtype`,
    `fhat_to_image`, `decoder_in_float32`, `non_finite_weight` and `latent_fault` are what `ScalewiseModel.decode`'s
    guard uses (models/bsq_vae.py `BSQVAE` has them too)."""

    label = "VQ-VAE"                # the VAE's kind, in messages
    source_name: str | None = None  # its file, named in messages when a loader sets it

    def __init__(self, cfg: VQVAEConfig = VQVAEConfig()):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 3, padding=1)
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 3, padding=1)
        self.quantize = MultiScaleQuantizer(cfg.vocab_size, cfg.z_channels)

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (the encoder side's: see `detach_image_side`)."""
        return self.quant_conv.weight.dtype

    @property
    def image_side_detached(self) -> bool:
        """True after `detach_image_side`."""
        return "decoder" not in self._modules

    def detach_image_side(self, device, dtype: torch.dtype) -> None:
        """Keep the image side (encoder, quant_conv, post_quant_conv, decoder) on `device` in `dtype` from now on,
        outside the module tree: `.to()`, `.parameters()`, `state_dict()` and whatever moves a model as a whole
        (ComfyUI's model management) then see only the quantiser (codebook and phi convs), which the sampling loop
        uses at every scale. `fhat_to_image` and `image_to_tokens` move latents and images across; images come back
        on `device`. For ComfyUI's --cpu-vae. Calling it again moves the detached parts again; there is no undo."""
        for name in IMAGE_SIDE:
            part = self._modules.pop(name) if name in self._modules else self.__dict__[name]
            object.__setattr__(self, name, part.to(device=device, dtype=dtype))  # a plain attribute: not a child

    def _image_side_parameters(self):
        if self.image_side_detached:
            for name in IMAGE_SIDE:
                yield from getattr(self, name).named_parameters(prefix=name)

    def fhat_to_image(self, fhat: torch.Tensor) -> torch.Tensor:
        """Accumulated latent [B, C, h, w] -> image float32 [B, 3, H, W] in [0, 1] on the decoder's device (NaN
        where the decoder overflowed: see ScalewiseModel.decode)."""
        weight = self.post_quant_conv.weight
        x = self.decoder(self.post_quant_conv(fhat.to(device=weight.device, dtype=weight.dtype).contiguous()))
        return (x.float().clamp(-1, 1) + 1) * 0.5

    @contextlib.contextmanager
    def decoder_in_float32(self):
        """Runs post_quant_conv and the decoder in float32 inside the block, then restores their precision
        (exactly: every fp16/bf16 value is a float32 value). For re-decoding after a half-precision overflow."""
        parts, dtype = (self.post_quant_conv, self.decoder), self.post_quant_conv.weight.dtype
        for part in parts:
            part.float()
        try:
            yield
        finally:
            for part in parts:
                part.to(dtype)

    @property
    def decoder_dtype(self) -> torch.dtype:
        """The precision of the image side's decoding (post_quant_conv and the decoder)."""
        return self.post_quant_conv.weight.dtype

    def latent_fault(self) -> str:
        """Why a latent f_hat holds NaN/inf before decoding, and the fix (for `ScalewiseModel.decode`'s message)."""
        return (f"the VQ-VAE's quantiser convolutions overflowed in {str(self.quantize.dtype).replace('torch.', '')} "
                "(or the model's weights are damaged); load the model with dtype fp32, or bf16 on a GPU that supports "
                "it")

    def non_finite_weight(self) -> str | None:
        """Name of the first parameter holding NaN/inf (a damaged file), or None."""
        parameters = itertools.chain(self.named_parameters(), self._image_side_parameters())
        return next((n for n, p in parameters if not bool(torch.isfinite(p).all())), None)

    def tokens_to_image(self, tokens, patch_nums) -> torch.Tensor:
        """K token maps int64 [B, pn_k, pn_k] -> image float32 [B, 3, H, W] in [0, 1] (official idxBl_to_img)."""
        return self.fhat_to_image(self.quantize.tokens_to_fhat(tokens, patch_nums))

    def image_to_tokens(self, image: torch.Tensor, patch_nums) -> list[torch.Tensor]:
        """Image float [B, 3, H, W] in [0, 1] -> K index maps int64 [B, pn_k, pn_k], coarse to fine (official
        `VQVAE.img_to_idxBl`: the image is mapped to [-1, 1], encoded, quant_conv'd, then `encode`d), on the
        quantiser's device (the encoder's may differ: `detach_image_side`). Raises ValueError unless H = W =
        pn_K * downsample."""
        side = patch_nums[-1] * self.config.downsample
        if image.shape[-2:] != (side, side):
            raise ValueError(f"image must be {side}x{side} for this schedule, got {tuple(image.shape[-2:])}")
        weight = self.quant_conv.weight
        f = self.quant_conv(self.encoder(image.to(device=weight.device, dtype=weight.dtype) * 2 - 1))
        return self.quantize.encode(f.to(self.quantize.embedding.weight.device), patch_nums)
