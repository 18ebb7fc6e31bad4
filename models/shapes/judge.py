"""The judge network moved to models/judge.py (both built-in models use it); its names stay importable here."""
from ..judge import Judge, frechet_distance, judge_images, load_judge

__all__ = ["Judge", "frechet_distance", "judge_images", "load_judge"]
