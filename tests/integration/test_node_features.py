"""Node features newer than 0.3.75, used only where the running ComfyUI has them (nodes/features.py), and the
help pages the frontend reads from /extensions/<pack folder>/docs/<node id>.md."""
import re
import urllib.error
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The expert inputs: hidden behind the frontend's "advanced" toggle where the running ComfyUI supports it.
EXPERT = {
    "ScalewiseVARLoader": {"dtype"},
    "ScalewiseSwittiLoader": {"dtype"},
    "ScalewiseCFGGuider": {"power"},
    "ScalewiseIGGGuider": {"window_size", "operand"},
    "ScalewiseSoftCFGGuider": {"normalization", "confidence", "floor"},
    "ScalewiseSSGGuider": {"custom_betas", "dse_rescale", "interpolation", "prior_source"},
    "ScalewiseSampler": {"smooth_start_scale"},
    "ScalewiseCompareGuiders": {"smooth_start_scale"},
    "ScalewiseGuidanceSweep": {"smooth_start_scale"},
}
# Words users type in the node search, per node.
TYPED = {"ScalewiseSampler": {"VAR", "Switti"}, "ScalewiseCFGGuider": {"CFG", "guidance"},
         "ScalewiseGuidanceHeatmap": {"heat map"}, "ScalewiseVARLoader": {"VAR"}, "ScalewiseSwittiLoader": {"Switti"},
         "ScalewiseSwittiTextEncode": {"Switti"}, "ScalewiseCompareGuiders": {"compare"},
         "ScalewiseGuidanceSweep": {"sweep", "CFG scale"}}


def pack_nodes(comfy) -> dict:
    return {k: v for k, v in comfy.object_info().items()
            if v.get("python_module", "").startswith(f"custom_nodes.{comfy.pack_folder}")}


def expected_support(comfy):
    """True / False where the ComfyUI version settles it (0.3.75 has neither feature, 0.33.0 both), else None."""
    version = comfy.get_json("/system_stats")["system"]["comfyui_version"]
    v = tuple(int(x) for x in re.findall(r"\d+", version)[:3])
    return False if v <= (0, 3, 75) else True if v >= (0, 33, 0) else None


def test_expert_inputs_are_advanced_exactly_where_supported(pack_loaded):
    nodes = pack_nodes(pack_loaded)
    advanced = {node_id: {name for section in ("required", "optional")
                          for name, spec in node["input"].get(section, {}).items()
                          if len(spec) > 1 and spec[1].get("advanced")}
                for node_id, node in nodes.items()}
    supported = any(advanced.values())
    assert expected_support(pack_loaded) in (None, supported)
    for node_id, names in advanced.items():  # all or nothing, and only the expert inputs
        assert names == (EXPERT.get(node_id, set()) if supported else set()), node_id


def test_search_aliases_exactly_where_supported(pack_loaded):
    nodes = pack_nodes(pack_loaded)
    supported = any(node.get("search_aliases") for node in nodes.values())
    assert expected_support(pack_loaded) in (None, supported)
    for node_id, node in nodes.items():
        words = set(node.get("search_aliases") or [])
        assert bool(words) == supported, node_id
        if supported:
            assert TYPED.get(node_id, set()) <= words, (node_id, words)


def test_every_node_has_a_help_page_the_frontend_can_fetch(pack_loaded):
    """The frontend asks /extensions/<pack folder>/docs/<node id>.md (then <node id>/<locale>.md) and resolves
    the page's relative links against /extensions/<pack folder>/docs/."""
    base = f"/extensions/{pack_loaded.pack_folder}/docs/"
    for node_id, node in pack_nodes(pack_loaded).items():
        page = pack_loaded.request(base + node_id + ".md").decode()
        assert page.startswith("# " + node["display_name"]), node_id
        inputs = [name for section in ("required", "optional") for name in node["input"].get(section, {})]
        for name in inputs:  # every input explained, under its own name
            assert f"**{name}**" in page, (node_id, name)
        for picture in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page):
            assert pack_loaded.request(base + picture)[:8] == b"\x89PNG\r\n\x1a\n", (node_id, picture)
    with pytest.raises(urllib.error.HTTPError):
        pack_loaded.request(base + "NoSuchNode.md")


def test_help_pages_match_the_node_ids():
    pages = {p.stem for p in (ROOT / "web" / "docs").glob("*.md")}
    assert pages and all(p.startswith("Scalewise") for p in pages)
