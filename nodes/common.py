"""ComfyUI glue shared by the nodes: socket types, model folders, devices."""
from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

# Own socket types: nothing of ours can be wired into the diffusion samplers, and vice versa.
ModelType = io.Custom("SCALEWISE_MODEL")
CondType = io.Custom("SCALEWISE_COND")
GuiderType = io.Custom("SCALEWISE_GUIDER")
TraceType = io.Custom("SCALEWISE_TRACE")

CATEGORY = "sampling/scalewise"
MODEL_FOLDERS = ("var", "switti")


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


def model_files(folder: str) -> list[str]:
    return folder_paths.get_filename_list(folder)


def full_path(folder: str, name: str) -> str:
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        raise FileNotFoundError(f"'{name}' not found in models/{folder} "
                                f"(searched: {', '.join(folder_paths.get_folder_paths(folder))})")
    return path


def scale_window_stop(end_scale: int) -> int | None:
    """Widget convention: 0 = up to the last scale, negative = counted from the end, else exclusive end."""
    return None if end_scale == 0 else end_scale
