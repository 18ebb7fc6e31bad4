"""The start the check scripts share (`python check_<name>.py COMFY_DIR PACK_DIR ...`, run by the tests in the
ComfyUI venv): ComfyUI's folder importable with the CPU as its device, and the pack at PACK_DIR as the package
`scalewise` (as tests/conftest.py loads it, without ComfyUI's custom-node loader)."""
import importlib.util
import sys


def comfy_on_cpu(comfy_dir: str):
    """Put `comfy_dir` first on sys.path and set ComfyUI's --cpu (before model_management is imported); returns
    ComfyUI's parsed launch arguments (comfy.cli_args.args)."""
    sys.path.insert(0, comfy_dir)
    from comfy.cli_args import args
    args.cpu = True
    return args


def load_pack(pack_dir: str):
    """The repository at `pack_dir` as the package `scalewise` (its root __init__ imports no ComfyUI module);
    returns the package."""
    spec = importlib.util.spec_from_file_location("scalewise", f"{pack_dir}/__init__.py",
                                                  submodule_search_locations=[pack_dir])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["scalewise"] = pack
    spec.loader.exec_module(pack)
    return pack
