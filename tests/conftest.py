"""Make the repository importable as the package `scalewise`, as an installed copy would be, and sort the tests
into tiers (README, "Tests"): `server` (tests/integration: a real ComfyUI server), `browser` (tests/ui: the real
frontend in headless Chromium), `slow` (marked in their files: training, benchmarks, the built-in models' accuracy).
The fast tier is `-m "not server and not browser and not slow"`."""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))  # tests may import the scripts of tools/ (and tools/bootstrap.py)

if "scalewise" not in sys.modules:
    spec = importlib.util.spec_from_file_location(
        "scalewise", os.path.join(ROOT, "__init__.py"), submodule_search_locations=[ROOT])
    module = importlib.util.module_from_spec(spec)
    sys.modules["scalewise"] = module
    spec.loader.exec_module(module)


TIERS = {"integration": "server", "ui": "browser"}


def pytest_collection_modifyitems(config, items):
    import pytest
    for item in items:
        parts = os.path.relpath(str(item.path), os.path.join(ROOT, "tests")).split(os.sep)
        if parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, TIERS[parts[0]]))
