"""Test-only ComfyUI pack: one-shot fault injection into the Scale-wise Sampler (tests/integration/test_reliability.py).

comfy_server.py loads tests/test_packs/* into the test server (never into a user's ComfyUI). At import this pack
wraps the `sample` function the pack's nodes/sampler.py calls. The wrapper does nothing unless the file
<user directory>/scalewise_fault_oom exists (the server's --user-directory): then it deletes the file (one shot)
and raises torch.OutOfMemoryError from the sampler's per-scale callback at the scale written in the file (default
1), i.e. in the middle of sampling, with the KV cache and the batch's tensors allocated, as a GPU that runs out of
memory would. A real CUDA OOM cannot be provoked on the CPU test server (the CPU allocator raises a plain
RuntimeError, or the kernel kills the process), so this is how the test checks the sampler's out-of-memory path: a
clear error, and the next run works.

The file may add words after the scale: `interrupt` raises ComfyUI's Cancel (InterruptProcessingException) instead,
and `torch-2.4` hides torch.OutOfMemoryError (added in torch 2.5) from that run until the next sampler run starts
(the node's error handling included), as on the torch 2.4 that torch-directml pins; the simulated OOM is then
torch.cuda.OutOfMemoryError.
"""
import logging
import os
import sys

import folder_paths
import torch

NODE_CLASS_MAPPINGS = {}        # no nodes: only the patch below
FAULT_FILE = "scalewise_fault_oom"
MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB (simulated by the scalewise_fault_injection test pack)"


def _sampler_module():
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if path.replace(os.sep, "/").endswith("/nodes/sampler.py") and hasattr(module, "ScaleProgressReporter") \
                and callable(getattr(module, "sample", None)):
            return module
    return None


def _take_fault():
    """(armed scale, words), removing the trigger file (one shot), or None."""
    path = os.path.join(folder_paths.get_user_directory(), FAULT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
        os.remove(path)
    except FileNotFoundError:
        return None
    words = text.split()
    return (int(words[0]) if words else 1), set(words[1:])


def _install(module):
    real_sample = module.sample

    hidden = {}

    def sample(*args, callback=None, **kwargs):
        if "OutOfMemoryError" in hidden:
            torch.OutOfMemoryError = hidden.pop("OutOfMemoryError")
        fault = _take_fault()
        if fault is None:
            return real_sample(*args, callback=callback, **kwargs)
        scale, words = fault
        oom_class = torch.cuda.OutOfMemoryError if "torch-2.4" in words else torch.OutOfMemoryError

        def failing(progress):
            if progress.k >= scale:
                if "interrupt" in words:
                    import comfy.model_management
                    raise comfy.model_management.InterruptProcessingException()
                raise oom_class(MESSAGE)
            if callback is not None:
                callback(progress)
        if "torch-2.4" in words and hasattr(torch, "OutOfMemoryError"):
            hidden["OutOfMemoryError"] = torch.__dict__.pop("OutOfMemoryError")
        return real_sample(*args, callback=failing, **kwargs)

    sample.scalewise_fault_injection = True
    module.sample = sample


_module = _sampler_module()
if _module is None:
    logging.warning("scalewise_fault_injection: the Scale-wise Sampler module is not loaded; OOM injection inactive")
elif not getattr(_module.sample, "scalewise_fault_injection", False):
    _install(_module)
    logging.info("scalewise_fault_injection: OOM injection armed by <user directory>/%s", FAULT_FILE)
