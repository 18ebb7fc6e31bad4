"""Layer 3 (the pack in a real ComfyUI server): a real ComfyUI server started once per session with the pack symlinked into
custom_nodes/comfyui-scalewise-guidance. Needs COMFY_DIR=<ComfyUI tree>; run pytest with that tree's venv
python (.comfy-ci/venv/bin/python). Without COMFY_DIR every test here is skipped."""
import importlib.util
import sys
from pathlib import Path

import pytest


def load_comfy_server():
    """tests/integration/comfy_server.py under one fixed module name, whichever conftest loads it first:
    the integration and UI tests then share one server."""
    name = "scalewise_ci_comfy_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("comfy_server.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


cs = load_comfy_server()


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """ComfyClient: object_info(), queue(), wait(), run(), interrupt(), ws(), log(), assert_pack_imported(),
    graph_builder(), models_dir (with var/ and switti/, filled by fixtures_models.write_tiny_models if present)."""
    if cs.comfy_dir() is None:
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree (run .ci/comfy_ci.sh install)")
    client = cs.acquire(tmp_path_factory)
    yield client
    cs.release()


@pytest.fixture
def pack_loaded(comfy):
    """Fails the test if the log says the pack did not load."""
    comfy.assert_pack_imported()
    return comfy
