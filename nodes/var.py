"""VAR's nodes: the loader (an official VAR transformer + its VQ-VAE, or the built-in tiny-shapes model, managed by
ComfyUI's model management) and the class picker (the 1000 ImageNet-1k classes in standard index order and the null
class, then the classes of the built-in tiny-shapes model)."""
from __future__ import annotations

import os

import comfy.model_management as mm
import comfy.model_patcher
from comfy.cli_args import args
from comfy_api.latest import io

from ..models import ClassCondition, load_var
from ..models.shapes import BUILTIN_NAME, CLASS_NAMES, load_shapes_model
from ..models.var import IMAGENET, SHAPES
from .common import (DTYPES, CondType, ModelType, ScalewiseNode, check_loader_inputs, checked_inputs,
                     checkpoint_notes, full_path, info_ui, model_files, pick_dtypes)
from .features import aliases, expert

VAE_FILE = "vae_ch160v4096z32.pth"


def var_loader_options(files: list[str]) -> tuple[list[str], list[str]]:
    """(var_name options, vae_name options) for the files of models/var: the files (VQ-VAEs first for vae_name),
    then the built-in model, which is therefore the only and default entry while models/var is empty."""
    files = [f for f in files if f != BUILTIN_NAME]
    vae_files = sorted(files, key=lambda f: (not f.startswith("vae"), f))
    return [*files, BUILTIN_NAME], [*vae_files, BUILTIN_NAME]


def check_builtin_pair(var_name: str, vae_name: str):
    """The built-in transformer and VQ-VAE only work together (True or a message naming vae_name)."""
    if var_name == BUILTIN_NAME and vae_name != BUILTIN_NAME:
        return (f"vae_name: '{vae_name}' cannot decode the built-in model (var_name '{BUILTIN_NAME}'): its tokens "
                f"come from its own tiny VQ-VAE, so set vae_name to '{BUILTIN_NAME}' too")
    if vae_name == BUILTIN_NAME and var_name != BUILTIN_NAME:
        return (f"vae_name: '{BUILTIN_NAME}' is the built-in model's own VQ-VAE and only decodes the built-in "
                f"model, not var_name '{var_name}': pick the VQ-VAE file of that transformer (e.g. {VAE_FILE}), "
                f"or set var_name to '{BUILTIN_NAME}' too")
    return True


class VARLoader(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        files, vae_files = var_loader_options(model_files("var"))
        return io.Schema(
            node_id="ScalewiseVARLoader",
            display_name="Load VAR Model",
            category="loaders/scalewise",
            **aliases("VAR", "visual autoregressive", "load VAR", "checkpoint", "tiny shapes", "next-scale"),
            description=(
                "Loads an official VAR checkpoint (var_d16/20/24/30.pth at 256 px, var_d36.pth at 512 px) with its "
                f"VQ-VAE {VAE_FILE}, both from models/var, or the built-in '{BUILTIN_NAME}' model: a tiny VAR "
                f"shipped with the pack (no download, 64 px, {len(CLASS_NAMES)} shape classes: "
                f"{', '.join(CLASS_NAMES)}); choose it for both var_name and vae_name. The resolution is fixed by "
                "the checkpoint: VAR was trained on one scale schedule, and other sizes give noise."),
            inputs=[
                io.Combo.Input("var_name", options=files,
                               tooltip=("The VAR transformer (var_d16.pth … var_d36.pth; .safetensors preferred), "
                                        f"or '{BUILTIN_NAME}' (the tiny shapes model that ships with the pack; "
                                        "the only entry while models/var is empty).")),
                io.Combo.Input("vae_name", options=vae_files,
                               tooltip=(f"The multi-scale VQ-VAE that decodes VAR's tokens: {VAE_FILE} for the "
                                        f"official models, '{BUILTIN_NAME}' for the built-in model.")),
                io.Combo.Input("dtype", options=["auto", *DTYPES], default="auto",
                               tooltip="Weight precision. auto: bf16 on GPUs with bf16; on GPUs without it (V100, "
                                       "T4, RTX 20xx) fp16 for the transformer and fp32 for the VQ-VAE (fp16 "
                                       "overflows in its decoder); fp32 on CPU.",
                               **expert()),
            ],
            outputs=[ModelType.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, var_name, vae_name, dtype):
        return cls.known_problem(var_name=var_name, vae_name=vae_name, dtype=dtype)

    @classmethod
    def check_values(cls, values):
        files = {"var_name": values["var_name"], "vae_name": values["vae_name"]}
        ok = check_loader_inputs("var", files, values["dtype"],
                                 f"put the official files there, e.g. var_d16.pth and {VAE_FILE}, or choose "
                                 f"'{BUILTIN_NAME}'", builtin=BUILTIN_NAME)
        if ok is True and None not in files.values():
            ok = check_builtin_pair(*files.values())
        return None if ok is True else ok

    @classmethod
    @checked_inputs
    def execute(cls, var_name, vae_name, dtype) -> io.NodeOutput:
        device = mm.get_torch_device()
        precision, vae_precision = pick_dtypes(dtype, device, "var")
        if var_name == BUILTIN_NAME:
            model, notes = load_shapes_model(device="cpu", dtype=precision, vae_dtype=vae_precision), []
        else:
            with checkpoint_notes("Load VAR Model") as notes:
                model = load_var(full_path("var", var_name), full_path("var", vae_name), device="cpu",
                                 dtype=precision, vae_dtype=vae_precision, mmap=not args.disable_mmap)
        model.source_name = var_name          # named in the sampler's errors
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=mm.unet_offload_device())
        return io.NodeOutput(patcher, ui=info_ui(notes))


with open(os.path.join(os.path.dirname(__file__), "imagenet_classes.txt"), encoding="utf-8") as f:
    IMAGENET_CLASSES = [line.strip() for line in f if line.strip()]
NULL_CLASS = len(IMAGENET_CLASSES)
SHAPES_PREFIX = f"{SHAPES} "
IMAGENET_LABELS = [f"{i}: {name}" for i, name in enumerate(IMAGENET_CLASSES)] + \
    [f"{NULL_CLASS}: (null / unconditional)"]
SHAPES_LABELS = [f"{SHAPES_PREFIX}{i}: {name}" for i, name in enumerate(CLASS_NAMES)] + \
    [f"{SHAPES_PREFIX}{len(CLASS_NAMES)}: (null / unconditional)"]
CLASS_LABELS = IMAGENET_LABELS + SHAPES_LABELS


def parse_label(label: str) -> tuple[str, int]:
    """'207: golden retriever' -> ("imagenet", 207); 'tiny-shapes 5: star' -> ("tiny-shapes", 5)."""
    if label.startswith(SHAPES_PREFIX):
        return SHAPES, int(label[len(SHAPES_PREFIX):].split(":")[0])
    return IMAGENET, int(label.split(":")[0])


def parse_class_list(text: str) -> list[int]:
    """'207, 980; 88: pizza' -> [207, 980, 88]: comma- or semicolon-separated ids, each optionally followed by ':
    name'. ValueError naming the entry that is not an id (ranges are checked by the model)."""
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
    def validate_inputs(cls, class_name, batch_classes):
        return cls.known_problem(class_name=class_name, batch_classes=batch_classes)

    @classmethod
    def check_values(cls, values):
        # Raw ids cannot know the model yet: the widest range (ImageNet's) passes here, the sampler checks them
        # against the model. None = linked, not known before the run.
        class_name, batch_classes = values["class_name"], values["batch_classes"]
        if class_name is not None and class_name not in CLASS_LABELS:
            return (f"class_name: {class_name!r} is not a class label like '207: golden retriever' (ImageNet) or "
                    f"'{SHAPES_LABELS[5]}' (built-in model)")
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
