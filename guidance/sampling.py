"""Token drawing: top-k / top-p filtering, per-image random streams, VAR's Gumbel smoothing."""
from __future__ import annotations

import torch


def filter_logits_(logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """In place: -inf below the k-th largest logit (ties kept), then outside the top-p nucleus
    (ascending cumulative softmax, the largest entry always kept). 0 disables either filter."""
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1, sorted=False).values.amin(-1, keepdim=True)
        logits.masked_fill_(logits < kth, float("-inf"))
    if top_p > 0:
        sorted_logits, order = logits.sort(dim=-1, descending=False)
        drop = sorted_logits.softmax(-1).cumsum(-1) <= 1 - top_p
        drop[..., -1] = False
        logits.masked_fill_(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def make_generators(seed: int, batch: int, device) -> list[torch.Generator]:
    """One stream per image (seed + i), so an image never depends on the batch it was drawn in."""
    device = torch.device(device)
    return [torch.Generator(device=device).manual_seed((int(seed) + i) % 2**64) for i in range(batch)]


def draw_tokens(filtered: torch.Tensor, generators) -> torch.Tensor:
    """One multinomial draw per token from softmax(filtered) [B, n, V] -> [B, n]."""
    probs = filtered.softmax(-1)
    return torch.stack([torch.multinomial(p, 1, generator=g)[:, 0] for p, g in zip(probs, generators)])


def smooth_probabilities(filtered: torch.Tensor, ratio: float, generators) -> torch.Tensor:
    """VAR's `more_smooth`: Gumbel-softmax of the filtered logits sharpened by (1 + ratio), at
    temperature max(0.27 (1 - 0.95 ratio), 0.005); drawn after the token indices of the scale."""
    tau = max(0.27 * (1 - 0.95 * ratio), 0.005)
    noise = torch.stack([-torch.empty_like(row).exponential_(generator=g).log()
                         for row, g in zip(filtered, generators)])
    return ((filtered * (1 + ratio) + noise) / tau).softmax(-1)


def check_sampling_args(top_k: int, top_p: float, vocab_size: int) -> None:
    if isinstance(top_k, bool) or int(top_k) != top_k or not 0 <= top_k <= vocab_size:
        raise ValueError(f"top_k must be an integer in [0, {vocab_size}] (0 = off, 1 = greedy), got {top_k!r}")
    if not (0.0 <= float(top_p) <= 1.0):
        raise ValueError(f"top_p must be in [0, 1] (0 or 1 = off), got {top_p!r}")
