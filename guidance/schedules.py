"""Per-scale guidance schedules: the strength multiplier g(k) = 1 + w * s(k) and the on/off window.

"linear" is the official samplers' t = cfg * k / (K - 1) (FoundationVision/VAR models/var.py, yandex-research/switti
models/pipeline.py); the on/off window is Switti's `turn_on_cfg_start_si` / `turn_off_cfg_start_si`, an analogue of
limited-interval guidance (Kynkaanniemi et al., NeurIPS 2024, arXiv 2404.07724)."""
from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULE_NAMES = ("linear", "constant", "cosine")


def ramp(k: int, num_scales: int) -> float:
    """r_k = k / (K - 1): 0 at the first scale, 1 at the last."""
    return k / (num_scales - 1) if num_scales > 1 else 1.0


def schedule_value(name: str, k: int, num_scales: int, power: float = 1.0) -> float:
    """s(k) in [0, 1] for the named schedule: "linear" r_k, "constant" 1, "cosine" (1 - cos(pi r_k^power)) / 2,
    with r_k = k / (K - 1) (`ramp`). Raises ValueError for an unknown name."""
    r = ramp(k, num_scales)
    if name == "linear":  # VAR: t_k = w * k / (K - 1)
        return r
    if name == "constant":  # Switti demos
        return 1.0
    if name == "cosine":  # power-cosine of MDT/AliTok, mapped onto scales
        return 0.5 * (1.0 - math.cos(math.pi * r ** power))
    raise ValueError(f"schedule must be one of {SCHEDULE_NAMES}, got {name!r}")


def check_finite(name: str, value: float, low: float | None = None, high: float | None = None) -> float:
    """float(value) if finite and within [low, high] (None = unbounded); else ValueError naming `name`."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


@dataclass(frozen=True)
class ScaleWindow:
    """Scales start <= k < end are guided. end = 0 means up to the last scale (the guider nodes' `end_scale`
    widget has the same zero); a negative index counts from the end (-3 = last three off)."""

    start: int = 0
    end: int = 0

    def bounds(self, num_scales: int) -> tuple[int, int]:
        """(lo, hi): the guided scales are lo <= k < hi, clipped to 0..num_scales."""
        start = self.start + num_scales if self.start < 0 else self.start
        end = num_scales if self.end == 0 else (self.end + num_scales if self.end < 0 else self.end)
        return max(0, start), min(num_scales, end)

    def contains(self, k: int, num_scales: int) -> bool:
        """Whether scale k is inside the window."""
        lo, hi = self.bounds(num_scales)
        return lo <= k < hi

    def label(self) -> str:
        """Suffix for guider labels: "" for the full range, else " [start:end]" (end empty = to the end)."""
        if self.start == 0 and self.end == 0:
            return ""
        return f" [{self.start}:{'' if self.end == 0 else self.end}]"
