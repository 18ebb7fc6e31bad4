"""ComfyUI glue shared by the nodes: socket types, model folders, devices."""
from __future__ import annotations

import logging
import os
import shutil

import comfy.model_management as mm
import folder_paths
import torch
from comfy_api.latest import io

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


def check_loader_inputs(folder: str, files: dict, dtype: str, hint: str, builtin: str | None = None):
    """validate_inputs of the loaders: every file in models/<folder> (or the `builtin` entry), a known dtype
    (True or a message)."""
    available = set(model_files(folder))
    for label, name in files.items():
        if name not in available and name != builtin:
            return f"{label}: '{name}' is not in models/{folder} ({hint}, then refresh)"
    if dtype != "auto" and dtype not in DTYPES:
        return f"dtype: {dtype!r} is not one of auto, {', '.join(DTYPES)}"
    return True


def pick_dtype(choice: str, device) -> torch.dtype:
    """The weight dtype of a loader's `dtype` widget: bf16/fp16/fp32 as chosen; auto = bf16 where ComfyUI says the
    device supports it, else fp16 where it does, else fp32."""
    if choice != "auto":
        return DTYPES[choice]
    if mm.should_use_bf16(device):
        return torch.bfloat16
    if mm.should_use_fp16(device):
        return torch.float16
    return torch.float32
