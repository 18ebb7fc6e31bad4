"""The package root inside old ComfyUI versions: one clear log line, no traceback, no nodes (issue 12 §5).

Each case imports the pack's __init__.py in a fresh interpreter the way ComfyUI does (by file path, after ComfyUI's
own `folder_paths` is loaded), with logging to stderr, and reports what the loader would see."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNER = r"""
import importlib.util, json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
core, pack, fake_version = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, core)
# What ComfyUI has loaded before it loads custom nodes: folder_paths, comfyui_version (server.py) and, on cores
# with the V3 API, comfy_api.latest (nodes.py).
import folder_paths  # noqa: F401
for name in ("comfyui_version", "comfy_api.latest"):
    try:
        __import__(name)
    except ImportError:
        pass
if fake_version:
    import types
    sys.modules["comfyui_version"] = types.SimpleNamespace(__version__=fake_version)
spec = importlib.util.spec_from_file_location("custom_nodes.scalewise", pack + "/__init__.py",
                                              submodule_search_locations=[pack])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
print(json.dumps({"mappings": getattr(module, "NODE_CLASS_MAPPINGS", None),
                  "entrypoint": hasattr(module, "comfy_entrypoint"), "web": getattr(module, "WEB_DIRECTORY", None)}))
"""


def run(core: Path, fake_version: str = "") -> tuple[dict, list[str]]:
    out = subprocess.run([sys.executable, "-c", RUNNER, str(core), str(ROOT), fake_version],
                         capture_output=True, text=True, timeout=300, cwd=core)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), [line for line in out.stderr.splitlines() if line]


def test_core_without_the_v3_api_gets_one_line_and_no_nodes(tmp_path):
    (tmp_path / "folder_paths.py").write_text("models_dir = 'models'\n")
    (tmp_path / "comfyui_version.py").write_text("__version__ = '0.3.40'\n")
    seen, log = run(tmp_path)
    assert log == ["ERROR Scale-wise Guidance needs ComfyUI ≥ 0.3.75 (found 0.3.40, without the V3 node API); "
                   "its nodes are not loaded."]
    assert seen == {"mappings": {}, "entrypoint": False, "web": None}


def test_core_without_a_version_file(tmp_path):
    (tmp_path / "folder_paths.py").write_text("models_dir = 'models'\n")
    seen, log = run(tmp_path)
    assert len(log) == 1 and "(found unknown, without the V3 node API)" in log[0]
    assert seen["mappings"] == {}


def comfy_dir() -> Path:
    d = os.environ.get("COMFY_DIR")
    if not d or not (Path(d) / "comfy_api").is_dir():
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree")
    return Path(d)


def test_v3_core_below_the_floor_is_refused_by_version():
    seen, log = run(comfy_dir(), fake_version="0.3.60")
    ours = [line for line in log if "Scale-wise" in line]  # ComfyUI's own modules log too (comfy_api imports comfy)
    assert ours == ["ERROR Scale-wise Guidance needs ComfyUI ≥ 0.3.75 (found 0.3.60); its nodes are not loaded."]
    assert seen == {"mappings": {}, "entrypoint": False, "web": None}


def test_supported_core_loads_quietly():
    seen, log = run(comfy_dir())
    assert not [line for line in log if "Scale-wise" in line]
    assert seen == {"mappings": None, "entrypoint": True, "web": "./web"}
