"""Make the repository importable as the package `scalewise`, as an installed copy would be."""
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
