"""The real frontend shows the pack's translations (locales/<lang>/nodeDefs.json) when the browser's language is
one of them and the user has not chosen another: node titles, widget and socket labels; English otherwise."""
import json
import re
from pathlib import Path

import pytest

from .conftest import UiPage

LOCALES = Path(__file__).resolve().parents[2] / "locales"
NODE = "ScalewiseSampler"
# Frontends before Comfy-Org/ComfyUI_frontend#7214 (merged 2025-12-07, after 1.32) replace a language's messages
# when they lazy-load it, dropping the custom nodes' translations merged before: English shows there.
FIRST_FIXED = (1, 33)

# A node as the page builds it: its title and the label each widget, input and output socket shows.
SHOWN = """(type) => {
  const node = window.LiteGraph.createNode(type);
  window.app.graph.add(node);
  const label = (x) => x.label || x.localized_name || x.name;
  const shown = {title: node.title,
                 widgets: Object.fromEntries((node.widgets || []).map((w) => [w.name, label(w)])),
                 inputs: Object.fromEntries((node.inputs || []).filter((s) => !s.widget).map((s) => [s.name, label(s)])),
                 outputs: (node.outputs || []).map(label)};
  window.app.graph.remove(node);
  return shown;
}"""


def page_in(browser, comfy, locale: str):
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, locale=locale)
    return context, UiPage(context.new_page(), comfy).open()


@pytest.mark.parametrize("lang", ["zh", "fr"])
def test_node_shows_the_translation_of_the_browsers_language(browser, comfy, lang):
    expected = json.loads((LOCALES / lang / "nodeDefs.json").read_text(encoding="utf-8"))[NODE]
    context, ui = page_in(browser, comfy, {"zh": "zh-CN", "fr": "fr-FR"}[lang])
    try:
        version = ui.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__")
        if tuple(int(x) for x in re.findall(r"\d+", version)[:2]) < FIRST_FIXED:
            pytest.skip(f"frontend {version} drops custom nodes' translations (ComfyUI_frontend#7214)")
        shown = ui.evaluate(SHOWN, NODE)
        ui.screenshot(f"locale-{lang}")
    finally:
        context.close()
    assert shown["title"] == expected["display_name"]
    for name, label in {**shown["widgets"], **shown["inputs"]}.items():
        if name not in expected["inputs"]:
            continue  # widgets the frontend adds, e.g. control_after_generate
        assert label == expected["inputs"][name]["name"], (name, label)
    assert shown["outputs"] == [expected["outputs"][str(i)]["name"] for i in range(len(shown["outputs"]))]


def test_english_browser_gets_the_schemas_english(browser, comfy):
    node = comfy.object_info()[NODE]
    context, ui = page_in(browser, comfy, "en-US")
    try:
        shown = ui.evaluate(SHOWN, NODE)
    finally:
        context.close()
    assert shown["title"] == node["display_name"]
    inputs = [n for section in ("required", "optional") for n in node["input"].get(section, {})]
    assert {n: label for n, label in shown["widgets"].items() if n in inputs} == {n: n for n in shown["widgets"]
                                                                                  if n in inputs}
