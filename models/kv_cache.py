"""A pre-allocated key/value cache for scale-wise generation.

Owned by one generation (never by the network), so an interrupted run cannot leave stale state
behind: dropping the object frees it. Keys and values are written once and never modified.
"""
from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer for `rows` rows, pre-allocated [rows, heads, max_len, head_dim] in the
    model's dtype; scales append their positions in order (`extend` per layer, then `advance`)."""

    def __init__(self, layers: int, rows: int, heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype, device):
        shape = (rows, heads, max_len, head_dim)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.length = 0  # positions filled by completed scales

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store this scale's k/v [R, H, n, D] after the cached prefix; return the full prefix + new, views
        [R, H, length + n, D] of the cache (cast to its dtype on write). A scale past max_len raises RuntimeError
        (shape mismatch on the slice assignment)."""
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int):
        """Mark the n positions just written by every layer as filled (after the last layer of a scale)."""
        self.length += n

    def keep_rows(self, rows: slice):
        """Keep only these rows; copied so the dropped rows' memory is released. One layer at a time,
        so the peak is the cache plus one layer's copy, not twice the cache."""
        for store in (self.keys, self.values):
            for i, t in enumerate(store):
                store[i] = t[rows].clone()

    def release(self):
        """Drop the tensors (idempotent); the cache is empty afterwards."""
        self.keys, self.values, self.length = [], [], 0
