"""Help pages (web/docs/<node id>.md): their inputs sections are what tools/help_pages.py makes of the schemas the
real server reports, so a changed input (name, type, default, range, tooltip) without regenerated pages fails."""
import pytest

from scalewise.tools import help_pages


def test_every_page_has_its_inputs_generated_from_the_schema(pack_loaded):
    changed = help_pages.outdated(pack_loaded.object_info())
    assert not changed, ("help pages out of date; run tools/help_pages.py --server ... --write: "
                         f"{sorted(p.name for p in changed)}")


def test_a_changed_schema_changes_the_page(pack_loaded):
    """The generated text follows the schema: a changed tooltip, default or range shows in the page."""
    node = pack_loaded.object_info()["ScalewiseCFGGuider"]
    page = (help_pages.DOCS / "ScalewiseCFGGuider.md").read_text(encoding="utf-8")
    cfg = node["input"]["required"]["cfg"][1]
    changed = {**node, "input": {**node["input"], "required": {
        **node["input"]["required"], "cfg": ["FLOAT", {**cfg, "tooltip": "New words.", "default": 2.5, "max": 9.0}]}}}
    text = help_pages.render(page, changed)
    assert "- **cfg** — *FLOAT, default 2.5, 0 to 9, step 0.05.* New words." in text
    assert text.replace("New words.", cfg["tooltip"]).replace("default 2.5", "default 4").replace(
        "0 to 9,", "0 to 30,") == page  # and nothing else: the hand-written prose around it is kept


def test_a_page_without_markers_is_refused():
    with pytest.raises(ValueError, match="no generated inputs section"):
        help_pages.render("# A page\n\n## Inputs\n\n- **x** — by hand\n", {"input": {}})
