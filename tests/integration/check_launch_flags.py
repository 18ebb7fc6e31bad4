"""The loaders' precision under ComfyUI's launch flags, and model names from another system, as one JSON line.

    python check_launch_flags.py COMFY_DIR PACK_DIR FLAG_SETS_JSON      (ComfyUI venv)

FLAG_SETS_JSON: a list of flag lists, e.g. [[], ["--fp32-unet", "--fp16-vae"]]. Each set is parsed by ComfyUI's
own command-line parser (comfy/cli_args.py, with "--cpu" added) and ComfyUI's real model_management is reloaded
under it, so --force-fp16 (which turns on --fp16-unet) and --force-fp32 (model_management.FORCE_FP32) act as in a
server started with them. The GPUs are simulated below the flag checks: `torch.cuda.get_device_properties` and
`torch.cuda.is_bf16_supported` answer for an A100 (sm 8.0, bf16) or a T4 (sm 7.5, fp16 only), and
model_management's `cpu_mode()` says no, so core's own should_use_bf16 / should_use_fp16 / vae_dtype / unet_dtype
decide from there.

Output: {"dtypes": {"<flags>|<device>|<family>|<choice>": [transformer, vae, image side or null, notes]},
"names": {...}} where image side = [device, dtype] under --cpu-vae; "names" checks `listed_name`, `full_path` and
the Switti loader's check against a Windows-style listing (backslashes), with folder_paths' listing replaced.
"""
import importlib
import json
import sys
import types

from check_support import load_pack

comfy_dir, pack_dir, flag_sets = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, comfy_dir)
sys.argv = ["main.py", "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.cli_args as cli_args  # noqa: E402
import torch  # noqa: E402

shared_args = cli_args.args  # the object every `from comfy.cli_args import args` holds, the pack's included
import comfy.model_management as mm  # noqa: E402

load_pack(pack_dir)
from scalewise.nodes import common  # noqa: E402
from scalewise.nodes.switti import SwittiLoader  # noqa: E402

GPUS = {"a100": (types.SimpleNamespace(major=8, minor=0, name="NVIDIA A100-SXM4-80GB"), True),
        "t4": (types.SimpleNamespace(major=7, minor=5, name="Tesla T4"), False)}


def launch(flags):
    """As if ComfyUI had been started with `flags` (and --cpu): parse them, then re-run model_management."""
    sys.argv = ["main.py", "--cpu", *flags]
    importlib.reload(cli_args)
    vars(shared_args).clear()
    vars(shared_args).update(vars(cli_args.args))
    cli_args.args = shared_args
    importlib.reload(mm)        # reads args again: FORCE_FP32, cpu_state, ...
    mm.cpu_mode = lambda: False  # the simulated GPU answers below


def name(dtype):
    return None if dtype is None else str(dtype).replace("torch.", "")


dtypes = {}
for flags in flag_sets:
    launch(flags)
    for device_name in ("cpu", "a100", "t4"):
        if device_name == "cpu":
            device = torch.device("cpu")
        else:
            device = torch.device("cuda", 0)
            props, bf16 = GPUS[device_name]
            torch.cuda.get_device_properties = lambda *a, _p=props, **k: _p
            torch.cuda.is_bf16_supported = lambda *a, _b=bf16, **k: _b
        for family in ("var", "switti"):
            for choice in ("auto", "bf16", "fp16", "fp32"):
                p = common.pick_dtypes(choice, device, family)
                image = None if p.image_device is None else [str(p.image_device), name(p.image_dtype)]
                dtypes[f"{' '.join(flags)}|{device_name}|{family}|{choice}"] = [
                    name(p.transformer), name(p.vae), image, list(p.notes)]

# Names from another system: a Windows listing (ComfyUI lists with the host's separator).
launch([])
WINDOWS = ["Switti\\model.safetensors", "Switti-AR\\model.safetensors", "VQVAE-Switti\\model.safetensors"]
LINUX_ODD = ["Switti/model.safetensors", "Switti\\model.safetensors"]  # on Linux a backslash may be in a name
listing, asked = {"switti": WINDOWS}, []
common.folder_paths.get_filename_list = lambda folder: list(listing[folder])
common.folder_paths.get_full_path = lambda folder, filename: asked.append(filename) or f"C:\\models\\{filename}"
names = {
    "listed /": common.listed_name("switti", "Switti/model.safetensors"),
    "listed \\": common.listed_name("switti", "Switti\\model.safetensors"),
    "listed missing": common.listed_name("switti", "Switti-1024/model.safetensors"),
    "listed builtin": common.listed_name("switti", "x (built in)", builtin=("x (built in)",)),
    "full_path": common.full_path("switti", "Switti-AR/model.safetensors"),
    "full_path asked": list(asked),
    "check /": SwittiLoader.check_values({"switti_name": "Switti/model.safetensors",
                                          "vae_name": "VQVAE-Switti/model.safetensors", "dtype": "auto"}),
    "check missing": SwittiLoader.check_values({"switti_name": "Switti-1024/model.safetensors",
                                                "vae_name": "VQVAE-Switti/model.safetensors", "dtype": "auto"}),
}
listing["switti"] = LINUX_ODD
names["exact wins /"] = common.listed_name("switti", "Switti/model.safetensors")
names["exact wins \\"] = common.listed_name("switti", "Switti\\model.safetensors")
print(json.dumps({"dtypes": dtypes, "names": names}))
