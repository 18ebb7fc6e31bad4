"""The model contract: what every scale-wise model of the pack is to the sampler (`guidance/sampler.py`) and to the
nodes. The sampler uses these members and nothing else; each family (VAR in `var.py`, Switti in `switti.py`)
implements the abstract ones. Adding a family = a module here with a `ScalewiseModel` subclass, its loader module,
and one loader node.

A generation, as the sampler drives it (K scales with side lengths `patch_nums`, n_k = patch_nums[k]^2 tokens):

    prepared = model.prepare_condition(conditioning, batch_size)      # checks, one row per image
    state = model.start(prepared, with_uncond)                        # per-run state: rows, KV cache
    canvas = model.new_canvas(B)                                      # f_hat = 0
    latent_in = None
    for k in range(K):
        state.set_uncond(k in uncond_scales)
        logits = model.forward_scale(state, k, latent_in)             # [rows, n_k, V]
        ... guidance, then draw tokens idx [B, n_k] (or a Gumbel mixture, see `smoothing`) ...
        h = model.embed_tokens(idx)                                   # or model.embed_mixture(probs)
        latent_in = model.next_autoregressive_input(k, canvas, h)     # f_hat += phi_k(up(h)); next input
    state.close()
    images = model.decode(canvas)

This is the loop of the official `VAR.autoregressive_infer_cfg` (FoundationVision/VAR, models/var.py) and
`SwittiPipeline.__call__` (yandex-research/switti, models/pipeline.py); the latent update is the official quantiser's
`get_next_autoregressive_input` (models/quant.py of both repositories).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from .vqvae import VQVAE


class NonFiniteImageError(RuntimeError):
    """Decoding gave NaN/inf that a float32 re-decode cannot fix; the message names the cause (latent f_hat already
    non-finite, a damaged VQ-VAE weight by name, or a transformer/VQ-VAE mismatch) and the fix."""


@dataclass(frozen=True)
class GumbelSmoothing:
    """How a family's `more_smooth` option feeds the next scale a Gumbel-softmax mixture of codes instead of one code.

    The mixture is softmax((l (1 + r_k) + g) / tau_k) with Gumbel noise g = -log(Exp(1)), r_k = k / (K - 1) and
    tau_k = max(0.27 (1 - 0.95 r_k), 0.005): official VAR models/var.py `autoregressive_infer_cfg` (comment "refer
    to mask-git") with models/helpers.py `gumbel_softmax_with_rng`; Switti models/pipeline.py the same. The
    probabilities [B, n_k, V] float32 weight the codebook (`ScalewiseModel.embed_mixture`); the sampler draws g
    from its per-image random streams (guidance/draw.py `smooth_probabilities`).

    replaces_draw: False (VAR): the tokens are drawn first from the top-k/top-p filtered logits, then the mixture of
        those filtered logits feeds the next scale. True (Switti): the mixture of the unfiltered logits replaces the
        draw (no top-k/top-p); the recorded token is the mixture's argmax.
    guided_scales_only: True (Switti): no smoothing on the scales after the guidance window (where the official
        pipeline turns CFG off); False (VAR): every scale from `smooth_start_scale` on.
    """

    replaces_draw: bool
    guided_scales_only: bool


class ScaleState:
    """Per-generation state returned by `ScalewiseModel.start`: the conditioning rows (conditional rows first, then
    the unconditional ones while that branch runs) and the model's caches. Owned by the caller, never by the modules,
    so an interrupted run leaves nothing behind; `close()` releases the caches.

    Rows are laid out [cond_0 .. cond_{B-1}, uncond_0 .. uncond_{B-1}] (the official samplers' `torch.cat` of the
    conditional and null conditions), so `logits[:B]` are l_c and `logits[B:]` l_u."""

    batch: int  # B, the number of images
    pruning = None  # models/pruning.py's PruningRun while a pruning policy drives the run (PrunedModel.start)

    @property
    def rows(self) -> int:
        """Rows the next `forward_scale` computes: 2B while the unconditional branch runs, else B."""
        raise NotImplementedError

    def set_uncond(self, active: bool) -> None:
        """Run the unconditional rows at the next scale or not (`rows` becomes 2B or B). Raises RuntimeError when a
        model with a KV cache is asked to restart that branch after dropping it (its cache of the skipped scales
        would be missing), or to run it when `start` was called with with_uncond=False."""
        raise NotImplementedError

    def prefer(self, k: int, positions: torch.Tensor) -> None:
        """Positions bool [B, n_k] of scale k whose drawn tokens the sampler keeps (an edit's regenerated tokens):
        a run that forwards only some tokens (token pruning, models/pruning.py) forwards these first. Exact runs
        ignore it."""
        if self.pruning is not None:
            self.pruning.prefer(k, positions)

    def close(self) -> None:
        """Release the caches (KV tensors, conditioning rows) so their memory is freed even after an exception;
        idempotent (the sampler calls it in a `finally`)."""
        raise NotImplementedError


class ScalewiseModel(nn.Module):
    """A next-scale prediction transformer and its multi-scale VQ-VAE: the contract of the sampler.

    Subclasses set `family`, `smoothing` and implement `autoregressive`, `prepare_condition`, `batch_size`, `start`
    and `forward_scale`; the schedule, vocabulary and token map <-> latent canvas members below are shared (the
    VQ-VAE implements them).

    Notation in the docstrings: K scales, pn_k = patch_nums[k], n_k = pn_k^2 tokens of scale k (row-major),
    L = sum n_k, V = vocab_size, Cvae = the VQ-VAE's latent channels (32 for the official VQ-VAEs), B images,
    rows = B or 2B (see `ScaleState`). Token ids are int64 in [0, V); logits are unnormalised float32.
    Paper: Tian et al., "Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale Prediction",
    NeurIPS 2024 (arXiv 2404.02905), Alg. 1-2; Switti: Voronov et al. 2024 (arXiv 2412.01819).
    """

    family: ClassVar[str] = ""                   # "var", "switti": named in messages and in guidance.RunInfo
    smoothing: ClassVar[GumbelSmoothing | None]  # the family's `more_smooth` behaviour; None: it has none
    # The cfg value that means "no guidance" in the family's own convention: 0 where the official sampler combines
    # (1 + cfg) l_c - cfg l_u (VAR, Switti), 1 where it combines cfg l_c + (1 - cfg) l_u (Infinity). The CFG guider
    # takes `cfg` in the model's convention: its t = cfg - unguided_cfg.
    unguided_cfg: ClassVar[float] = 0.0
    source_name: str | None = None               # the file the model came from (loader nodes set it), for messages

    def __init__(self, transformer: nn.Module, vae: VQVAE):
        super().__init__()
        self.transformer, self.vae = transformer, vae

    # -- schedule and vocabulary --------------------------------------------------------------------------
    @property
    def config(self):
        """The transformer's configuration (a frozen dataclass with at least patch_nums, vocab_size, depth, width,
        heads, and from models/schedule.py's ScheduledConfig its `schedule` and seq_len)."""
        return self.transformer.config

    @property
    def patch_nums(self) -> tuple[int, ...]:
        """The scale schedule: side length pn_k of the token map of scale k, coarse to fine (e.g. VAR 256 px:
        1, 2, 3, 4, 5, 6, 8, 10, 13, 16). Fixed by the checkpoint. Square schedules only: a model with non-square
        maps (Infinity's aspect-ratio templates) raises ValueError; `scale_shapes` serves both."""
        return self.config.patch_nums

    @property
    def vocab_size(self) -> int:
        """V, the codebook size: logits are [rows, n_k, V], token ids are in 0..V-1."""
        return self.config.vocab_size

    @property
    def token_groups(self) -> int:
        """G, independent categorical draws per token position: 1 for a codebook (VAR, Switti: V codes), d for a
        bitwise tokenizer (Infinity: d bits, each a 2-way choice). Logits stay [rows, n_k, V]; their last dimension
        is G consecutive groups of V / G (`logits.view(rows, n_k, G, V // G)`), each a distribution of its own,
        drawn independently; token ids are then int64 [B, n_k, G] (each in [0, V / G)), token maps
        [B, pn_k, pn_k, G]. V must be a multiple of G."""
        return 1

    @property
    def scale_shapes(self) -> tuple[tuple[int, int], ...]:
        """(h_k, w_k) of the token map of scale k, coarse to fine: (pn_k, pn_k) for a square schedule (VAR, Switti),
        Infinity's aspect-ratio template otherwise. Scale k has n_k = h_k w_k positions, row-major."""
        return self.config.schedule.shapes

    @property
    def image_size(self) -> int:
        """Side of the generated images in pixels: pn_K times the VQ-VAE's downsampling factor (16). Raises
        ValueError for a model whose images are not square (`image_shape`)."""
        height, width = self.image_shape
        if height != width:
            raise ValueError(f"this {self.family} model makes {width}x{height} (width x height) images, not square: "
                             "use image_shape")
        return height

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the generated images in pixels: the last token map's (h, w) times the VQ-VAE's downsampling
        factor (16); (image_size, image_size) for a square schedule."""
        return self.config.schedule.image_shape(self.vae.config.downsample)

    @property
    def autoregressive(self) -> bool:
        """True when every scale attends to the cached earlier scales (VAR, Switti-AR); False when each scale sees
        only its own input (Switti): then the unconditional branch can be skipped on any scale."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        """The transformer's weight dtype (the precision of its activations and KV cache)."""
        return self.transformer.head.weight.dtype

    @property
    def weight_device(self) -> torch.device:
        """Where the weights are (not `device`: ComfyUI's ModelPatcher assigns that attribute itself)."""
        return self.transformer.head.weight.device

    # -- conditioning and the per-scale forward -----------------------------------------------------------
    def prepare_condition(self, conditioning, batch_size: int | None, first: int = 0):
        """Check `conditioning` against this model and expand it to one row per image (row i of a batch uses entry
        (first + i) % len; `first` is the index of the batch's first image, the sampler's batch_index, so a batch
        sampled in parts, or image i re-made alone, gets the entries of the whole batch). Raises TypeError for a
        conditioning of another family, ValueError for a value this model cannot use (message starting with
        "conditioning:"). The result is accepted again by `prepare_condition`."""
        raise NotImplementedError

    def batch_size(self, prepared) -> int:
        """B, the number of images of a prepared conditioning."""
        raise NotImplementedError

    def start(self, prepared, with_uncond: bool) -> ScaleState:
        """Begin a generation: compute what depends only on the conditioning (once) and allocate the caches.
        With `with_uncond` the unconditional rows (null class, negative prompt) follow the B conditional ones."""
        raise NotImplementedError

    def forward_scale(self, state: ScaleState, k: int, latent_tokens: torch.Tensor | None,
                      value_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Logits float32 [rows, n_k, V] of scale k (scales are run in order 0..K-1, once each).

        latent_tokens: float32 [B, n_k, Cvae], the previous `next_autoregressive_input` (None at k = 0); it feeds
        the conditional and unconditional rows alike. value_weights: optional float [rows, cached + n_k]
        multipliers on the attention values per position (SoftCFG; 1 = unchanged), `cached` being the positions of
        the earlier scales held in the cache."""
        raise NotImplementedError

    def memory_estimate(self, batch: int, guided: bool = True) -> int:
        """Bytes a generation needs beyond the weights: KV cache, last-scale logits (with the copies that
        guidance and filtering make) and the VQ-VAE decoder's largest activations."""
        cfg, rows = self.config, batch * (2 if guided else 1)
        itemsize = torch.finfo(self.dtype).bits // 8
        kv = 2 * rows * self.cached_positions() * cfg.width * cfg.depth * itemsize
        logits = 6 * rows * cfg.schedule.lengths[-1] * cfg.vocab_size * 4
        height, width = self.image_shape
        decode = 8 * batch * self.vae.config.ch * self.vae.config.ch_mult[0] * height * width * itemsize
        if self.vae.image_side_detached and self.vae.post_quant_conv.weight.device != self.weight_device:
            decode = 0  # the decoder runs elsewhere (VQVAE.detach_image_side: ComfyUI's --cpu-vae)
        return kv + logits + decode

    def cached_positions(self) -> int:
        """Attention keys kept per row during a generation: L = sum_k pn_k^2 (680 for VAR 256 px) by default; a
        family without a cross-scale cache may return less."""
        return self.config.seq_len

    # -- token maps <-> latent canvas (the VQ-VAE's multi-scale quantiser) --------------------------------
    def new_canvas(self, batch: int) -> torch.Tensor:
        """The empty accumulated latent f_hat: float32 zeros [B, Cvae, h_K, w_K] on the weights' device."""
        height, width = self.scale_shapes[-1]
        return torch.zeros(batch, self.vae.config.z_channels, height, width, device=self.weight_device)

    def embed_tokens(self, idx: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of token ids: int64 [B, n] in [0, V) -> float32 [B, n, Cvae] (official
        `VectorQuantizer2.embedding(idx)`); an id outside [0, V) raises IndexError (CPU) or a device assert."""
        return self.vae.quantize.embed(idx)

    def embed_mixture(self, probs: torch.Tensor) -> torch.Tensor:
        """Probability-weighted codebook mixture (Gumbel smoothing): probabilities float [B, n, V] (rows sum to 1)
        -> float32 [B, n, Cvae] = probs @ codebook (official `gumbel_softmax_with_rng(...) @ embedding.weight`)."""
        return self.vae.quantize.embed_mixture(probs)

    def next_autoregressive_input(self, k: int, canvas: torch.Tensor, h: torch.Tensor) -> torch.Tensor | None:
        """Add scale k's embeddings h (float32 [B, n_k, Cvae], row-major) to the canvas in place and return the
        next scale's input [B, n_{k+1}, Cvae], None after the last scale. canvas: float32 [B, Cvae, pn_K, pn_K],
        modified in place: f_hat += phi_k(upsample_bicubic(h, pn_K)) (the last scale: no upsampling). Formula:
        official models/quant.py `VectorQuantizer2.get_next_autoregressive_input` (VAR and Switti alike; VAR
        paper Alg. 2). See `MultiScaleQuantizer.next_autoregressive_input`."""
        return self.vae.quantize.next_autoregressive_input(k, self.patch_nums, canvas, h)

    def decode(self, canvas: torch.Tensor) -> torch.Tensor:
        """Canvas [B, Cvae, h, w] -> images float32 [B, 3, 16h, 16w] in [0, 1] (the full canvas, or one downsampled
        to a scale's side for a cheap preview), on the VAE decoder's device (the weights' unless
        `VQVAE.detach_image_side` moved it). Never NaN/inf: a half-precision decoder that overflows (fp16's
        largest value is 65504) decodes again in float32, with a RuntimeWarning; NonFiniteImageError names the
        cause and the fix (a damaged weight by name, with the VAE's file when its loader recorded it) when even
        that cannot give a finite image. Official `VQVAE.fhat_to_img` (decoder output clamped to [-1, 1]) followed
        by the samplers' `(x + 1) / 2`. The VAE (`VQVAE`, Infinity's `BSQVAE`) provides `fhat_to_image`,
        `decoder_dtype`, `decoder_in_float32`, `non_finite_weight`, `latent_fault`, `label` and `source_name`."""
        vae = self.vae
        images = vae.fhat_to_image(canvas)
        if bool(torch.isfinite(images).all()):  # one host sync per decode (the image is read back anyway)
            return images
        half = vae.decoder_dtype
        if not bool(torch.isfinite(canvas).all()):
            raise NonFiniteImageError(f"the latent f_hat holds NaN/inf before decoding: {vae.latent_fault()}")
        if half != torch.float32:
            with vae.decoder_in_float32():
                images = vae.fhat_to_image(canvas)
            if bool(torch.isfinite(images).all()):
                warnings.warn(f"the {vae.label} decoder overflowed in {str(half).replace('torch.', '')}: decoded again "
                              "in float32 (load the model with dtype fp32 or bf16 to skip the second decode)",
                              RuntimeWarning, stacklevel=2)
                return images
        bad = vae.non_finite_weight()
        file = f" {vae.source_name!r}" if vae.source_name else ""
        cause = (f"its weight {bad} holds NaN/inf: the {vae.label} file{file} is damaged, download it again" if bad
                 else f"the latent is out of the decoder's range: the transformer and the {vae.label} may not belong "
                      f"together (pick the {vae.label} trained with this transformer)")
        raise NonFiniteImageError(f"the {vae.label} decoder gives NaN/inf even in float32: {cause}")

    def encode_image(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Images float [B, 3, S, S] in [0, 1], S = `image_size` -> K token maps int64 [B, pn_k, pn_k], coarse to
        fine (official `VQVAE.img_to_idxBl`, the residual quantisation of VAR paper Alg. 1; the image is mapped to
        [-1, 1] first). Raises ValueError when the spatial size is not S x S."""
        return self.vae.image_to_tokens(image, self.patch_nums)

    def teacher_forcing_inputs(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """Inputs of scales 1..K-1 given the token maps of every scale: float32 [B, L - n_0, Cvae], what the
        sampler feeds `forward_scale` when it draws exactly these tokens (official `idxBl_to_var_input`).
        tokens: K int64 maps [B, pn_k, pn_k] (or [B, n_k]), coarse to fine."""
        return self.vae.quantize.teacher_forcing_inputs(tokens, self.patch_nums)
