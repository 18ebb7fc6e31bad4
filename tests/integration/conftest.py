"""Layer 3 (the pack in a real ComfyUI server): a real ComfyUI server started once per session with the pack symlinked into
custom_nodes/comfyui-scalewise-guidance. Needs COMFY_DIR=<ComfyUI tree>; run pytest with that tree's venv
python (.comfy-ci/venv/bin/python). Without COMFY_DIR every test here is skipped."""
import sys

import pytest

cs = sys.modules["scalewise_ci_comfy_server"]  # loaded by tests/conftest.py, which also holds the `comfy` fixture


@pytest.fixture
def pack_loaded(comfy):
    """Fails the test if the log says the pack did not load."""
    comfy.assert_pack_imported()
    return comfy
