"""Test-only ComfyUI pack: what other packs do to torch process-wide (issue 25 §2). comfy_server.py loads
tests/test_packs/* into the test server (never into a user's ComfyUI); tests/integration/test_global_patches.py
checks the pack's nodes against it, and the catalogue of tests/integration/test_reliability.py runs with the
import-time patches below in place.

At import, as the named packs do at theirs (harmless for the rest of the test session, whose .pth files are read
by the Scale-wise loaders and whose .safetensors files get the same tensors):
- torch.load forced to weights_only=False for every caller: the "PyTorch 2.6 fix" of ComfyUI-RMBG before 3.0
  (ComfyUI-RMBG#151) and the whole purpose of ltdrdata/comfyui-unsafe-torch;
- safetensors.torch.load_file replaced by a read of the whole file (brendanhoar/comfyui-faster-loading), which
  here also appends each file name it is asked for to <user directory>/scalewise_load_file_calls.txt.

On demand, because they would disturb the rest of the session, through the output node "ScalewiseTestPatchTorch"
(patch = one of PATCHES). A patch stays until the node runs with "restore", as the global patch of KJNodes'
"Patch Sage Attention KJ" node stayed until it ran again (ComfyUI-KJNodes#269):
- "sdpa": torch.nn.functional.scaled_dot_product_attention rebound to a function with SageAttention's sageattn
  signature, which takes no attn_mask or scale (ComfyUI-3D-Pack's TRELLIS backend probe installs sageattn so);
- "bfloat16": torch.set_default_dtype(torch.bfloat16), never set back (model code that sets it while building
  a model, as some loaders do);
- "meta": torch.set_default_device("meta") (thread-local in torch: set in the prompt worker thread, where every
  node runs);
- "fp16 accumulation": torch.backends.cuda.matmul.allow_fp16_accumulation = True (KJNodes' model loaders and
  "Model Patch Torch Settings"; torch >= 2.7.1);
- "report": writes <user directory>/scalewise_torch_state.json: torch's settings now, and as the last Scale-wise
  Sampler run saw them (the pack's nodes/sampler.py `sample` is wrapped to record them);
- "restore": every on-demand patch undone.
"""
import json
import logging
import math
import os
import sys

import folder_paths
import safetensors.torch
import torch
import torch.nn.functional as F

CALLS_FILE = "scalewise_load_file_calls.txt"
STATE_FILE = "scalewise_torch_state.json"
PATCHES = ("sdpa", "bfloat16", "meta", "fp16 accumulation", "report", "restore")

_torch_load = torch.load
_load_file = safetensors.torch.load_file
_sdpa = F.scaled_dot_product_attention
_seen_by_sampler = {}


def _unsafe_torch_load(*args, **kwargs):
    kwargs["weights_only"] = False   # what the wrappers force, whatever the caller asked for
    return _torch_load(*args, **kwargs)


def _whole_file_load_file(filename, device="cpu", *args, **kwargs):
    with open(os.path.join(folder_paths.get_user_directory(), CALLS_FILE), "a", encoding="utf-8") as log:
        log.write(os.fspath(filename) + "\n")
    if device == "cpu":
        with open(filename, "rb") as f:
            return safetensors.torch.load(f.read())
    return _load_file(filename, device, *args, **kwargs)


def _sageattn_like(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, return_lse=False, **kwargs):
    """sageattn's signature; attn_mask and scale end in **kwargs, unused. The real kernel needs CUDA and fp16/bf16:
    the same maths on the CPU."""
    scale = sm_scale if sm_scale is not None else 1 / math.sqrt(q.shape[-1])
    return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v


def _state() -> dict:
    try:
        fp16_accumulation = torch.backends.cuda.matmul.allow_fp16_accumulation
    except AttributeError:
        fp16_accumulation = None
    return {"default_dtype": str(torch.get_default_dtype()), "default_device": str(torch.get_default_device()),
            "allow_fp16_accumulation": fp16_accumulation,
            "sdpa_is_torchs": F.scaled_dot_product_attention is _sdpa}


class ScalewiseTestPatchTorch:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"patch": (list(PATCHES),)}}

    @classmethod
    def IS_CHANGED(cls, patch):
        return float("nan")   # runs every time it is queued

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "apply"
    CATEGORY = "testing"

    def apply(self, patch):
        if patch == "sdpa":
            F.scaled_dot_product_attention = _sageattn_like
        elif patch == "bfloat16":
            torch.set_default_dtype(torch.bfloat16)
        elif patch == "meta":
            torch.set_default_device("meta")
        elif patch == "fp16 accumulation":
            torch.backends.cuda.matmul.allow_fp16_accumulation = True
        elif patch == "report":
            with open(os.path.join(folder_paths.get_user_directory(), STATE_FILE), "w", encoding="utf-8") as f:
                json.dump({"now": _state(), "sampler": dict(_seen_by_sampler)}, f)
        elif patch == "restore":
            torch.set_default_device(None)
            torch.set_default_dtype(torch.float32)
            F.scaled_dot_product_attention = _sdpa
            if _state()["allow_fp16_accumulation"] is not None:
                torch.backends.cuda.matmul.allow_fp16_accumulation = False
        logging.info("scalewise_global_patches: %s applied", patch)
        return ()


NODE_CLASS_MAPPINGS = {"ScalewiseTestPatchTorch": ScalewiseTestPatchTorch}


def _wrap_sampler():
    for module in list(sys.modules.values()):
        path = (getattr(module, "__file__", None) or "").replace(os.sep, "/")
        if path.endswith("/nodes/sampler.py") and hasattr(module, "ScaleProgressReporter") and \
                callable(getattr(module, "sample", None)):
            real = module.sample

            def sample(*args, **kwargs):
                _seen_by_sampler.clear()
                _seen_by_sampler.update(_state())
                return real(*args, **kwargs)
            module.sample = sample
            return True
    return False


torch.load = _unsafe_torch_load
safetensors.torch.load_file = _whole_file_load_file
logging.warning("scalewise_global_patches: torch.load now forces weights_only=False and safetensors.torch.load_file "
                "reads whole files, for every caller (as ComfyUI-RMBG before 3.0 and comfyui-faster-loading do)")
if not _wrap_sampler():
    logging.warning("scalewise_global_patches: the Scale-wise Sampler module is not loaded; no sampler report")
