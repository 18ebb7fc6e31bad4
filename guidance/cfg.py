"""Classifier-free guidance on logits with VAR's schedule family.

CFG: Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022 (arXiv 2207.12598), applied to next-token logits as
the official VAR sampler does: l = (1 + t) l_c - t l_u with t = cfg * k / (K - 1) (FoundationVision/VAR models/var.py
`autoregressive_infer_cfg`; the same in yandex-research/switti models/pipeline.py inside its on/off window)."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Guider, GuiderRuntime, RunInfo, Term
from .schedules import SCHEDULE_NAMES, ScaleWindow, check_finite, schedule_value

# CFG's schedules: the shared ones and "custom", a cfg per scale (Infinity's official `cfg_list`)
CFG_SCHEDULES = (*SCHEDULE_NAMES, "custom")
# cfg and every custom cfg, in the model's own convention: the CFG node's `cfg` widget range (Infinity, whose
# unguided cfg is 1: below 1 weakens the prompt, towards the unconditional prediction at 0)
CFG_RANGE = (0.0, 30.0)


@dataclass(frozen=True)
class CFG(Guider):
    """l = l_u + g(k) (l_c - l_u) with g(k) = 1 + t s(k), t = cfg - c0, inside the window, cond-only outside.

    `cfg` is the official samplers' `cfg` in the model's own convention and the CFG node's widget of the same name;
    c0 = the model's `unguided_cfg` (RunInfo): VAR and Switti combine (1 + cfg) l_c - cfg l_u, c0 = 0 (VAR demo 4,
    VAR FID 1.5, Switti 6; 0 = no guidance; a ComfyUI-style CFG c is cfg = c - 1 with the constant schedule);
    Infinity combines cfg l_c + (1 - cfg) l_u, c0 = 1 (its published 3 with the constant schedule; 1 = no guidance).
    Schedules: "linear" (VAR, s = k/(K-1)), "constant" (Switti, Infinity), "cosine" (s = (1 - cos(pi r^power)) / 2),
    "custom": `custom_cfgs[k]` is scale k's cfg in the model's convention, g(k) = 1 + custom_cfgs[k] - c0 (the
    official Infinity `cfg_list`, one value per scale; scales past its end are unguided).

    Logits l_c, l_u, l: float32 [B, n_k, V]. The window is `start_scale` <= k < `end_scale` (0 = to the last scale,
    negative indices count from the end; see schedules.ScaleWindow). Raises ValueError for a non-finite `cfg` or
    custom cfg, or one outside CFG_RANGE [0, 30] (the node's widget range), `power` outside [0.01, 100], or an unknown `schedule`; `with_strength`
    refuses the custom schedule; `validate` (when sampling starts, K known) refuses a custom schedule with more
    custom_cfgs than the model's K scales (they would be cut silently).
    """

    cfg: float = 1.5
    schedule: str = "linear"
    start_scale: int = 0
    end_scale: int = 0
    power: float = 1.0
    base: Guider | None = None
    custom_cfgs: tuple[float, ...] = ()
    kind = "cfg"
    strength_field = "cfg"
    strength_range = CFG_RANGE

    def __post_init__(self):
        check_finite("cfg", self.cfg, *CFG_RANGE)
        check_finite("cfg power", self.power, 0.01, 100.0)
        if self.schedule not in CFG_SCHEDULES:
            raise ValueError(f"schedule must be one of {CFG_SCHEDULES}, got {self.schedule!r}")
        for value in self.custom_cfgs:
            check_finite("custom cfg", value, *CFG_RANGE)

    def label(self):
        window = ScaleWindow(self.start_scale, self.end_scale).label()
        if self.schedule == "custom":
            return "CFG custom " + ",".join(f"{c:g}" for c in self.custom_cfgs) + window
        return f"CFG {self.cfg:g} {self.schedule}" + window

    def validate(self, info: RunInfo, stack) -> None:
        """ValueError when the custom schedule gives more cfgs than the model has scales (K = len(patch_nums))."""
        K = len(info.patch_nums)
        if self.schedule == "custom" and len(self.custom_cfgs) > K:
            raise ValueError(f"custom_cfgs has {len(self.custom_cfgs)} values but this {info.family} model has {K} "
                             f"scales: give at most {K} (one per scale, coarse to fine; scales past the end are "
                             "unguided)")

    def with_strength(self, value: float) -> "CFG":
        if self.schedule == "custom":
            raise ValueError("a CFG guider with the custom schedule has no single strength to vary: use the "
                             "linear, constant or cosine schedule")
        return super().with_strength(value)

    def scale_cfg(self, k: int, num_scales: int, unguided_cfg: float = 0.0) -> float:
        """Scale k's cfg in the model's convention: custom_cfgs[k] (unguided_cfg past its end) for the custom
        schedule, else cfg (the schedule then shapes its push)."""
        if self.schedule != "custom":
            return self.cfg
        return self.custom_cfgs[k] if k < len(self.custom_cfgs) else unguided_cfg

    def weight(self, k: int, num_scales: int, unguided_cfg: float = 0.0) -> float | None:
        """g(k) = 1 + (cfg - unguided_cfg) s(k), or 1 + custom_cfgs[k] - unguided_cfg for the custom schedule (a
        float, no unit; g = 1 means the cond logits alone), or None outside the window (no uncond branch needed
        there). num_scales = K; unguided_cfg: the model's c0."""
        if not ScaleWindow(self.start_scale, self.end_scale).contains(k, num_scales):
            return None
        if self.schedule == "custom":
            return 1.0 + (self.scale_cfg(k, num_scales, unguided_cfg) - unguided_cfg)
        return 1.0 + (self.cfg - unguided_cfg) * schedule_value(self.schedule, k, num_scales, self.power)

    def runtime(self, info: RunInfo) -> GuiderRuntime:
        return _CFGRuntime(self, info.num_scales, info.unguided_cfg)


class _CFGRuntime(GuiderRuntime):
    def __init__(self, spec: CFG, num_scales: int, unguided_cfg: float):
        self.spec, self.num_scales, self.unguided_cfg = spec, num_scales, unguided_cfg

    def term(self, k):
        spec, c0 = self.spec, self.unguided_cfg
        g = spec.weight(k, self.num_scales, c0)
        return None if g is None or spec.scale_cfg(k, self.num_scales, c0) == c0 else Term(g)
