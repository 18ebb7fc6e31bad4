"""ComfyUI node adapters (V3 API). Imported only by ComfyUI, through the package's comfy_entrypoint."""
from comfy_api.latest import ComfyExtension, io

from .common import MODEL_FOLDERS, install_example_inputs, register_model_folder
from .compare import CompareGuiders, GuidanceSweep
from .guiders import CFGGuider, IGGGuider, SoftCFGGuider, SSGGuider
from .heatmap import GuidanceHeatmap
from .infinity import InfinityLoader
from .infinity_text import InfinityTextEncode, InfinityTextEncoderLoader
from .sampler import Sampler
from .speed import TokenPruningNode
from .switti import SwittiLoader, SwittiTextEncode
from .var import ImageNetClass, VARLoader
from .var_clip import VARCLIPTextEncode

for _folder in MODEL_FOLDERS:
    register_model_folder(_folder)
install_example_inputs()

NODES = [VARLoader, ImageNetClass, CFGGuider, IGGGuider, SoftCFGGuider, SSGGuider, Sampler, GuidanceHeatmap,
         SwittiLoader, SwittiTextEncode, CompareGuiders, GuidanceSweep, VARCLIPTextEncode, InfinityLoader,
         InfinityTextEncoderLoader, InfinityTextEncode, TokenPruningNode]


class ScalewiseExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
