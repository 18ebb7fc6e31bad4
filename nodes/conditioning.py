"""Class conditioning for VAR: the 1000 ImageNet-1k classes (standard index order) and the null class."""
from __future__ import annotations

import os
from dataclasses import dataclass

from comfy_api.latest import io

from .common import CondType

with open(os.path.join(os.path.dirname(__file__), "imagenet_classes.txt"), encoding="utf-8") as f:
    IMAGENET_CLASSES = [line.strip() for line in f if line.strip()]
NULL_CLASS = len(IMAGENET_CLASSES)
CLASS_LABELS = [f"{i}: {name}" for i, name in enumerate(IMAGENET_CLASSES)] + [f"{NULL_CLASS}: (null / unconditional)"]


@dataclass(frozen=True)
class ClassCondition:
    """Class ids; image i of a batch uses ids[i % len(ids)]."""

    ids: tuple[int, ...]


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
            display_name="ImageNet Class (VAR)",
            category="conditioning/scalewise",
            description=("Chooses what a class-conditional VAR model draws: one of the 1000 ImageNet classes "
                         f"(type to search), several classes for a batch, or the null class {NULL_CLASS} "
                         "(unconditional)."),
            inputs=[
                io.Combo.Input("class_name", options=CLASS_LABELS, default=CLASS_LABELS[207],
                               tooltip="The class to generate; type part of the name or the id to search."),
                io.Int.Input("class_id", default=-1, min=-1, max=NULL_CLASS,
                             tooltip=f"Overrides class_name when 0 or more ({NULL_CLASS} = null class); -1 = use "
                                     "class_name. Handy to drive the class from another node."),
                io.String.Input("batch_classes", default="", multiline=False,
                                tooltip="Optional comma-separated class ids for a batch, e.g. '207, 980, 88': image i "
                                        "gets entry i (cycling). Empty = every image uses the class above."),
            ],
            outputs=[CondType.Output(display_name="conditioning")],
        )

    @classmethod
    def validate_inputs(cls, class_name, class_id, batch_classes):
        # Declaring these inputs here replaces ComfyUI's own range checks for them: repeat those.
        if not -1 <= class_id <= NULL_CLASS:
            return f"class_id: {class_id} is out of range -1..{NULL_CLASS} (-1 = use class_name)"
        if class_name not in CLASS_LABELS:
            return f"class_name: {class_name!r} is not an ImageNet class label like '207: golden retriever'"
        try:
            ids = parse_class_list(batch_classes)
        except ValueError as e:
            return str(e)
        bad = [i for i in ids if not 0 <= i <= NULL_CLASS]
        return f"batch_classes: class id {bad[0]} is out of range 0..{NULL_CLASS}" if bad else True

    @classmethod
    def execute(cls, class_name, class_id, batch_classes) -> io.NodeOutput:
        ids = parse_class_list(batch_classes)
        if not ids:
            ids = [class_id if class_id >= 0 else int(class_name.split(":")[0])]
        return io.NodeOutput(ClassCondition(tuple(ids)))
