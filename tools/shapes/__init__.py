"""Offline code of the built-in tiny-shapes model (models/shapes/): its procedural dataset (`data.py`) and training
(`train.py`). The judge network (models/judge.py, weights models/shapes/shapes_judge.safetensors) is part of
the runtime since the Guidance Sweep node segments the built-in model's images with it."""
from scalewise.models.shapes import JUDGE_FILE  # where train_shapes.py writes the judge

__all__ = ["JUDGE_FILE"]
