"""The frontend build and node-rendering mode CI asked for are the ones in the page (.ci/run runs tests/ui with
the frontend of the ComfyUI venv, then with the newest comfyui-frontend-package in the classic canvas and in the
Nodes 2.0 (Vue nodes) mode): a run that silently fell back to the default would prove nothing."""
import json
import os

from .test_examples import START_HERE, load_in_page


def test_frontend_version_is_the_one_asked_for(ui_page):
    expected = os.environ.get("COMFY_FRONTEND_VERSION")
    version = ui_page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__")
    assert version
    if expected:
        assert version == expected


def test_node_rendering_mode_is_the_one_asked_for(ui_page, comfy):
    vue = bool(json.loads(os.environ.get("COMFY_UI_SETTINGS") or "{}").get("Comfy.VueNodes.Enabled"))
    assert comfy.get_json("/settings").get("Comfy.VueNodes.Enabled", False) is vue
    wf = load_in_page(ui_page, START_HERE)
    ui_page.page.wait_for_timeout(1000)
    # Nodes 2.0 renders every node as a DOM element carrying its id; the classic canvas draws them
    dom_ids = set(ui_page.evaluate(
        "() => [...document.querySelectorAll('[data-node-id]')].map((e) => e.dataset.nodeId)"))
    graph_ids = {str(n["id"]) for n in wf["nodes"]}
    assert (graph_ids <= dom_ids) if vue else not (graph_ids & dom_ids), (sorted(dom_ids), sorted(graph_ids))
    ui_page.screenshot("frontend-mode-" + ("vue" if vue else "classic"))
