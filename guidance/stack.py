"""Per-run execution of a guider stack: which branches run, and how logits are combined.

Logits are float32 [B, n_k, V] (B images, n_k = pn_k^2 tokens of scale k, V codes); l_c conditional, l_u
unconditional. The combination is CFG on logits (Ho & Salimans 2022, arXiv 2207.12598, as the official VAR
sampler writes it) extended to a sum of terms as in the IGG paper's mixed scheme (Nguyen et al. 2025,
arXiv 2509.23876)."""
from __future__ import annotations

import torch

from .base import Guider, RunInfo, ScaleRecord


class GuidanceRun:
    """Instantiated by the sampler for one generation; owns the runtimes of every guider.

    Raises ValueError when the stack holds two guiders of one kind, or when a guider's `validate` refuses the run
    (its message names the guider and the fix). Attributes: `guidance_end`, the first scale from which on no term
    is active (K when the last scale is guided or none is); `uncond_scales`, the scales on which the unconditional
    rows run (for an autoregressive model every scale up to the last guided one, since its KV cache must stay
    complete; otherwise exactly the guided scales)."""

    def __init__(self, guider: Guider | None, info: RunInfo):
        self.info = info
        stack = guider.stack() if guider is not None else ()
        kinds = [g.kind for g in stack]
        for kind in set(kinds):
            if kinds.count(kind) > 1:
                raise ValueError(f"the guider stack contains {kinds.count(kind)} {kind.upper()} guiders; "
                                 "use at most one of each kind")
        for g in stack:
            g.validate(info, stack)
        self.runtimes = [g.runtime(info) for g in stack]
        needed = [k for k in range(info.num_scales) if self.terms(k)]
        last = max(needed, default=-1)
        # Scales from here on are unguided (Switti's "CFG off" suffix); with no guidance at all there is none.
        self.guidance_end = last + 1 if needed else info.num_scales
        # A cached model's uncond branch must run at every scale up to the last guided one (its
        # cache must stay complete); after that only the cond rows continue.
        if info.autoregressive:
            self.uncond_scales = frozenset(range(last + 1))
        else:
            self.uncond_scales = frozenset(needed)

    def terms(self, k: int) -> list:
        """The active `Term`s of scale k, in stack order (empty: cond-only)."""
        return [t for t in (rt.term(k) for rt in self.runtimes) if t is not None]

    def value_weights(self, k: int, cached: int) -> torch.Tensor | None:
        """Product of the runtimes' multipliers [B, cached] on the uncond rows' cached values, or None."""
        weights = [w for rt in self.runtimes if (w := rt.value_weights(k, cached)) is not None]
        if not weights:
            return None
        out = weights[0]
        for w in weights[1:]:
            out = out * w
        return out

    def combine(self, k: int, cond: torch.Tensor, uncond: torch.Tensor | None) -> torch.Tensor:
        """Guided logits [B, n_k, V] from l_c and l_u (float32 [B, n_k, V]): l_u + sum_i w_i T_i(l_c - l_u) over
        the active terms; with identity transforms only, VAR's own (1 + t) l_c - t l_u, t = sum w_i - 1
        (models/var.py `autoregressive_infer_cfg` of the official VAR), so plain CFG matches it bit for bit.
        A copy of l_c when no term is active or the uncond branch did not run. Never modifies its inputs."""
        terms = self.terms(k)
        if uncond is None or not terms:
            return cond.clone()
        if all(t.transform is None for t in terms):
            # (1 + t) l_c - t l_u: VAR's own arithmetic, so plain CFG matches it bit for bit.
            t = sum(term.weight for term in terms) - 1.0
            return cond.clone() if t == 0 else (1 + t) * cond - t * uncond
        delta = cond - uncond
        out = uncond
        for term in terms:
            out = out + term.weight * (delta if term.transform is None else term.transform(delta))
        return out

    def postprocess(self, k: int, logits: torch.Tensor) -> torch.Tensor:
        """The runtimes' `postprocess` hooks applied in stack order (SSG)."""
        for rt in self.runtimes:
            logits = rt.postprocess(k, logits)
        return logits

    def observe(self, record: ScaleRecord) -> None:
        """Hand the scale's outcome to every runtime."""
        for rt in self.runtimes:
            rt.observe(record)
