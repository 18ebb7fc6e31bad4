"""Per-scale guidance schedules: the strength multiplier g(k) = 1 + w * s(k) and the on/off window.

"linear" is the official samplers' t = cfg * k / (K - 1) (FoundationVision/VAR models/var.py, yandex-research/switti
models/pipeline.py); the on/off window is Switti's `turn_on_cfg_start_si` / `turn_off_cfg_start_si`, an analogue of
limited-interval guidance (Kynkaanniemi et al., NeurIPS 2024, arXiv 2404.07724)."""
from __future__ import annotations

import math
import re
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


# A number as the list inputs accept it: optional sign, decimal digits (ASCII), an optional decimal part and
# exponent. Python-only spellings (1_000, nan, inf, 0x10, non-ASCII digits) are refused.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
# Entry separators: a comma or semicolon (line breaks and spaces around it included), or line breaks alone (a blank
# line is part of the separator); with `spaces`, runs of spaces too.
_SEPARATOR = re.compile(r"\s*[,;]\s*|\s*\n\s*")
_SEPARATOR_SPACES = re.compile(r"\s*[,;]\s*|\s+")
LIST_SEPARATORS = "commas, semicolons or line breaks"


def fmt_range(low: float, high: float) -> str:
    """The range as the messages write it: "0.0..30.0"."""
    return f"{float(low)}..{float(high)}"


def parse_number_list(text: str, name: str, low: float, high: float, *, spaces: bool = False,
                      low_open: bool = False, allowed: str | None = None) -> tuple[float, ...]:
    """'3, 3; 2\n1' -> (3.0, 3.0, 2.0, 1.0): finite numbers in [low, high] ((low, high] with `low_open`), in order.

    Entries are separated by commas, semicolons or line breaks (with `spaces` also by spaces); whitespace around
    an entry and one trailing separator are ignored, a blank text gives (). An empty entry ('3,,3', a leading
    comma) is refused, not skipped, since it would shift every later entry to the wrong scale. Raises ValueError
    naming `name`, the entry's position (1-based), its text and the allowed range, for an empty entry, one that is
    not a plain decimal number (see _NUMBER), a non-finite one or one out of range; `allowed` replaces the range's
    wording in the messages ("allowed <allowed>")."""
    text = str(text).strip()
    if not text:
        return ()
    parts = (_SEPARATOR_SPACES if spaces else _SEPARATOR).split(text)
    if len(parts) > 1 and parts[-1] == "":   # one trailing separator: '3, 3,'
        parts.pop()
    allowed = "allowed " + (allowed if allowed is not None else f"above {float(low)} up to {float(high)}" if low_open
                            else fmt_range(low, high))
    values = []
    for i, part in enumerate(parts, 1):
        if part == "":
            raise ValueError(f"{name}: entry {i} is empty ({text!r}): write one number per entry, separated by "
                             f"{LIST_SEPARATORS} ({allowed})")
        if not _NUMBER.fullmatch(part):
            word = part.lower().lstrip("+-")
            if word in ("nan", "inf", "infinity"):
                raise ValueError(f"{name}: entry {i} is {part}, not a finite number ({allowed})")
            raise ValueError(f"{name}: entry {i} is {part!r}, not a number: write plain decimals such as 3, 0.5 "
                             f"or 1e-2 ({allowed})")
        value = float(part)
        if not math.isfinite(value):
            raise ValueError(f"{name}: entry {i} is {part}, not a finite number ({allowed})")
        if value > high or value < low or (low_open and value == low):
            raise ValueError(f"{name}: entry {i} is {part}, out of range ({allowed})")
        values.append(value)
    return tuple(values)


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
