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
from dataclasses import dataclass

import comfy.cli_args as cli_args
import comfy.model_management as mm
import comfy.model_patcher
import folder_paths
import torch
from comfy.cli_args import args
from comfy_api.latest import io

from ..guidance.editing import InputNotice
from ..models.checkpoint import CheckpointWarning, is_shard_name, shard_index_name
from ..models.torch_compat import torch_defaults

# Own socket types: nothing of ours can be wired into the diffusion samplers, and vice versa.
ModelType = io.Custom("SCALEWISE_MODEL")
CondType = io.Custom("SCALEWISE_COND")
GuiderType = io.Custom("SCALEWISE_GUIDER")
TraceType = io.Custom("SCALEWISE_TRACE")

CATEGORY = "sampling/scalewise"
MODEL_FOLDERS = ("var", "switti", "infinity")
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


def _separators(name: str) -> str:
    return name.replace("\\", "/")


def listed_name(folder: str, name: str, builtin=()) -> str | None:
    """The entry of models/<folder>'s listing (or of `builtin`) that `name` means, or None. ComfyUI lists a file in
    a sub-folder with the host's separator (`Switti\\model.safetensors` on Windows, `Switti/model.safetensors`
    elsewhere), and a workflow carries the separator of the system it was saved on, so a name that differs from
    a listed one only in its separators (`\\` or `/`) means that file; an exact entry always wins (on Linux a
    backslash is a legal character of a file name)."""
    if name in builtin:
        return name
    files = model_files(folder)
    if name in files:
        return name
    wanted = _separators(name)
    return next((f for f in files if _separators(f) == wanted), None)


def sharded_entries(folder: str) -> list[str]:
    """models/<folder>'s files with each Hugging Face sharded checkpoint listed once, as its index JSON
    (`flan-t5-xl/model.safetensors.index.json`, `infinity_8b_weights/model.safetensors.index.json`: the whole
    checkpoint, read shard by shard) in place of its shards; shards without an index beside them stay listed."""
    out = []
    for name in model_files(folder):
        entry = name
        if is_shard_name(os.path.basename(name)):
            full = folder_paths.get_full_path(folder, name)
            index = shard_index_name(name)
            if full is not None and os.path.isfile(os.path.join(os.path.dirname(full), index)):
                entry = os.path.join(os.path.dirname(name), index)
        if entry not in out:
            out.append(entry)
    return out


def entry_path(folder: str, name: str, input_name: str) -> str:
    """The absolute path of a `sharded_entries` entry (a file or an index JSON ComfyUI does not list; a name saved on
    Windows, with `\\`, means the same file, as for the other loaders). FileNotFoundError naming `input_name` and the
    searched folders."""
    folders = folder_paths.get_folder_paths(folder)
    for candidate in dict.fromkeys((name, name.replace("\\", "/"))):
        for base in folders:
            path = os.path.abspath(os.path.join(base, os.path.relpath(os.path.join("/", candidate), "/")))
            if os.path.isfile(path):
                return path
    raise FileNotFoundError(f"{input_name}: '{name}' not found in models/{folder} (searched: {', '.join(folders)})")


def full_path(folder: str, name: str) -> str:
    """The absolute path of `name` in models/<folder> (separators as in `listed_name`); FileNotFoundError naming the
    searched folders if absent."""
    path = folder_paths.get_full_path(folder, listed_name(folder, name) or name)
    if path is None:
        raise FileNotFoundError(f"'{name}' not found in models/{folder} "
                                f"(searched: {', '.join(folder_paths.get_folder_paths(folder))})")
    return path


def check_loader_inputs(folder: str, files: dict, dtype: str, hint: str, builtin=(), dtypes=tuple(DTYPES)):
    """Input check of the loaders: every file in models/<folder> (or one of the `builtin` entries, a collection of
    names; separators as in `listed_name`), a known dtype (auto or one of `dtypes`; True or a message). None =
    linked, not known yet."""
    for label, name in files.items():
        if name is not None and listed_name(folder, name, builtin) is None:
            return f"{label}: '{name}' is not in models/{folder} ({hint}, then refresh)"
    if dtype is not None and dtype != "auto" and dtype not in dtypes:
        return f"dtype: {dtype!r} is not one of auto, {', '.join(dtypes)}"
    return True



def check_entry(folder: str, label: str, name: str | None, hint: str) -> str | None:
    """Input check of a loader whose choices are `sharded_entries(folder)` (a sharded checkpoint listed as its index
    JSON): None when `name` is listed, is a file of models/<folder> ComfyUI does not list (`entry_path`) or is not
    known yet (None: linked), else the message naming `label`, `name`, the folder and `hint` (as
    `check_loader_inputs`'s)."""
    if name is not None and name not in sharded_entries(folder):
        try:
            entry_path(folder, name, label)
        except FileNotFoundError:
            return f"{label}: '{name}' is not in models/{folder} ({hint}, then refresh)"
    return None

# --- Precision: the dtype widget and ComfyUI's launch flags ----------------------------------------------------
# ComfyUI's precision flags (comfy/cli_args.py): the "unet" group sets the diffusion model's dtype (for the pack:
# the transformer), the "vae" group the VAE's (the VQ-VAE); --force-fp16 turns on --fp16-unet, --force-fp32 makes
# model_management's device checks answer "no half precision". Each group is mutually exclusive.
UNET_FLAGS = ("fp32_unet", "fp64_unet", "bf16_unet", "fp16_unet", "fp8_e4m3fn_unet", "fp8_e5m2_unet",
              "fp8_e8m0fnu_unet")
VAE_FLAGS = ("fp16_vae", "bf16_vae", "fp32_vae")
# What the pack's plain torch layers compute in (they run in their weights' dtype; float8 has no such kernels).
COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def flag_name(attribute: str) -> str:
    """ComfyUI's spelling of a flag from its `args` attribute: fp8_e4m3fn_unet -> --fp8_e4m3fn-unet, cpu_vae ->
    --cpu-vae, force_fp16 -> --force-fp16."""
    head, _, tail = attribute.rpartition("_")
    return f"--{head}-{tail}"


def _flag_set(attributes) -> str | None:
    return next((a for a in attributes if getattr(args, a, False)), None)  # a flag an older core lacks: unset


def unet_flag() -> str | None:
    """The `args` attribute of the "unet" precision flag ComfyUI was started with (e.g. fp8_e4m3fn_unet), or None;
    --force-fp16 is reported as force_fp16."""
    flag = _flag_set(UNET_FLAGS)
    return "force_fp16" if flag == "fp16_unet" and getattr(args, "force_fp16", False) else flag


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


@dataclass(frozen=True)
class Precision:
    """What a loader loads in (`pick_dtypes`). transformer: the transformer's weights. vae: the VQ-VAE's, all of it,
    or under --cpu-vae only its quantiser (codebook and phi convs, used at every scale with the transformer).
    image_device / image_dtype: under --cpu-vae where and in what the encoder and decoder run (None: with the rest).
    notes: what the node says about flags it could not follow or that `dtype` overrode (for `scalewise_info`)."""

    transformer: torch.dtype
    vae: torch.dtype
    image_device: torch.device | None = None
    image_dtype: torch.dtype | None = None
    notes: tuple[str, ...] = ()

    @property
    def vae_load_dtype(self) -> torch.dtype:
        """The dtype to load the VQ-VAE file in (`place_vqvae` then casts the parts): the encoder/decoder's under
        --cpu-vae, so they are not rounded through the quantiser's half precision."""
        return self.image_dtype if self.image_device is not None else self.vae


def _auto_transformer(device, family: str) -> torch.dtype:
    """The pack's own rule without a unet flag: bf16 where ComfyUI finds it usable; on GPUs without bf16 fp16 for VAR
    (the official VAR demo samples under fp16 autocast), fp32 for Switti (released for bf16; fp16 unverified)."""
    if mm.should_use_bf16(device):
        return torch.bfloat16
    if mm.should_use_fp16(device):
        return torch.float16 if family == "var" else torch.float32
    return torch.float32


def pick_dtypes(choice: str, device, family: str) -> Precision:
    """The precision of the loader's dtype widget (`choice`: auto, bf16, fp16, fp32) on `device` for `family` (var,
    switti), following ComfyUI's launch flags.

    auto: the transformer follows the "unet" flags through core's `model_management.unet_dtype` (--fp32-unet,
    --fp64-unet, --bf16-unet, --fp16-unet; --force-fp16 = --fp16-unet); a flag asking for a dtype the transformer
    cannot compute in (the fp8 storage flags) gives the dtype auto picks without it, and a note. Without a unet
    flag: `_auto_transformer`. The VQ-VAE follows the "vae" flags through core's `model_management.vae_dtype`
    (--fp16-vae, --bf16-vae, --fp32-vae), else bf16 where ComfyUI finds bf16 usable, else fp32: never fp16 without
    a flag (its decoder overflows fp16's 65504). --force-fp32: fp32 wherever no flag says otherwise. CPU: fp32.
    An explicit choice sets the transformer and the VQ-VAE whatever the flags say, with a note naming the flags it
    overrides.

    --cpu-vae (core's `vae_device`): the VQ-VAE's encoder and decoder (the memory-heavy part, used once per image
    and by the previews) run on the CPU in core's `vae_dtype` for the CPU, whatever the choice (fp32 unless a vae
    flag says otherwise: half precision saves no GPU memory there, and CPU fp16 convolutions are ~50x slower;
    a note when that differs from an explicit choice); the quantiser stays with the transformer in the VQ-VAE's
    dtype, so the tokens are those of a run without the flag."""
    image_device = mm.vae_device() if getattr(args, "cpu_vae", False) else None
    image_dtype = mm.vae_dtype(image_device, [torch.bfloat16]) if image_device is not None else None
    unet = unet_flag()
    if choice != "auto":
        dtype = DTYPES[choice]
        vae_flag, force_fp32 = _flag_set(VAE_FLAGS), getattr(args, "force_fp32", False)
        asked = [(unet, unet and mm.unet_dtype(device)), (vae_flag, vae_flag and mm.vae_dtype(device, [])),
                 ("force_fp32", force_fp32 and torch.float32)]  # (flag, the dtype it asks for): flags set only
        flags = [flag_name(flag) for flag, wanted in asked if wanted and wanted != dtype]
        notes = []
        if flags:
            many = len(flags) > 1
            notes.append(f"dtype {choice} (set on the node) overrides the launch flag{'s' * many} "
                         f"{', '.join(flags)}; choose dtype auto to follow {'them' if many else 'it'}")
        if image_device is not None and image_dtype != dtype:
            notes.append(f"--cpu-vae: the VQ-VAE's encoder and decoder run on the CPU in {_dtype_name(image_dtype)}, "
                         f"ComfyUI's VAE precision there; dtype {choice} sets the transformer and the VQ-VAE's "
                         "quantiser")
        return Precision(dtype, dtype, image_device, image_dtype, tuple(notes))
    transformer, notes = _auto_transformer(device, family), ()
    if unet is not None:
        wanted = mm.unet_dtype(device)
        if wanted in COMPUTE_DTYPES:
            transformer = wanted
        else:
            notes = (f"{flag_name(unet)} asks for {_dtype_name(wanted)} weights, which the {family} transformer "
                     f"cannot compute in (its layers run in their weights' dtype; ComfyUI keeps only its own models "
                     f"in fp8 and casts them layer by layer): it runs in {_dtype_name(transformer)}, what auto picks "
                     "on this device without the flag",)
    return Precision(transformer, mm.vae_dtype(device, [torch.bfloat16]), image_device, image_dtype, notes)


def place_vqvae(model, precision: Precision) -> None:
    """Under --cpu-vae (`precision.image_device`): cast the VQ-VAE's quantiser to `precision.vae` and move its
    encoder and decoder to the image device, out of the weights ComfyUI loads (`VQVAE.detach_image_side`).
    The model was loaded with vae_dtype = `precision.vae_load_dtype`. Without the flag: nothing."""
    if precision.image_device is not None:
        model.vae.quantize.to(precision.vae)
        model.vae.detach_image_side(precision.image_device, precision.image_dtype)


def describe_precision(model) -> str:
    """What the loaded weights are in, for the loader's log line: read from the weights themselves."""
    vae = model.vae
    text = f"weights: transformer {_dtype_name(model.dtype)}, VQ-VAE {_dtype_name(vae.quantize.dtype)}"
    if vae.image_side_detached:
        image = vae.post_quant_conv.weight
        text += f" (its encoder and decoder {_dtype_name(image.dtype)} on {image.device}: --cpu-vae)"
    return text


def finish_load(node: str, model, precision: Precision, notes: list[str]) -> None:
    """After a loader's load: `place_vqvae`, the precision notes added to `notes` (and logged as warnings), one
    info line with the weights' dtypes (as ComfyUI logs its own models')."""
    place_vqvae(model, precision)
    for note in precision.notes:
        logging.warning("%s: %s", node, note)
    notes.extend(precision.notes)
    logging.info("%s: %s", node, describe_precision(model))



def load_model(node: str, family: str, load, source_name: str, inputs: dict, *,
               file_notes: bool = True) -> io.NodeOutput:
    """A model loader's run: the precision of its `inputs["dtype"]` on this device (`pick_dtypes`), `load(precision)`
    (the model on the CPU; with `file_notes`, inside `checkpoint_notes`), `finish_load`, the model's `source_name`
    (named in the sampler's errors) and a ModelPatcher for ComfyUI's model management, returned with the notes shown
    on the node (`info_ui` of the loader's widget values `inputs`)."""
    device = mm.get_torch_device()
    precision = pick_dtypes(inputs["dtype"], device, family)
    with checkpoint_notes(node) if file_notes else contextlib.nullcontext([]) as notes:
        model = load(precision)
    finish_load(node, model, precision, notes)
    model.source_name = source_name
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=mm.unet_offload_device())
    return io.NodeOutput(patcher, ui=info_ui(notes, **inputs))


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
    options), and where they define validate_inputs return `cls.known_problem(...)` from it.

    ComfyUI (execution.py validate_inputs, 0.3.75) reports a failed validate_inputs once for every input its
    signature declares, and skips its own type and range checks for those inputs; it never checks a V3 combo's
    options (the combo's type is the string "COMBO", not the option list it checks). So validate_inputs declares
    the inputs its checks read (a list field and the widget that decides whether it is used) and, on loaders,
    every combo (files, resolution, dtype, device), so a bad one is refused before anything loads; a problem is
    then listed on each declared input. Other combos are checked when the node runs (`checked_inputs`). Every
    parameter of a validate_inputs has a default (None: not known yet), so a missing input gets ComfyUI's own
    "Required input is missing" rather than a TypeError of the call."""

    # Combo inputs listing model files, which the node's check_values checks itself (`check_loader_inputs`): a name
    # saved on another system, with its path separators, is not among the options but means one of them.
    file_inputs: tuple[str, ...] = ()

    @classmethod
    def check_values(cls, values: dict) -> str | None:
        return None

    @classmethod
    def input_problem(cls, values: dict, known_only: bool) -> str | None:
        """The first problem of `values` (input name -> value); `known_only` skips None (linked, unknown yet).
        Types and ranges first, then the node's own checks (better messages for its combos), then the options."""
        specs = [spec for spec in cls.define_schema().inputs if spec.io_type in WIDGET_TYPES and spec.id in values]
        checks = [s for s in specs if s.io_type != "COMBO"]
        for spec in specs:  # a combo value of another type (a list, a dict) would break the checks below
            value = values[spec.id]
            if spec.io_type == "COMBO" and value is not None and (
                    isinstance(value, bool) or not isinstance(value, (str, int, float))):
                return f"{spec.id}: expected one of its {len(spec.options)} options, got {type(value).__name__} " \
                       f"{value!r}"
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
            skip = spec in checks or spec.id in cls.file_inputs or known_only and value is None
            problem = None if skip else widget_problem(spec, value)
            if problem:
                return problem
        return None

    @classmethod
    def known_problem(cls, **values):
        """For validate_inputs: True or the first problem of the values known before the run."""
        return cls.input_problem(values, known_only=True) or True


def user_fast_fp16_accumulation() -> bool:
    """True when the user started ComfyUI with --fast fp16_accumulation (or a bare --fast): then fp16 accumulation
    is their choice, not another pack's, and the pack's nodes keep it."""
    feature = getattr(getattr(cli_args, "PerformanceFeature", None), "Fp16Accumulation", None)
    return feature is not None and feature in (getattr(args, "fast", None) or ())


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
        # whatever other packs set process-wide (README, "Other packs' patches"), but the user's own --fast choice
        with torch_defaults(keep_fp16_accumulation=user_fast_fp16_accumulation()):
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


def noted_output(node: str, value, notes: list[str], **inputs) -> io.NodeOutput:
    """A node's output `value` with its notes: each logged as a warning "<node>: <note>" and shown on the node
    (`info_ui` of the widget values `inputs`)."""
    for note in notes:
        logging.warning("%s: %s", node, note)
    return io.NodeOutput(value, ui=info_ui(notes, **inputs))
