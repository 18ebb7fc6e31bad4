"""Make the repository importable as the package `scalewise`, as an installed copy would be, and sort the tests
into tiers (README, "Tests"): `server` (tests/integration: a real ComfyUI server), `browser` (tests/ui: the real
frontend in headless Chromium), `slow` (marked in their files: training, benchmarks, the built-in models' accuracy).
The fast tier is `-m "not server and not browser and not slow"`."""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

if "scalewise" not in sys.modules:
    spec = importlib.util.spec_from_file_location(
        "scalewise", os.path.join(ROOT, "__init__.py"), submodule_search_locations=[ROOT])
    module = importlib.util.module_from_spec(spec)
    sys.modules["scalewise"] = module
    spec.loader.exec_module(module)


TIERS = {"integration": "server", "ui": "browser"}
SERVER_MODULE = "scalewise_ci_comfy_server"


def load_comfy_server():
    """tests/integration/comfy_server.py under one fixed module name (stdlib only: importing it starts nothing), so
    the integration and UI tests share one server; their conftests take it from here as `cs`."""
    if SERVER_MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            SERVER_MODULE, os.path.join(ROOT, "tests", "integration", "comfy_server.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[SERVER_MODULE] = module
        spec.loader.exec_module(module)
    return sys.modules[SERVER_MODULE]


def _comfy_fixture():
    import pytest

    @pytest.fixture(scope="session")
    def comfy(tmp_path_factory):
        """The session's real ComfyUI server (ComfyClient: object_info(), queue(), wait(), run(), interrupt(), ws(),
        log(), assert_pack_imported(), graph_builder(), models_dir with var/ and switti/ filled by
        tests/integration/fixtures_models.py), started once for tests/integration and tests/ui together. Skipped
        without COMFY_DIR (a ComfyUI tree: .ci/comfy_ci.sh install)."""
        cs = load_comfy_server()
        if cs.comfy_dir() is None:
            pytest.skip("COMFY_DIR does not point at a ComfyUI tree (run .ci/comfy_ci.sh install)")
        client = cs.acquire(tmp_path_factory)
        yield client
        cs.release()
    return comfy


load_comfy_server()
comfy = _comfy_fixture()


def pytest_collection_modifyitems(config, items):
    import pytest
    for item in items:
        parts = os.path.relpath(str(item.path), os.path.join(ROOT, "tests")).split(os.sep)
        if parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, TIERS[parts[0]]))
