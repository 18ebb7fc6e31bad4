"""Make the repository importable as the package `scalewise` (as `pip install -e .` would) for the scripts in
this folder: `import bootstrap` first, then `from scalewise... import ...`."""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if "scalewise" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "scalewise", os.path.join(ROOT, "__init__.py"), submodule_search_locations=[ROOT])
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["scalewise"] = _module
    _spec.loader.exec_module(_module)
