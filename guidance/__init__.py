"""Scale-wise sampling and guidance (plain torch, no ComfyUI import)."""
from .base import Guider, GuiderRuntime, RunInfo, ScaleRecord, Term
from .cfg import CFG
from .igg import IGG
from .request import Draw, Edit, Generation
from .sampler import SampleOutput, ScaleProgress, sample
from .draw import filter_logits_
from .schedules import SCHEDULE_NAMES, ScaleWindow, schedule_value
from .softcfg import SoftCFG
from .ssg import SSG
from .trace import GuidanceTrace

__all__ = [
    "Guider", "GuiderRuntime", "RunInfo", "ScaleRecord", "Term", "CFG", "IGG", "SoftCFG", "SSG", "GuidanceTrace",
    "Draw", "Edit", "Generation", "SampleOutput", "ScaleProgress", "sample", "filter_logits_", "SCHEDULE_NAMES",
    "ScaleWindow", "schedule_value",
]
