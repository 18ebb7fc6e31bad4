"""Smoke tests of the browser harness; they need no pack node."""


def test_page_loads(ui_page, comfy):
    assert ui_page.evaluate("() => !!app.graph && typeof app.graph.serialize === 'function'")
    registered = ui_page.evaluate("() => Object.keys(LiteGraph.registered_node_types)")
    assert "KSampler" in registered
    assert comfy.get_json("/settings/Comfy.TutorialCompleted") is True
    path = ui_page.screenshot("smoke-default-graph")
    assert path.stat().st_size > 10_000
    assert not ui_page.page_errors, ui_page.page_errors
