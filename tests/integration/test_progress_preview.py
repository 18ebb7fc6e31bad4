"""Progress and previews as the user set them (nodes/sampler.py ScaleProgressReporter, previews_allowed).

- Progress: one update per scale always reaches the client, previews or not (ComfyUI >= 0.9.2 throttles
  ProgressBar updates without a preview to one per 100 ms; the pack calls the progress hook directly).
- Previews: the node's `preview` input decides, unless ComfyUI's "Live preview method" is none (per prompt since
  ComfyUI 0.5.0, else the --preview-method flag): then no preview at all. The shared test server runs with
  --preview-method auto; ComfyUI's own default (none) is checked on the fresh-install server
  (test_builtin_model.py)."""
import re
import struct

import pytest

from .test_nodes import graph

PREVIEW_FRAME_TYPES = (1, 4)  # PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA


def sampler_progress(ws, prompt) -> list[tuple[int, int]]:
    sampler_id = next(k for k, v in prompt.items() if v["class_type"] == "ScalewiseSampler")
    return [(m["data"]["value"], m["data"]["max"]) for m in ws.messages
            if m["type"] == "progress" and m["data"].get("node") == sampler_id]


def preview_frames(ws) -> list[bytes]:
    return [f for f in ws.binary if struct.unpack(">I", f[:4])[0] in PREVIEW_FRAME_TYPES]


def comfyui_version(comfy) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", comfy.get_json("/system_stats")["system"]["comfyui_version"])[:3])


def test_every_scale_reports_progress_without_previews(pack_loaded):
    prompt, _, _ = graph(pack_loaded, seed=11, preview="off")
    entry, ws = pack_loaded.run(prompt)
    assert entry["status"]["status_str"] == "success"
    assert sampler_progress(ws, prompt) == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert preview_frames(ws) == []


def test_last_scales_preview(pack_loaded):
    prompt, _, _ = graph(pack_loaded, seed=12, preview="last 3 scales")
    entry, ws = pack_loaded.run(prompt)
    assert sampler_progress(ws, prompt) == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len(preview_frames(ws)) == 3


def test_live_preview_method_none_per_prompt_turns_previews_off(pack_loaded):
    """The frontend sends the user's setting as extra_data.preview_method (unless it is "default")."""
    if comfyui_version(pack_loaded) < (0, 5, 0):
        pytest.skip("this ComfyUI takes the preview method from --preview-method only (per prompt since 0.5.0)")
    prompt, _, _ = graph(pack_loaded, seed=13, preview="every scale")
    entry, ws = pack_loaded.run(prompt, extra_data={"preview_method": "none"})
    assert entry["status"]["status_str"] == "success"
    assert sampler_progress(ws, prompt) == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert preview_frames(ws) == []
    prompt, _, _ = graph(pack_loaded, seed=14, preview="every scale")
    _, ws = pack_loaded.run(prompt, extra_data={"preview_method": "latent2rgb"})
    assert len(preview_frames(ws)) == 4  # any other method: the node's input decides


HOOK_RUNNER = r"""
import importlib.util, json, sys
core, pack = sys.argv[1], sys.argv[2]
sys.path.insert(0, core)
from comfy.cli_args import args
args.cpu = True
import comfy.utils, folder_paths  # noqa: F401
spec = importlib.util.spec_from_file_location("custom_nodes.scalewise", pack + "/__init__.py",
                                              submodule_search_locations=[pack])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
sent = []
comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, **kw: sent.append([value, total]))
from custom_nodes.scalewise.nodes.sampler import ScaleProgressReporter
reporter = ScaleProgressReporter(14, "off")
for k in range(14):  # scales faster than any throttle interval, as on a GPU
    reporter(type("Progress", (), {"k": k})())
print(json.dumps(sent))
"""


def test_fast_scales_each_reach_the_progress_hook():
    """Scales quicker than ComfyUI's 100 ms progress throttle (>= 0.9.2) still report one update each: through the
    real comfy.utils of COMFY_DIR, with ComfyUI's progress hook replaced by a recorder."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    core = os.environ.get("COMFY_DIR")
    if not core or not (Path(core) / "comfy" / "utils.py").is_file():
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree")
    pack = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", HOOK_RUNNER, core, str(pack)], capture_output=True, text=True,
                         timeout=600, cwd=core)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[k, 14] for k in range(1, 15)]
