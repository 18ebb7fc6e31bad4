"""Offline code of the built-in scenes-128 model (models/scenes/): its procedural dataset (`data.py`) and its training
specification (`train.py`; the training functions are tools/shapes/train.py's, which take a `TrainingSpec`)."""
