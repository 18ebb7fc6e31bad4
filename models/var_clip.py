"""VAR-CLIP: VAR's next-scale transformer conditioned on one pooled CLIP ViT-L/14 text vector instead of a class.

The network is VAR's (`models/var.py`) with the class table replaced (daixiangzi/VAR-CLIP @816de00, models/var.py
`VAR`): `noise`, an Embedding(1, D) holding a learned "empty text" row, and `cond_proj`, a Linear(D, C) from the
pooled text vector (D = 768, CLIP ViT-L/14's projection width) to the model width. cond_proj(text) stands exactly
where VAR uses class_emb(label): the first-scale token (with pos_start) and the AdaLN condition of every block and of
the head. The unconditional rows are cond_proj(noise): the learned row through the same linear map (with bias, not
normalised), not an empty-prompt encoding. Blocks, positions, levels, head and the VQ-VAE (VAR's
vae_ch160v4096z32.pth) keep VAR's names and shapes; sampling is VAR's (`autoregressive_infer_cfg`, unchanged after
the first token). Paper: Zhang et al., "VAR-CLIP: Text-to-Image Generator with Visual Auto-Regressive Modeling",
arXiv 2408.01181. Shapes: R rows (B or 2B with the unconditional rows), D text width, C model width.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .var import VARConfig, VARModel, VARState, VARTransformer
from .kv_cache import KVCache

TEXT_WIDTH = 768  # CLIP ViT-L/14's text projection width, the released model's n_cond_embed


@dataclass(frozen=True)
class PooledTextCondition:
    """VAR-CLIP's conditioning: one pooled text vector per prompt, float [B, D] (D = 768: CLIP ViT-L/14's projected
    end-of-text state, L2-normalised, as VAR-CLIP's `CLIPWrapper.encode_text` gives it). Image i of a batch takes
    row (first + i) % B. `prompts` are the texts (for messages only; may be empty)."""

    vectors: torch.Tensor
    prompts: tuple[str, ...] = ()

    @property
    def batch(self) -> int:
        """Number of prompts (rows)."""
        return self.vectors.shape[0]


@dataclass(frozen=True)
class VARCLIPConfig(VARConfig):
    """Sizes of a VAR-CLIP transformer (models/var_clip_loader.py infers them from the weights): VAR's, without
    classes (num_classes 0), plus the width D of the text vector (768 for the released d16; the official builder's
    default of 512 is not the released model's)."""

    num_classes: int = 0
    text_width: int = TEXT_WIDTH


class VARCLIPTransformer(VARTransformer):
    """VAR's transformer (`VARTransformer`) whose condition is cond_proj(text vector): `noise` [1, D] and
    `cond_proj` [C, D] + [C] take class_emb's place, in the official state-dict order (word_embed, noise,
    cond_proj, lvl_embed, ...)."""

    config: VARCLIPConfig

    def build_condition_table(self, cfg: VARCLIPConfig) -> None:
        self.noise = nn.Embedding(1, cfg.text_width)
        self.cond_proj = nn.Linear(cfg.text_width, cfg.width)

    def condition_embedding(self, vectors: torch.Tensor) -> torch.Tensor:
        """cond_proj(vectors): float [R, D] -> [R, C] in the weights' dtype (the official `sos = cond_BD`)."""
        return self.cond_proj(vectors.to(device=self.cond_proj.weight.device, dtype=self.cond_proj.weight.dtype))

    def null_vector(self) -> torch.Tensor:
        """The learned "empty text" row noise.weight[0], [D]: the unconditional rows' input to cond_proj."""
        return self.noise.weight[0]


class VARCLIPModel(VARModel):
    """A VAR-CLIP transformer paired with VAR's VQ-VAE. Conditioning: pooled CLIP-L text vectors
    (`PooledTextCondition`, from the VAR-CLIP Text Encode node, or a float tensor [B, D]); the unconditional rows
    are cond_proj(noise). Everything else (KV cache, sampling, canvas) is VAR's."""

    family = "var-clip"

    @property
    def text_width(self) -> int:
        """D, the width of the text vectors the model takes (768 for the released model)."""
        return self.config.text_width

    def describe(self) -> str:
        what = f"a VAR-CLIP text-to-image model (text vectors of {self.text_width})"
        return f"{what} loaded from {self.source_name!r}" if self.source_name else what

    def prepare_condition(self, conditioning, batch_size: int | None, first: int = 0) -> torch.Tensor:
        """Text vectors float32 [B, D] on the CPU: image i gets row (first + i) % len (B = batch_size, or the number
        of prompts when None; `first` is the batch's first image index, the sampler's batch_index).

        conditioning: a PooledTextCondition or a floating tensor [N, D] (or [D]). Raises TypeError for other
        conditioning (class ids are for VAR, Switti's TextCondition for Switti), ValueError for a wrong width, no
        rows, non-finite values or batch_size < 1."""
        if isinstance(conditioning, PooledTextCondition):
            vectors = conditioning.vectors
        elif isinstance(conditioning, torch.Tensor) and conditioning.is_floating_point():
            vectors = conditioning
        else:
            raise TypeError(f"conditioning: {self.describe()} needs conditioning from the VAR-CLIP Text Encode node "
                            f"(a PooledTextCondition), got {type(conditioning).__name__}; class conditioning is for "
                            "VAR models, Switti Text Encode's for Switti models")
        if vectors.dim() == 1:
            vectors = vectors[None]
        if vectors.dim() != 2 or vectors.shape[1] != self.text_width:
            raise ValueError(f"conditioning: {self.describe()} needs text vectors [N, {self.text_width}] (CLIP "
                             f"ViT-L/14's pooled output), got {tuple(vectors.shape)}")
        if vectors.shape[0] == 0:
            raise ValueError("conditioning: no text vector given: encode at least one prompt")
        if not bool(torch.isfinite(vectors).all()):
            raise ValueError("conditioning: the text vectors contain NaN/inf (a damaged text encoder?)")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        count = vectors.shape[0] if batch_size is None else int(batch_size)
        rows = (first + torch.arange(count)) % vectors.shape[0]
        return vectors.detach().float().cpu()[rows]

    def batch_size(self, vectors: torch.Tensor) -> int:
        return vectors.shape[0]

    def start(self, vectors: torch.Tensor, with_uncond: bool) -> VARState:
        """Begin a generation for text vectors float [B, D] (from `prepare_condition`); with `with_uncond` the B
        unconditional rows cond_proj(noise) follow (the official `cond_proj(cat(label_B, noise))` of
        `autoregressive_infer_cfg`). Allocates VAR's KV cache (depth x R x heads x L x head_dim)."""
        t = self.transformer
        batch = vectors.shape[0]
        vectors = vectors.to(device=self.weight_device, dtype=t.cond_proj.weight.dtype)
        if with_uncond:
            vectors = torch.cat((vectors, t.null_vector()[None].expand(batch, -1)))
        cfg = self.config
        cache = KVCache(cfg.depth, vectors.shape[0], cfg.heads, cfg.seq_len, cfg.width // cfg.heads,
                        self.dtype, self.weight_device)
        return VARState(t.condition(vectors), cache, batch)
