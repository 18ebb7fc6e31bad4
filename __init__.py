"""Scale-wise Guidance: VAR / Switti models, guiders and a scale-wise sampler for ComfyUI.

Importing this package imports no ComfyUI module; ComfyUI calls `comfy_entrypoint()` and only then
are the node adapters (which need ComfyUI) imported. Inside a ComfyUI older than the floor (no V3 node API,
or a version below MIN_COMFYUI) the package logs one line and registers nothing, instead of a traceback.
"""
import logging
import re
import sys

MIN_COMFYUI = (0, 3, 75)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def comfyui_too_old() -> str | None:
    """The version found when the running ComfyUI is below the floor or lacks the V3 node API, else None.

    Reads only what ComfyUI has loaded before it loads custom nodes (its server imports `comfyui_version`, its
    `nodes` module imports `comfy_api.latest` on cores with the V3 API), so this module imports nothing of
    ComfyUI. Outside ComfyUI (pytest, a plain import: no `folder_paths` loaded) it checks nothing."""
    if "folder_paths" not in sys.modules:
        return None
    version = str(getattr(sys.modules.get("comfyui_version"), "__version__", "unknown"))
    latest = sys.modules.get("comfy_api.latest")
    if latest is None or not all(hasattr(latest, name) for name in ("ComfyExtension", "io")):
        return f"{version}, without the V3 node API"
    if version != "unknown" and _version_tuple(version) < MIN_COMFYUI:
        return version
    return None


_found = comfyui_too_old()
if _found is not None:
    logging.getLogger(__name__).error("Scale-wise Guidance needs ComfyUI ≥ %s (found %s); its nodes are not loaded.",
                                      ".".join(map(str, MIN_COMFYUI)), _found)
    NODE_CLASS_MAPPINGS = {}  # a V1 module with no nodes: the loader adds nothing and logs nothing more
else:
    WEB_DIRECTORY = "./web"

    async def comfy_entrypoint():
        from .nodes import ScalewiseExtension

        return ScalewiseExtension()
