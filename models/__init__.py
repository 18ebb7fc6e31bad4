"""Scale-wise image models (VAR, Switti, their multi-scale VQ-VAE) as plain torch modules: no ComfyUI import."""
from .base import GumbelSmoothing, ScaleState, ScalewiseModel
from .checkpoint import CheckpointError, checkpoint_kind, read_state_dict
from .kv_cache import KVCache
from .schedule import SCHEDULES, Schedule
from .switti import SwittiConfig, SwittiModel, SwittiTransformer, TextCondition
from .switti_loader import load_switti, load_switti_transformer, switti_official_state_dict
from .var import ClassCondition, VARConfig, VARModel, VARTransformer
from .var_clip import PooledTextCondition, VARCLIPConfig, VARCLIPModel, VARCLIPTransformer
from .var_clip_loader import (infer_var_clip_config, load_var_clip, load_var_clip_transformer, load_var_or_var_clip,
                              var_clip_official_state_dict)
from .var_loader import infer_var_config, load_var, load_var_transformer, var_official_state_dict
from .vqvae import VQVAE, VQVAEConfig, phi_index_table
from .vqvae_loader import infer_vqvae_config, load_vqvae, vqvae_official_state_dict

__all__ = [
    "GumbelSmoothing", "ScaleState", "ScalewiseModel", "ClassCondition", "CheckpointError", "checkpoint_kind",
    "read_state_dict", "KVCache", "infer_var_config", "infer_vqvae_config", "load_var", "load_var_transformer",
    "load_vqvae", "var_official_state_dict", "vqvae_official_state_dict", "SwittiConfig", "SwittiModel",
    "SwittiTransformer", "TextCondition", "load_switti", "load_switti_transformer", "switti_official_state_dict",
    "SCHEDULES", "Schedule", "VARConfig", "VARModel", "VARTransformer", "VQVAE", "VQVAEConfig", "phi_index_table",
    "PooledTextCondition", "VARCLIPConfig", "VARCLIPModel", "VARCLIPTransformer", "infer_var_clip_config",
    "load_var_clip", "load_var_clip_transformer", "load_var_or_var_clip", "var_clip_official_state_dict",
]
