"""Class conditioning for VAR: the 1000 ImageNet-1k classes (standard index order) and the null class, then the
classes of the built-in tiny-shapes model."""
from __future__ import annotations

import os
from dataclasses import dataclass

from comfy_api.latest import io

from ..models.shapes import BUILTIN_NAME, CLASS_NAMES
from .common import CondType

with open(os.path.join(os.path.dirname(__file__), "imagenet_classes.txt"), encoding="utf-8") as f:
    IMAGENET_CLASSES = [line.strip() for line in f if line.strip()]
NULL_CLASS = len(IMAGENET_CLASSES)
IMAGENET, SHAPES = "imagenet", "tiny-shapes"          # the class sets (ClassCondition.class_set)
SHAPES_PREFIX = f"{SHAPES} "
IMAGENET_LABELS = [f"{i}: {name}" for i, name in enumerate(IMAGENET_CLASSES)] + \
    [f"{NULL_CLASS}: (null / unconditional)"]
SHAPES_LABELS = [f"{SHAPES_PREFIX}{i}: {name}" for i, name in enumerate(CLASS_NAMES)] + \
    [f"{SHAPES_PREFIX}{len(CLASS_NAMES)}: (null / unconditional)"]
CLASS_LABELS = IMAGENET_LABELS + SHAPES_LABELS


@dataclass(frozen=True)
class ClassCondition:
    """Class ids; image i of a batch uses ids[i % len(ids)]. `class_set` is the class list the ids index
    ("imagenet" or "tiny-shapes", from the class_name label), None for raw ids (class_id, batch_classes);
    `label` is the chosen class_name label, for error messages."""

    ids: tuple[int, ...]
    class_set: str | None = None
    label: str | None = None


def model_class_set(class_names) -> str:
    """The class set of a VARModel from its `class_names` (None = ImageNet)."""
    if class_names is None:
        return IMAGENET
    if tuple(class_names) == tuple(CLASS_NAMES):
        return SHAPES
    return "custom"


def parse_label(label: str) -> tuple[str, int]:
    """'207: golden retriever' -> ("imagenet", 207); 'tiny-shapes 5: star' -> ("tiny-shapes", 5)."""
    if label.startswith(SHAPES_PREFIX):
        return SHAPES, int(label[len(SHAPES_PREFIX):].split(":")[0])
    return IMAGENET, int(label.split(":")[0])


def parse_class_list(text: str) -> list[int]:
    ids = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        head = part.split(":")[0].strip()
        if not head.lstrip("-").isdigit():
            raise ValueError(f"classes: {part!r} is not a class id (write ids like '207, 980' or '207: golden retriever')")
        ids.append(int(head))
    return ids


class ImageNetClass(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseImageNetClass",
            display_name="Class (VAR)",
            category="conditioning/scalewise",
            description=("Chooses what a class-conditional VAR model draws: one of the 1000 ImageNet classes "
                         f"(official VAR models; null class {NULL_CLASS} = unconditional) or, listed after them, one "
                         f"of the {len(CLASS_NAMES)} classes of the built-in '{BUILTIN_NAME}' model (entries "
                         f"'tiny-shapes N: name': {', '.join(CLASS_NAMES)}); type to search. The class must belong "
                         "to the loaded model: the sampler refuses an ImageNet class for the built-in model and a "
                         "tiny-shapes class for an ImageNet model. Several class ids for a batch also work."),
            inputs=[
                io.Combo.Input("class_name", options=CLASS_LABELS, default=CLASS_LABELS[207],
                               tooltip=("The class to generate; type part of the name or the id to search. "
                                        "'N: name' = ImageNet (official VAR models), 'tiny-shapes N: name' = the "
                                        f"built-in '{BUILTIN_NAME}' model.")),
                io.Int.Input("class_id", default=-1, min=-1, max=NULL_CLASS,
                             tooltip=f"Overrides class_name when 0 or more ({NULL_CLASS} = ImageNet null class; the "
                                     f"built-in model has ids 0..{len(CLASS_NAMES) - 1}, null {len(CLASS_NAMES)}); "
                                     "-1 = use class_name. Handy to drive the class from another node."),
                io.String.Input("batch_classes", default="", multiline=False,
                                tooltip="Optional comma-separated class ids for a batch, e.g. '207, 980, 88': image i "
                                        "gets entry i (cycling). Empty = every image uses the class above. The ids "
                                        "index the loaded model's classes (ImageNet, or the built-in model's "
                                        f"0..{len(CLASS_NAMES) - 1})."),
            ],
            outputs=[CondType.Output(display_name="conditioning")],
        )

    @classmethod
    def validate_inputs(cls, class_name, class_id, batch_classes):
        # Declaring these inputs here replaces ComfyUI's own range checks for them: repeat those. Raw ids cannot
        # know the model yet: the widest range (ImageNet's) passes here, the sampler checks them against the model.
        if not -1 <= class_id <= NULL_CLASS:
            return f"class_id: {class_id} is out of range -1..{NULL_CLASS} (-1 = use class_name)"
        if class_name not in CLASS_LABELS:
            return (f"class_name: {class_name!r} is not a class label like '207: golden retriever' (ImageNet) or "
                    f"'{SHAPES_LABELS[5]}' (built-in model)")
        try:
            ids = parse_class_list(batch_classes)
        except ValueError as e:
            return str(e)
        bad = [i for i in ids if not 0 <= i <= NULL_CLASS]
        return f"batch_classes: class id {bad[0]} is out of range 0..{NULL_CLASS}" if bad else True

    @classmethod
    def execute(cls, class_name, class_id, batch_classes) -> io.NodeOutput:
        ids = parse_class_list(batch_classes)
        if ids:
            return io.NodeOutput(ClassCondition(tuple(ids)))
        if class_id >= 0:
            return io.NodeOutput(ClassCondition((class_id,)))
        class_set, index = parse_label(class_name)
        return io.NodeOutput(ClassCondition((index,), class_set, class_name))
