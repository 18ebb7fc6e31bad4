"""ComfyUI glue shared by the nodes: socket types, model folders, devices."""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import os
import shutil
import warnings

import comfy.model_management as mm
import folder_paths
import torch
from comfy_api.latest import io

from ..guidance.editing import InputNotice
from ..models.checkpoint import CheckpointWarning
from ..models.torch_compat import torch_defaults

# Own socket types: nothing of ours can be wired into the diffusion samplers, and vice versa.
ModelType = io.Custom("SCALEWISE_MODEL")
CondType = io.Custom("SCALEWISE_COND")
GuiderType = io.Custom("SCALEWISE_GUIDER")
TraceType = io.Custom("SCALEWISE_TRACE")

CATEGORY = "sampling/scalewise"
MODEL_FOLDERS = ("var", "switti")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def register_model_folder(name: str) -> None:
    """Add models/<name> without dropping paths a user's extra_model_paths.yaml already set."""
    default_dir = os.path.join(folder_paths.models_dir, name)
    wanted = set(folder_paths.supported_pt_extensions)
    if name in folder_paths.folder_names_and_paths:
        paths, exts = folder_paths.folder_names_and_paths[name]
        if default_dir not in paths:
            paths.append(default_dir)
        folder_paths.folder_names_and_paths[name] = (paths, set(exts) | wanted)
    else:
        folder_paths.folder_names_and_paths[name] = ([default_dir], wanted)


EXAMPLE_INPUTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_workflows",
                              "input")


def install_example_inputs() -> None:
    """Copy the editing examples' pictures (scalewise_*.png) into ComfyUI's input folder, where Load Image finds
    them; a file already there is never overwritten, and a read-only folder only costs a log line."""
    try:
        target = folder_paths.get_input_directory()
        for name in sorted(os.listdir(EXAMPLE_INPUTS)):
            if name.startswith("scalewise_") and name.endswith(".png") and \
                    not os.path.exists(os.path.join(target, name)):
                os.makedirs(target, exist_ok=True)
                shutil.copyfile(os.path.join(EXAMPLE_INPUTS, name), os.path.join(target, name))
    except OSError as e:
        logging.warning("[scalewise] the editing examples' pictures were not copied to the input folder: %s", e)


def model_files(folder: str) -> list[str]:
    """The files ComfyUI lists for models/<folder> (every configured path), as relative names."""
    return folder_paths.get_filename_list(folder)


def full_path(folder: str, name: str) -> str:
    """The absolute path of `name` in models/<folder>; FileNotFoundError naming the searched folders if absent."""
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        raise FileNotFoundError(f"'{name}' not found in models/{folder} "
                                f"(searched: {', '.join(folder_paths.get_folder_paths(folder))})")
    return path


def scale_window_stop(end_scale: int) -> int | None:
    """Widget convention: 0 = up to the last scale, negative = counted from the end, else exclusive end."""
    return None if end_scale == 0 else end_scale


def check_loader_inputs(folder: str, files: dict, dtype: str, hint: str, builtin=()):
    """Input check of the loaders: every file in models/<folder> (or one of the `builtin` entries, a collection of
    names), a known dtype (True or a message). None = linked, not known yet."""
    available = set(model_files(folder)) | set(builtin)
    for label, name in files.items():
        if name is not None and name not in available:
            return f"{label}: '{name}' is not in models/{folder} ({hint}, then refresh)"
    if dtype is not None and dtype != "auto" and dtype not in DTYPES:
        return f"dtype: {dtype!r} is not one of auto, {', '.join(DTYPES)}"
    return True


def pick_dtypes(choice: str, device, family: str) -> tuple[torch.dtype, torch.dtype]:
    """(transformer, VQ-VAE) precision of the loader's dtype widget. auto: bf16 for both where ComfyUI finds bf16
    usable on the device (model_management.should_use_bf16); on GPUs without bf16 (V100, T4, RTX 20xx) the VQ-VAE
    runs in fp32 (its decoder overflows fp16's 65504) and the transformer in fp16 for VAR (the official VAR demo
    samples under fp16 autocast) but fp32 for Switti (released for bf16; fp16 unverified); CPU: fp32."""
    if choice != "auto":
        return DTYPES[choice], DTYPES[choice]
    if mm.should_use_bf16(device):
        return torch.bfloat16, torch.bfloat16
    if mm.should_use_fp16(device):
        return (torch.float16 if family == "var" else torch.float32), torch.float32
    return torch.float32, torch.float32


# --- Inputs that arrive through links -------------------------------------------------------------------------
# ComfyUI checks a widget's min/max/options only for a value typed into the widget. A linked value (a core
# PrimitiveInt, a converted widget, any node's output) reaches validate_inputs as None and execute unchecked.
# So every node of the pack checks each input again when it runs, with the real value; a node's own
# validate_inputs (which replaces ComfyUI's checks for the inputs it declares) uses the same check and message.
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def _range(spec) -> str:
    low, high = ("" if v is None else v for v in (spec.min, spec.max))
    return f"allowed {low}..{high}"


def widget_problem(spec, value) -> str | None:
    """What is wrong with `value` for the declared widget input `spec` (io.Int/Float/String/Boolean/Combo.Input),
    or None. Names the input, the value and what was expected."""
    kind, name = spec.io_type, spec.id
    if kind == "INT":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name}: expected an integer, got {type(value).__name__} {value!r}"
    elif kind == "FLOAT":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{name}: expected a number, got {type(value).__name__} {value!r}"
        if not math.isfinite(value):
            return f"{name}: {value} is not a finite number ({_range(spec)})"
    elif kind == "STRING":
        return None if isinstance(value, str) else f"{name}: expected text, got {type(value).__name__} {value!r}"
    elif kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name}: expected true/false, got {type(value).__name__} {value!r}"
    elif kind == "COMBO":
        if value in spec.options:
            return None
        listed = ", ".join(map(repr, spec.options[:6])) + (" ..." if len(spec.options) > 6 else "")
        return f"{name}: {value!r} is not one of the {len(spec.options)} options ({listed})"
    else:
        return None
    if spec.min is not None and value < spec.min:
        return f"{name}: {value} is smaller than the min of {spec.min} ({_range(spec)})"
    if spec.max is not None and value > spec.max:
        return f"{name}: {value} is bigger than the max of {spec.max} ({_range(spec)})"
    return None


class ScalewiseNode(io.ComfyNode):
    """Base of the pack's nodes: every widget input is checked against its declared type, range and options,
    whether typed into the widget or linked. Nodes decorate `execute` with `checked_inputs`, add their own checks
    in `check_values` (which sees None for an input not known yet, and a combo value not yet checked against its
    options), and where they define validate_inputs return `cls.known_problem(...)` from it."""

    @classmethod
    def check_values(cls, values: dict) -> str | None:
        return None

    @classmethod
    def input_problem(cls, values: dict, known_only: bool) -> str | None:
        """The first problem of `values` (input name -> value); `known_only` skips None (linked, unknown yet).
        Types and ranges first, then the node's own checks (better messages for its combos), then the options."""
        specs = [spec for spec in cls.define_schema().inputs if spec.io_type in WIDGET_TYPES and spec.id in values]
        checks = [s for s in specs if s.io_type != "COMBO"]
        for spec in checks:
            value = values[spec.id]
            problem = None if known_only and value is None else widget_problem(spec, value)
            if problem:
                return problem
        problem = cls.check_values(values)
        if problem:
            return problem
        for spec in specs:
            value = values[spec.id]
            problem = None if spec in checks or known_only and value is None else widget_problem(spec, value)
            if problem:
                return problem
        return None

    @classmethod
    def known_problem(cls, **values):
        """For validate_inputs: True or the first problem of the values known before the run."""
        return cls.input_problem(values, known_only=True) or True


def checked_inputs(execute):
    """Decorator for ScalewiseNode.execute: checks the real input values first (ValueError naming the input), then
    runs the node with torch's own defaults where another pack changed them (models.torch_compat.torch_defaults)."""
    signature = inspect.signature(execute)

    @functools.wraps(execute)
    def run(cls, *args, **kwargs):
        bound = signature.bind(cls, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        values.pop(next(iter(signature.parameters)))
        problem = cls.input_problem(values, known_only=False)
        if problem:
            raise ValueError(problem)
        with torch_defaults():  # whatever other packs set process-wide (README, "Other packs' patches")
            return execute(cls, *args, **kwargs)
    return run


@contextlib.contextmanager
def _notes(node: str, categories: tuple[type[Warning], ...]):
    """Collects the warnings of `categories` raised inside the block: logged once each and yielded as a list (in
    order, without repeats) for the node's `ui` ("scalewise_info"). Other warnings pass through."""
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        for category in categories:
            warnings.simplefilter("always", category)
        yield notes
    for w in caught:
        if issubclass(w.category, categories):
            if str(w.message) not in notes:
                notes.append(str(w.message))
                logging.warning("%s: %s", node, w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def checkpoint_notes(node: str):
    """The CheckpointWarnings of a load (a file name, folder or config.json that disagrees with the weights, which
    win), as `_notes` collects them."""
    return _notes(node, (CheckpointWarning,))


def input_notes(node: str):
    """The InputNotices of a run (inputs that are legal but probably not meant, e.g. a mask that marks nothing),
    as `_notes` collects them."""
    return _notes(node, (InputNotice,))


def info_ui(notes: list[str], **inputs) -> dict:
    """The node's `ui` payload for its notes, which the page (web/js/scalewise.js) shows on the node:
    {"scalewise_info": notes, "scalewise_info_for": [inputs]}. Sent also without notes, so the page clears those of
    an earlier run; `inputs` (the widget values the notes are about, e.g. var_name, vae_name, dtype) let the page
    hide notes once the node's widgets name other files (ComfyUI does not re-run a cached loader, so no message
    would say so)."""
    return {"scalewise_info": list(notes), "scalewise_info_for": [inputs]}
