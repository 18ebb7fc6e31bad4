"""Issue 25 §4, "the page keeps what it showed": every text the pack's extension (web/js/scalewise.js) shows on a
node, the Guidance Heatmap's scores, the Guidance Sweep's balance report and the loaders' notes, is there again
when the frontend restores the node outputs: switching workflow tabs away and back, and loading the job from the
queue panel. Both recreate the nodes, so the text must be drawn again from the outputs the frontend hands to
the onNodeOutputsUpdated hook. The frontend's own previews (the heat-map grid, the sweep's plot and grid) must come
back too. Run in every mode of .ci/run: the bundled frontend (1.32.9), 1.58.1 classic and 1.58.1 Nodes 2.0.

Expected texts come from the server's /history entry of the run (what the nodes sent), not from the page. The
loaders get copies of the tiny VAR files in new folders, so they really load (ComfyUI does not re-run a cached
loader, and other tests of the session load the same files)."""
import json
import re
import shutil
import uuid

import pytest

from .test_examples import (HEATMAP_EXAMPLE, JS_FIT_VIEW, JS_NODE_IMAGES, JS_RUN_IN_PAGE, JS_SET_WIDGETS, OUR_WORDS,
                            SWEEP, load_example)

VIEW_OF = {"ScalewiseGuidanceHeatmap": "scores_view", "ScalewiseGuidanceSweep": "balance_view",
           "ScalewiseSampler": "notes_view",
           "ScalewiseVARLoader": "notes_view", "ScalewiseSwittiLoader": "notes_view",
           "ScalewiseSwittiTextEncode": "notes_view"}
# Each text widget of the pack as the user sees it: its value, whether its text area is in the page, visible and
# read-only, whether it is serialised, and (Nodes 2.0) whether it sits inside the node's own element.
JS_VIEWS = """(ids) => ids.map(([id, name]) => {
  const node = app.graph.getNodeById(id);
  const widgets = (node?.widgets ?? []).filter((w) => w.name === name);
  const w = widgets[0];
  if (!w) return {count: 0};
  const el = w.element ?? w.inputEl;
  const box = document.querySelector(`[data-node-id="${id}"]`);
  return {count: widgets.length, value: w.value, text: el?.value, readOnly: !!el?.readOnly, serialize: w.serialize,
          inPage: !!el && document.contains(el), visible: !!el && el.getClientRects().length > 0
            && getComputedStyle(el).visibility !== "hidden" && getComputedStyle(el).display !== "none",
          inNode: !!box && !!el && box.contains(el)};
})"""
JS_OPEN_IN_TAB = "async ([wf, name]) => { await app.loadGraphData(wf, true, true, name); }"
JS_SAVED_VALUES = """() => app.graph.serialize().nodes.filter((n) => n.type.startsWith("Scalewise"))
  .map((n) => [n.id, n.type, n.widgets_values])"""
# Counts the calls of the frontend's onNodeOutputsUpdated extension hook (frontends without it never call it).
JS_PROBE = """() => {
  if (window.__scalewiseHookCalls === undefined) {
    window.__scalewiseHookCalls = 0;
    app.registerExtension({name: "scalewise.test.hook-probe", onNodeOutputsUpdated() { window.__scalewiseHookCalls++; }});
  }
  return window.__scalewiseHookCalls;
}"""
VUE = "[data-node-id]"
# the tiny 64 px VAR files tests/integration/fixtures_models.py writes into the server's models/var
TINY_VAR, TINY_VAE = "var_tiny.pth", "vae_tiny.safetensors"


def run_in_page(ui, comfy) -> dict:
    """Runs the loaded graph as the Run button does; returns the /history entry of the run."""
    end = ui.evaluate(JS_RUN_IN_PAGE)
    assert end["type"] == "execution_success", json.dumps(end)[:2000]
    history = comfy.wait(end["detail"]["prompt_id"], timeout=240)
    assert history["status"]["status_str"] == "success", json.dumps(history["status"])[:2000]
    return history


def ids_of(ui, *types) -> list[int | str]:
    return ui.evaluate("(types) => app.graph._nodes.filter((n) => types.includes(n.type)).map((n) => n.id)",
                       list(types))


def expected_texts(history: dict, nodes: dict) -> dict:
    """node id -> the key lines the page must show for that node's output in `history` (None: no text widget)."""
    out = {}
    for node_id, node_type in nodes.items():
        ui_out = history["outputs"].get(str(node_id), {})
        if node_type == "ScalewiseGuidanceHeatmap":
            scores = json.loads(ui_out["scalewise_scores"][0])
            out[node_id] = [scores["guider"], f"image 0: E {scores['evenness']['mean'][0]:.3f}"]
        elif node_type == "ScalewiseGuidanceSweep":
            report = json.loads(ui_out["scalewise_balance"][0])
            lines = [f"strength {x:g}: E {e:.3f}  D {d:.3f}"
                     for x, e, d in zip(report["strengths"], report["evenness"], report["divergence"])]
            out[node_id] = lines + ["closest at strength" if report["balance"] == "closest" else "E = D at strength"]
        else:
            notes = ui_out.get("scalewise_info", [])
            out[node_id] = ["\n".join(notes)] if notes else None
    return out


def assert_views(ui, nodes: dict, expected: dict, where: str):
    views = ui.evaluate(JS_VIEWS, [[node_id, VIEW_OF[t]] for node_id, t in nodes.items()])
    vue = ui.page.locator(VUE).count() > 0
    for (node_id, node_type), view in zip(nodes.items(), views):
        want = expected[node_id]
        if want is None:
            assert view["count"] == 0, f"{where}: node {node_id} ({node_type}) shows a text it has no output for: {view}"
            continue
        assert view["count"] == 1, f"{where}: node {node_id} ({node_type}) shows no {VIEW_OF[node_type]}: {view}"
        for line in want:
            assert line in view["value"], f"{where}: {line!r} not in node {node_id}'s text:\n{view['value']}"
        assert view["text"] == view["value"] and view["inPage"] and view["visible"], (where, node_id, view)
        assert view["readOnly"] and view["serialize"] is False, (where, node_id, view)
        if vue:
            assert view["inNode"], (where, node_id, view)


def wait_for_views(ui, nodes: dict, expected: dict, where: str, timeout_ms: int = 15000):
    """Waits until every node expected to show a text has one; else fails naming the node (assert_views)."""
    want = [[node_id, VIEW_OF[t]] for node_id, t in nodes.items() if expected[node_id] is not None]
    try:
        ui.page.wait_for_function(f"(ids) => ({JS_VIEWS})(ids).every((v) => v.count === 1 && v.value)", arg=want,
                                  timeout=timeout_ms)
    except Exception:
        assert_views(ui, nodes, expected, where)
        raise


def fit(ui, name: str):
    ui.evaluate(JS_FIT_VIEW)
    ui.page.wait_for_timeout(400)
    return ui.screenshot(name + ".png")


def mode() -> str:
    import os
    version = os.environ.get("COMFY_FRONTEND_VERSION") or "bundled"
    vue = json.loads(os.environ.get("COMFY_UI_SETTINGS") or "{}").get("Comfy.VueNodes.Enabled")
    return f"{version}-{'vue' if vue else 'classic'}"


def switch_away_and_back(ui, tab: str, marker_type: str):
    """Opens a new blank workflow (the tab bar's + button), then clicks the tab `tab` again."""
    ui.page.locator(".new-blank-workflow-button").first.click()
    ui.page.wait_for_function("(t) => !app.graph._nodes.some((n) => n.type === t)", arg=marker_type, timeout=15000)
    ui.page.locator(".workflow-tab", has_text=tab).first.click()
    ui.page.wait_for_function("(t) => app.graph._nodes.some((n) => n.type === t)", arg=marker_type, timeout=15000)


def restored_or_skip(ui, nodes, expected, calls_before: int, where: str):
    """Waits for the texts; a frontend that never called onNodeOutputsUpdated cannot give them back: skip there."""
    try:
        wait_for_views(ui, nodes, expected, where)
    except Exception:
        version = ui.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__")
        if ui.evaluate(JS_PROBE) == calls_before:
            pytest.skip(f"frontend {version} restored the outputs without calling the onNodeOutputsUpdated hook")
        raise


def heatmap_in_tab(ui, tab: str, files: tuple[str, str]) -> dict:
    """The heat-map example in a new workflow tab `tab`, its loader set to `files`; returns {node id: type} of
    its loader and heat-map nodes."""
    ui.evaluate(JS_OPEN_IN_TAB, [load_example(HEATMAP_EXAMPLE), tab])
    set_files(ui, files)
    return {n["id"]: n["type"] for n in ui.evaluate(
        "() => app.graph._nodes.map((n) => ({id: n.id, type: n.type}))")
        if n["type"] in ("ScalewiseGuidanceHeatmap", "ScalewiseVARLoader")}


def set_files(ui, files: tuple[str, str]):
    ui.evaluate(JS_SET_WIDGETS, ["ScalewiseVARLoader", {"var_name": files[0], "vae_name": files[1]}])


@pytest.fixture(scope="module")
def fresh_files(comfy):
    """fresh_files(var_name, vae_name) -> the widget values of copies of the tiny VAR files under those names, in a
    new folder of the server's models/var (the folder name claims nothing); removed after the module."""
    made = []
    models = comfy.models_dir / "var"

    def make(var_name: str, vae_name: str) -> tuple[str, str]:
        folder = f"restore-{uuid.uuid4().hex[:8]}"
        (models / folder).mkdir()
        made.append(models / folder)
        shutil.copy(models / TINY_VAR, models / folder / var_name)
        shutil.copy(models / TINY_VAE, models / folder / vae_name)
        return f"{folder}/{var_name}", f"{folder}/{vae_name}"

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def blocks_in(path) -> int:
    """Transformer blocks stored in a VAR checkpoint (.pth: its `blocks.<i>.` keys), read from the file itself."""
    import torch

    keys = torch.load(path, map_location="cpu", weights_only=True).keys()
    return len({int(m.group(1)) for k in keys if (m := re.match(r"blocks\.(\d+)\.", k))})


def loader_of(nodes: dict):
    return next(i for i, t in nodes.items() if t == "ScalewiseVARLoader")


def test_heatmap_scores_and_loader_notes_come_back_after_a_tab_switch(app_page, comfy, fresh_files):
    """The heat-map example with tiny weights under the official names var_d16.pth / vae_ch160v4096z32: the
    loader notes that both names disagree with the weights. After the run the loader shows its notes and both
    heat-map nodes their scores; after a new blank workflow and a click back on the example's tab, the same texts
    and the heat-map grids are there again. The texts are never saved with the workflow nor sent with the prompt."""
    ui = app_page
    mark = ui.mark()
    calls = ui.evaluate(JS_PROBE)
    files = fresh_files("var_d16.pth", "vae_ch160v4096z32.safetensors")
    nodes = heatmap_in_tab(ui, "restore-heatmap", files)
    assert sorted(nodes.values()) == ["ScalewiseGuidanceHeatmap"] * 2 + ["ScalewiseVARLoader"]
    saved_before = ui.evaluate(JS_SAVED_VALUES)
    prompt_before = ui.evaluate("async () => (await app.graphToPrompt()).output")
    expected = expected_texts(run_in_page(ui, comfy), nodes)
    notes = expected[loader_of(nodes)][0]
    depth = blocks_in(comfy.models_dir / "var" / files[0])
    assert depth < 16
    assert f"{files[0]}: the name 'var_d16' says d16" in notes and f"{depth} blocks" in notes, notes
    assert files[1] in notes and "ch160v4096z32" in notes, notes
    wait_for_views(ui, nodes, expected, "after the run")
    fit(ui, f"restore-heatmap-{mode()}-after-run")
    assert_views(ui, nodes, expected, "after the run")
    heat = [i for i, t in nodes.items() if t == "ScalewiseGuidanceHeatmap"]
    grids = [ui.evaluate(JS_NODE_IMAGES, i) for i in heat]
    assert all(len(g) == 1 for g in grids), grids
    # display only: the pack's nodes save the widget values they had before the run (they may have grown to fit
    # their text) and the prompt is the same
    assert ui.evaluate(JS_SAVED_VALUES) == saved_before
    assert ui.evaluate("async () => (await app.graphToPrompt()).output") == prompt_before

    switch_away_and_back(ui, "restore-heatmap", "ScalewiseGuidanceHeatmap")
    restored_or_skip(ui, nodes, expected, calls, "after the tab switch")
    fit(ui, f"restore-heatmap-{mode()}-after-tab-switch")
    assert_views(ui, nodes, expected, "after the tab switch")
    ui.page.wait_for_function(f"(ids) => ids.every((i) => ({JS_NODE_IMAGES})(i).length === 1)", arg=heat,
                              timeout=15000)
    assert [ui.evaluate(JS_NODE_IMAGES, i) for i in heat] == grids
    assert not ui.page_errors_since(mark)
    assert not ui.errors_mentioning(*OUR_WORDS, since=mark)


def test_notes_go_when_a_later_run_has_none(app_page, comfy, fresh_files):
    """The loader's notes belong to its last run: switched to files whose names claim nothing, the next run
    sends an empty list and the node shows no notes, also after a tab switch (the scores come back)."""
    ui = app_page
    mark = ui.mark()
    calls = ui.evaluate(JS_PROBE)
    nodes = heatmap_in_tab(ui, "restore-notes", fresh_files("var_d16.pth", "vae.safetensors"))
    loader = loader_of(nodes)
    first = expected_texts(run_in_page(ui, comfy), nodes)
    assert first[loader] is not None
    wait_for_views(ui, nodes, first, "after the first run")
    set_files(ui, fresh_files("var.pth", "vae.safetensors"))
    history = run_in_page(ui, comfy)
    assert history["outputs"][str(loader)]["scalewise_info"] == []      # the loader ran, with nothing to note
    second = expected_texts(history, nodes)
    assert second[loader] is None
    ui.page.wait_for_function(f"(id) => ({JS_VIEWS})([[id, 'notes_view']])[0].count === 0", arg=loader,
                              timeout=15000)
    assert_views(ui, nodes, second, "after a run without notes")
    switch_away_and_back(ui, "restore-notes", "ScalewiseGuidanceHeatmap")
    restored_or_skip(ui, nodes, second, calls, "after the tab switch")
    assert_views(ui, nodes, second, "after the tab switch")
    fit(ui, f"restore-notes-{mode()}-none")
    assert not ui.page_errors_since(mark)
    assert not ui.errors_mentioning(*OUR_WORDS, since=mark)


def test_notes_of_other_files_go_when_the_loader_is_cached(app_page, comfy, fresh_files):
    """ComfyUI does not run a loader again whose files another workflow just loaded, so no message tells the
    page. A tab showing the notes of files A, switched to files B that a second tab has just run, runs with the
    cached loader: the notes about A go, as soon as the run starts; they do not come back with a tab switch."""
    ui = app_page
    mark = ui.mark()
    calls = ui.evaluate(JS_PROBE)
    a, b = fresh_files("var_d16.pth", "vae.safetensors"), fresh_files("var.pth", "vae.safetensors")
    nodes = heatmap_in_tab(ui, "restore-cached-a", a)
    loader = loader_of(nodes)
    with_notes = expected_texts(run_in_page(ui, comfy), nodes)
    assert with_notes[loader] is not None
    wait_for_views(ui, nodes, with_notes, "after the run with files A")
    heatmap_in_tab(ui, "restore-cached-b", b)                     # the same graph with files B, in a second tab
    assert run_in_page(ui, comfy)["outputs"][str(loader)]["scalewise_info"] == []
    ui.page.locator(".workflow-tab", has_text="restore-cached-a").first.click()
    ui.page.wait_for_function("(t) => app.graph._nodes.some((n) => n.type === t)", arg="ScalewiseVARLoader",
                              timeout=15000)
    restored_or_skip(ui, nodes, with_notes, calls, "back on the first tab")
    set_files(ui, b)
    history = run_in_page(ui, comfy)
    assert str(loader) not in history["outputs"], "the loader ran again: this case needs a cached loader"
    expected = {**expected_texts(history, nodes), loader: None}
    ui.page.wait_for_function(f"(id) => ({JS_VIEWS})([[id, 'notes_view']])[0].count === 0", arg=loader,
                              timeout=15000)
    assert_views(ui, nodes, expected, "after the run with the cached loader")
    switch_away_and_back(ui, "restore-cached-a", "ScalewiseGuidanceHeatmap")
    wait_for_views(ui, nodes, expected, "after the tab switch")
    assert_views(ui, nodes, expected, "after the tab switch")
    assert not ui.page_errors_since(mark)
    assert not ui.errors_mentioning(*OUR_WORDS, since=mark)


def test_sweep_balance_and_pictures_come_back_after_a_tab_switch(app_page, comfy):
    """The built-in model's sweep (smaller: strengths 1 and 3, two images each): the node shows its balance report
    (E and D per strength, where they balance) besides its plot and grid; all three are back after a tab switch."""
    ui = app_page
    mark = ui.mark()
    calls = ui.evaluate(JS_PROBE)
    ui.evaluate(JS_OPEN_IN_TAB, [load_example(SWEEP), "restore-sweep"])
    sweep = ui.evaluate(JS_SET_WIDGETS, ["ScalewiseGuidanceSweep", {"images_per_row": 2, "strengths": "1, 3"}])
    loader = ids_of(ui, "ScalewiseVARLoader")[0]
    nodes = {sweep: "ScalewiseGuidanceSweep", loader: "ScalewiseVARLoader"}
    expected = expected_texts(run_in_page(ui, comfy), nodes)
    assert expected[loader] is None            # the built-in model: nothing to note (or cached: nothing sent)
    wait_for_views(ui, nodes, expected, "after the run")
    ui.page.wait_for_function(f"() => ({JS_NODE_IMAGES})({sweep}).length === 2", timeout=30000)
    pictures = ui.evaluate(JS_NODE_IMAGES, sweep)
    assert pictures[0] == [720, 440], pictures              # the plot, then the grid
    fit(ui, f"restore-sweep-{mode()}-after-run")
    assert_views(ui, nodes, expected, "after the run")

    switch_away_and_back(ui, "restore-sweep", "ScalewiseGuidanceSweep")
    restored_or_skip(ui, nodes, expected, calls, "after the tab switch")
    ui.page.wait_for_function(f"() => ({JS_NODE_IMAGES})({sweep}).length === 2", timeout=15000)
    assert ui.evaluate(JS_NODE_IMAGES, sweep) == pictures
    fit(ui, f"restore-sweep-{mode()}-after-tab-switch")
    assert_views(ui, nodes, expected, "after the tab switch")
    assert not ui.page_errors_since(mark)
    assert not ui.errors_mentioning(*OUR_WORDS, since=mark)


def test_heatmap_texts_come_back_when_the_job_is_loaded_from_the_queue_panel(browser, comfy, fresh_files):
    """The queue panel's "Load Workflow" on the finished heat-map job: the workflow and its outputs come back with
    the scores and the loader's notes. Frontend 1.58 reopens jobs through the server's /api/jobs, which ComfyUI
    0.3.75 does not have: skipped where the page has no queue sidebar and its request for /api/jobs got 404."""
    from .conftest import UiPage

    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    jobs_404 = []
    page = context.new_page()
    page.on("response", lambda r: "/api/jobs" in r.url and r.status == 404 and jobs_404.append(r.url))
    ui = UiPage(page, comfy).open()
    try:
        mark = ui.mark()
        calls = ui.evaluate(JS_PROBE)
        nodes = heatmap_in_tab(ui, "restore-queue", fresh_files("var_d16.pth", "vae.safetensors"))
        expected = expected_texts(run_in_page(ui, comfy), nodes)
        assert expected[loader_of(nodes)] is not None
        wait_for_views(ui, nodes, expected, "after the run")
        ui.page.locator(".new-blank-workflow-button").first.click()
        ui.page.wait_for_function("() => !app.graph._nodes.some((n) => n.type === 'ScalewiseVARLoader')",
                                  timeout=15000)
        queue_tab = ui.page.locator(".queue-tab-button")     # the sidebar's queue panel (its history of jobs)
        if not queue_tab.count() and jobs_404:
            version = ui.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__")
            pytest.skip(f"frontend {version} has no queue sidebar; its job list reads /api/jobs, which this ComfyUI "
                        f"answers with 404 ({jobs_404[0]})")
        queue_tab.first.click()
        items = ui.page.locator(".task-item")
        items.first.wait_for(timeout=15000)
        items.first.click(button="right")
        ui.page.get_by_role("menuitem", name="Load Workflow").click()
        ui.page.wait_for_function("() => app.graph._nodes.some((n) => n.type === 'ScalewiseGuidanceHeatmap')",
                                  timeout=15000)
        restored_or_skip(ui, nodes, expected, calls, "after loading the job from the queue panel")
        fit(ui, f"restore-heatmap-{mode()}-from-queue-panel")
        assert_views(ui, nodes, expected, "after loading the job from the queue panel")
        assert not ui.page_errors_since(mark)
        assert not ui.errors_mentioning(*OUR_WORDS, since=mark)
    finally:
        context.close()


# Moves the nodes of `types` into a subgraph each (as "Convert to Subgraph" does); returns [[subgraph id, node id,
# node type]] of the moved nodes, which now live in the subgraph definitions.
JS_INTO_SUBGRAPHS = """(types) => types.map((type) => {
  const node = app.graph._nodes.find((n) => n.type === type);
  const {subgraph} = app.graph.convertToSubgraph(new Set([node]));
  const inner = subgraph.nodes.find((n) => n.type === type);
  return [subgraph.id, inner.id, type];
})"""
JS_INNER_TEXTS = """(items) => items.map(([sg, id, type, name]) => {
  const node = app.rootGraph.subgraphs.get(sg)?.getNodeById(id);
  const widgets = (node?.widgets ?? []).filter((w) => w.name === name);
  return {count: widgets.length, value: widgets[0]?.value ?? null};
})"""


def test_texts_inside_subgraphs_come_back_after_a_tab_switch(app_page, comfy, fresh_files):
    """The loader and a heat-map node moved into subgraphs: the outputs are then keyed by the subgraph's id and
    the inner node's id (execution ids "<subgraph node>:<node>" during the run), and the texts still come back."""
    ui = app_page
    mark = ui.mark()
    calls = ui.evaluate(JS_PROBE)
    heatmap_in_tab(ui, "restore-subgraphs", fresh_files("var_d16.pth", "vae.safetensors"))
    inner = ui.evaluate(JS_INTO_SUBGRAPHS, ["ScalewiseVARLoader", "ScalewiseGuidanceHeatmap"])
    assert not ids_of(ui, "ScalewiseVARLoader") and len(ids_of(ui, "ScalewiseGuidanceHeatmap")) == 1
    history = run_in_page(ui, comfy)
    expected = []
    for sg, node_id, node_type in inner:
        # the run's outputs of the inner node: the prompt id of a node in a subgraph ends with ":<its id>"
        keys = [k for k in history["outputs"] if k.endswith(f":{node_id}") and ":" in k]
        assert len(keys) == 1, (node_type, node_id, list(history["outputs"]))
        want = expected_texts({"outputs": {"x": history["outputs"][keys[0]]}}, {"x": node_type})["x"]
        assert want is not None, (node_type, history["outputs"][keys[0]])
        expected.append(((sg, node_id, node_type, VIEW_OF[node_type]), want))
    items = [list(item) for item, _ in expected]

    def check(where):
        try:
            ui.page.wait_for_function(f"(items) => ({JS_INNER_TEXTS})(items).every((v) => v.count === 1)",
                                      arg=items, timeout=15000)
        except Exception:
            pass                                   # the assertions below say which text is missing
        for (item, want), got in zip(expected, ui.evaluate(JS_INNER_TEXTS, items)):
            assert got["count"] == 1, (where, item, got)
            for line in want:
                assert line in got["value"], (where, item, line, got["value"])

    check("after the run")
    switch_away_and_back(ui, "restore-subgraphs", "ScalewiseGuidanceHeatmap")
    try:
        check("after the tab switch")
    except Exception:
        if ui.evaluate(JS_PROBE) == calls:
            pytest.skip("the frontend restored the outputs without calling the onNodeOutputsUpdated hook")
        raise
    fit(ui, f"restore-subgraphs-{mode()}-after-tab-switch")
    assert not ui.page_errors_since(mark)
    assert not ui.errors_mentioning(*OUR_WORDS, since=mark)


def test_the_samplers_note_on_an_empty_mask_shows_and_comes_back(app_page, comfy):
    """The in-painting example with a JPEG (no alpha: core Load Image gives an all-zero mask): the sampler keeps
    the image and says so on the node; the note comes back after a tab switch."""
    from PIL import Image
    ui = app_page
    mark = ui.mark()
    calls = ui.evaluate(JS_PROBE)
    jpeg = f"scalewise_ui_no_alpha_{uuid.uuid4().hex[:8]}.jpg"  # a new file: Load Image and the sampler really run
    Image.open(comfy.work / "input" / "scalewise_circle.png").convert("RGB").save(comfy.work / "input" / jpeg)
    ui.evaluate(JS_OPEN_IN_TAB, [load_example("Tiny shapes, inpainting"), "restore-sampler-note"])
    ui.evaluate(JS_SET_WIDGETS, ["LoadImage", {"image": jpeg}])
    nodes = {i: "ScalewiseSampler" for i in ids_of(ui, "ScalewiseSampler")}
    expected = expected_texts(run_in_page(ui, comfy), nodes)
    assert len(nodes) == 1 and expected[next(iter(nodes))][0].startswith("the mask marks nothing"), expected
    wait_for_views(ui, nodes, expected, "after the run")
    fit(ui, f"restore-sampler-note-{mode()}-after-run")
    switch_away_and_back(ui, "restore-sampler-note", "ScalewiseSampler")
    restored_or_skip(ui, nodes, expected, calls, "after the tab switch")
    assert_views(ui, nodes, expected, "after the tab switch")
    assert not ui.page_errors_since(mark)
    assert not ui.errors_mentioning(*OUR_WORDS, since=mark)
