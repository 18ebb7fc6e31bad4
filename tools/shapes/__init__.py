"""Offline code of the built-in tiny-shapes model (models/shapes/): its procedural dataset (`data.py`), training
(`train.py`) and the judge network that scores generated images (`judge.py`, weights `shapes_judge.safetensors`)."""
import os

JUDGE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shapes_judge.safetensors")
