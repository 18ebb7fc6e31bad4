"""Scale-wise Guidance: VAR / Switti models, guiders and a scale-wise sampler for ComfyUI.

Importing this package imports no ComfyUI module; ComfyUI calls `comfy_entrypoint()` and only then
are the node adapters (which need ComfyUI) imported.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import ScalewiseExtension

    return ScalewiseExtension()
