"""The model contract as the sampler sees it: the members of models/base.py's `ScalewiseModel` (and of the
`ScaleState` its `start` returns) that guidance/ uses, as typing Protocols, so the library types its `model`
parameters without importing models/ (ARCHITECTURE.md's table lists the same members; tests/test_architecture.py
keeps the table equal to what guidance/ uses). Shapes, dtypes and errors: `models.base.ScalewiseModel`."""
from __future__ import annotations

from typing import Callable, Protocol

import torch


class ScaleStateLike(Protocol):
    """Per-run state: condition rows (B or 2B), the switch of the unconditional rows, the positions an edit
    regenerates (`prefer`), the caches' release."""

    rows: int
    set_uncond: Callable[[bool], None]
    prefer: Callable[[int, torch.Tensor], None]  # (k, positions bool [B, h_k, w_k])
    close: Callable[[], None]


class ScalewiseModelLike(Protocol):
    """What `sample` drives (models.base.ScalewiseModel implements it); one line per member of ARCHITECTURE.md's
    contract table."""

    scale_shapes: tuple[tuple[int, int], ...]  # (h_k, w_k) of every token map, square or not
    vocab_size: int
    token_groups: int
    image_shape: tuple[int, int]  # (H, W) px
    weight_device: torch.device
    family: str
    autoregressive: bool
    unguided_cfg: float
    smoothing: object  # models.base.GumbelSmoothing(replaces_draw, guided_scales_only) or None
    prepare_condition: Callable[..., object]  # (conditioning, batch_size, first=0) -> prepared
    batch_size: Callable[[object], int]
    start: Callable[[object, bool], ScaleStateLike]  # (prepared, with_uncond)
    forward_scale: Callable[..., torch.Tensor]  # (state, k, latent_tokens, value_weights=None) -> logits
    new_canvas: Callable[[int], torch.Tensor]
    embed_tokens: Callable[[torch.Tensor], torch.Tensor]
    embed_mixture: Callable[[torch.Tensor], torch.Tensor]
    next_autoregressive_input: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None]
    decode: Callable[[torch.Tensor], torch.Tensor]
    encode_image: Callable[[torch.Tensor], list[torch.Tensor]]
