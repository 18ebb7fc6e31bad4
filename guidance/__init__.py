"""Scale-wise sampling and guidance (plain torch, no ComfyUI import)."""
from .base import Guider, GuiderRuntime, RunInfo, ScaleRecord, Term
from .cfg import CFG
from .sampler import SampleOutput, ScaleProgress, sample
from .sampling import filter_logits_
from .schedules import SCHEDULE_NAMES, ScaleWindow, schedule_value

__all__ = [
    "Guider", "GuiderRuntime", "RunInfo", "ScaleRecord", "Term", "CFG", "SampleOutput", "ScaleProgress",
    "sample", "filter_logits_", "SCHEDULE_NAMES", "ScaleWindow", "schedule_value",
]
