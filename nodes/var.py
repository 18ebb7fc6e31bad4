"""VAR's nodes: the loader (an official VAR transformer + its VQ-VAE, or one of the built-in models, managed by
ComfyUI's model management) and the class picker (the 1000 ImageNet-1k classes in standard index order and the null
class, then the classes of each built-in model: tiny-shapes, scenes-128)."""
from __future__ import annotations

import os
import re

from comfy.cli_args import args
from comfy_api.latest import io

from ..models import ClassCondition, load_var_or_var_clip
from ..models.builtin import BUILTIN_MODELS, SCENES_MODEL, SHAPES_MODEL, builtin_by_name
from ..models.var import IMAGENET
from .common import (DTYPES, CondType, ModelType, ScalewiseNode, check_loader_inputs, checked_inputs, full_path,
                     load_model, model_files)
from .features import aliases, expert

VAE_FILE = "vae_ch160v4096z32.pth"


BUILTIN_NAMES = [m.loader_name for m in BUILTIN_MODELS]
BUILTIN_NAME = SHAPES_MODEL.loader_name  # the first built-in entry: the default while models/var is empty


def var_loader_options(files: list[str]) -> tuple[list[str], list[str]]:
    """(var_name options, vae_name options) for the files of models/var: the files (VQ-VAEs first for vae_name),
    then the built-in models (tiny-shapes first, the default while models/var is empty, then scenes-128)."""
    files = [f for f in files if f not in BUILTIN_NAMES]
    vae_files = sorted(files, key=lambda f: (not f.startswith("vae"), f))
    return [*files, *BUILTIN_NAMES], [*vae_files, *BUILTIN_NAMES]


def check_builtin_pair(var_name: str, vae_name: str):
    """A built-in transformer and its own VQ-VAE only work together (True or a message naming vae_name)."""
    var_builtin, vae_builtin = builtin_by_name(var_name), builtin_by_name(vae_name)
    if var_builtin is not None and vae_builtin is not var_builtin:
        return (f"vae_name: '{vae_name}' cannot decode the built-in model (var_name '{var_name}'): its tokens "
                f"come from its own small VQ-VAE, so set vae_name to '{var_name}' too")
    if vae_builtin is not None and var_builtin is not vae_builtin:
        return (f"vae_name: '{vae_name}' is the built-in model's own VQ-VAE and only decodes that built-in "
                f"model, not var_name '{var_name}': pick the VQ-VAE file of that transformer (e.g. {VAE_FILE}), "
                f"or set var_name to '{vae_name}' too")
    return True


def _builtin_summaries() -> str:
    return "; ".join(f"'{m.loader_name}' ({m.summary}; {len(m.class_names)} classes: {', '.join(m.class_names)})"
                     for m in BUILTIN_MODELS)


class VARLoader(ScalewiseNode):
    file_inputs = ("var_name", "vae_name")

    @classmethod
    def define_schema(cls):
        files, vae_files = var_loader_options(model_files("var"))
        return io.Schema(
            node_id="ScalewiseVARLoader",
            display_name="Load VAR Model",
            category="loaders/scalewise",
            **aliases("VAR", "visual autoregressive", "load VAR", "checkpoint", "tiny shapes", "next-scale"),
            description=(
                "Loads an official VAR checkpoint (var_d16/20/24/30.pth at 256 px, var_d36.pth at 512 px) or the "
                "VAR-CLIP text-to-image model (its ar-ckpt-last.pth, or the model alone; told apart by its "
                f"weights; prompts from VAR-CLIP Text Encode) with the VQ-VAE {VAE_FILE}, all from models/var, or "
                "one of the small VARs built into the pack (no "
                f"download): {_builtin_summaries()}; choose the same built-in entry for both var_name and "
                "vae_name. The resolution is fixed by the checkpoint: VAR was trained on one scale schedule, and "
                "other sizes give noise."),
            inputs=[
                io.Combo.Input("var_name", options=files,
                               tooltip=("The VAR transformer (var_d16.pth … var_d36.pth, or VAR-CLIP's "
                                        "ar-ckpt-last.pth; .safetensors preferred), "
                                        f"or a built-in model: '{BUILTIN_NAME}' (the tiny shapes model; the "
                                        f"default while models/var is empty) or '{SCENES_MODEL.loader_name}'.")),
                io.Combo.Input("vae_name", options=vae_files,
                               tooltip=(f"The multi-scale VQ-VAE that decodes VAR's tokens: {VAE_FILE} for the "
                                        "official models, the same built-in entry as var_name for a built-in "
                                        "model.")),
                io.Combo.Input("dtype", options=["auto", *DTYPES], default="auto",
                               tooltip="Weight precision. auto: bf16 on GPUs with bf16; on GPUs without it (V100, "
                                       "T4, RTX 20xx) fp16 for the transformer and fp32 for the VQ-VAE (fp16 "
                                       "overflows in its decoder); fp32 on CPU.",
                               **expert()),
            ],
            outputs=[ModelType.Output(display_name="model")],
        )

    @classmethod
    # every combo, each defaulting to None (a missing input: ComfyUI's own message): see ScalewiseNode
    def validate_inputs(cls, var_name=None, vae_name=None, dtype=None):
        return cls.known_problem(var_name=var_name, vae_name=vae_name, dtype=dtype)

    @classmethod
    def check_values(cls, values):
        files = {"var_name": values["var_name"], "vae_name": values["vae_name"]}
        ok = check_loader_inputs("var", files, values.get("dtype"),
                                 f"put the official files there, e.g. var_d16.pth and {VAE_FILE}, or choose "
                                 f"'{BUILTIN_NAME}'", builtin=BUILTIN_NAMES)
        if ok is True and None not in files.values():
            ok = check_builtin_pair(*files.values())
        return None if ok is True else ok

    @classmethod
    @checked_inputs
    def execute(cls, var_name, vae_name, dtype) -> io.NodeOutput:
        builtin = builtin_by_name(var_name)

        def load(precision):
            if builtin is not None:
                return builtin.load(device="cpu", dtype=precision.transformer, vae_dtype=precision.vae_load_dtype)
            return load_var_or_var_clip(full_path("var", var_name), full_path("var", vae_name), device="cpu",
                                        dtype=precision.transformer, vae_dtype=precision.vae_load_dtype,
                                        mmap=not args.disable_mmap)
        return load_model("Load VAR Model", "var", load, var_name,
                          dict(var_name=var_name, vae_name=vae_name, dtype=dtype), file_notes=builtin is None)


with open(os.path.join(os.path.dirname(__file__), "imagenet_classes.txt"), encoding="utf-8") as f:
    IMAGENET_CLASSES = [line.strip() for line in f if line.strip()]
NULL_CLASS = len(IMAGENET_CLASSES)
IMAGENET_LABELS = [f"{i}: {name}" for i, name in enumerate(IMAGENET_CLASSES)] + \
    [f"{NULL_CLASS}: (null / unconditional)"]
SHAPES_LABELS = SHAPES_MODEL.class_labels()
BUILTIN_LABELS = [label for m in BUILTIN_MODELS for label in m.class_labels()]  # appended after ImageNet's, in order
CLASS_LABELS = IMAGENET_LABELS + BUILTIN_LABELS


def parse_label(label: str) -> tuple[str, int]:
    """'207: golden retriever' -> ("imagenet", 207); 'tiny-shapes 5: star' -> ("tiny-shapes", 5); 'scenes-128 5:
    star' -> ("scenes-128", 5). Raises ValueError when the id is not an integer."""
    for model in BUILTIN_MODELS:
        prefix = f"{model.class_set} "
        if label.startswith(prefix):
            return model.class_set, int(label[len(prefix):].split(":")[0])
    return IMAGENET, int(label.split(":")[0])


def parse_class_list(text: str) -> list[int]:
    """'207, 980; 88: pizza' -> [207, 980, 88]: ids separated by commas, semicolons or line breaks (a list from a
    multiline text node, one per line), each optionally followed by ': name'. ValueError naming the entry that is not
    an id (ranges are checked by the model)."""
    ids = []
    for part in re.split(r"[,;\r\n]", text):
        part = part.strip()
        if not part:
            continue
        head = part.split(":")[0].strip()
        if not head.lstrip("-").isdigit():
            raise ValueError(f"classes: {part!r} is not a class id (write ids like '207, 980' or '207: golden retriever')")
        ids.append(int(head))
    return ids


class ImageNetClass(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseImageNetClass",
            display_name="Class (VAR)",
            category="conditioning/scalewise",
            **aliases("VAR", "ImageNet", "class", "label", "class conditioning", "tiny shapes"),
            description=("Chooses what a class-conditional VAR model draws: one of the 1000 ImageNet classes "
                         f"(official VAR models; null class {NULL_CLASS} = unconditional) or, listed after them, one "
                         "of the classes of a built-in model ("
                         + "; ".join(f"'{m.class_set} N: name' for '{m.loader_name}': {', '.join(m.class_names)}"
                                     for m in BUILTIN_MODELS)
                         + "); type to search. The class must belong to the loaded model: the sampler refuses an "
                         "ImageNet class for a built-in model, a built-in model's class for an ImageNet model or "
                         "for the other built-in model. Several class ids for a batch also work."),
            inputs=[
                io.Combo.Input("class_name", options=CLASS_LABELS, default=CLASS_LABELS[207],
                               tooltip=("The class to generate; type part of the name or the id to search. "
                                        "'N: name' = ImageNet (official VAR models), 'tiny-shapes N: name' and "
                                        "'scenes-128 N: name' = the built-in models.")),
                io.Int.Input("class_id", default=-1, min=-1, max=NULL_CLASS,
                             tooltip=f"Overrides class_name when 0 or more ({NULL_CLASS} = ImageNet null class; the "
                                     f"built-in models have ids 0..{len(SHAPES_MODEL.class_names) - 1}, null "
                                     f"{len(SHAPES_MODEL.class_names)}); "
                                     "-1 = use class_name. Handy to drive the class from another node."),
                io.String.Input("batch_classes", default="", multiline=False,
                                tooltip="Optional comma-separated class ids for a batch, e.g. '207, 980, 88': image i "
                                        "gets entry i (cycling). Empty = every image uses the class above. The ids "
                                        "index the loaded model's classes (ImageNet, or a built-in model's "
                                        f"0..{len(SHAPES_MODEL.class_names) - 1})."),
            ],
            outputs=[CondType.Output(display_name="conditioning")],
        )

    @classmethod
    def validate_inputs(cls, class_name=None, batch_classes=None):
        return cls.known_problem(class_name=class_name, batch_classes=batch_classes)

    @classmethod
    def check_values(cls, values):
        # Raw ids cannot know the model yet: the widest range (ImageNet's) passes here, the sampler checks them
        # against the model. None = linked, not known before the run.
        class_name, batch_classes = values["class_name"], values["batch_classes"]
        if class_name is not None and class_name not in CLASS_LABELS:
            return (f"class_name: {class_name!r} is not a class label like '207: golden retriever' (ImageNet) or "
                    f"'{SHAPES_LABELS[5]}' (a built-in model's)")
        if batch_classes is None:
            return None
        try:
            ids = parse_class_list(batch_classes)
        except ValueError as e:
            return str(e)
        bad = [i for i in ids if not 0 <= i <= NULL_CLASS]
        return f"batch_classes: class id {bad[0]} is out of range 0..{NULL_CLASS}" if bad else None

    @classmethod
    @checked_inputs
    def execute(cls, class_name, class_id, batch_classes) -> io.NodeOutput:
        ids = parse_class_list(batch_classes)
        if ids:
            return io.NodeOutput(ClassCondition(tuple(ids)))
        if class_id >= 0:
            return io.NodeOutput(ClassCondition((class_id,)))
        class_set, index = parse_label(class_name)
        return io.NodeOutput(ClassCondition((index,), class_set, class_name))
