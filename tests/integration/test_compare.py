"""Compare Guiders and Guidance Sweep (issue 16) through a real ComfyUI server, on the built-in tiny-shapes model:
the grid, batch and heat maps, the same seeds as the Scale-wise Sampler, one progress bar, the balance point,
Cancel, and bad input named."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from scalewise.guidance.balance import balance_point
from scalewise.guidance.grid import GridLayout, tile_size
from scalewise.models.shapes import BUILTIN_NAME

from .fixtures_models import VAE, VAR_TINY_256

STAR = "tiny-shapes 5: star"
SETTINGS = dict(top_k=900, top_p=0.8, more_smooth=False, preview="every scale", smooth_start_scale=0,
                last_scale_temperature=1.0)


def _cfg(g, cfg=3.0, schedule="constant", base=None):
    return g.node("ScalewiseCFGGuider", cfg=cfg, schedule=schedule, start_scale=0, end_scale=0, power=1.0,
                  **({"base": base.out(0)} if base else {}))


def _igg(g, scale=3.0):
    return g.node("ScalewiseIGGGuider", scale=scale, schedule="constant", window="global", window_size=3,
                  operand="raw_logits", start_scale=0, end_scale=0)


def _ssg(g, beta=0.1, schedule="constant", custom_betas=""):
    return g.node("ScalewiseSSGGuider", beta=beta, schedule=schedule, custom_betas=custom_betas, dse_rescale=True,
                  interpolation="bilinear", prior_source="guided_pre_ssg")


def _model(g, var=BUILTIN_NAME, vae=BUILTIN_NAME, class_name=STAR, class_id=-1):
    model = g.node("ScalewiseVARLoader", var_name=var, vae_name=vae, dtype="fp32")
    cond = g.node("ScalewiseImageNetClass", class_name=class_name, class_id=class_id, batch_classes="")
    return model, cond


def compare_graph(comfy, guiders=("cfg", "igg"), seed=3, images_per_row=2, **model_kw):
    g = comfy.graph_builder()
    model, cond = _model(g, **model_kw)
    makers = {"cfg": lambda: _cfg(g), "igg": lambda: _igg(g), "cfg6": lambda: _cfg(g, 6.0),
              "ssg": lambda: _ssg(g, 0.2),
              "softcfg_alone": lambda: g.node("ScalewiseSoftCFGGuider", strength=1.0, normalization="global",
                                              confidence="max", floor=0.05,
                                              base=_ssg(g).out(0))}
    slots = {f"guider_{i + 1}": makers[name]().out(0) for i, name in enumerate(guiders) if name}
    node = g.node("ScalewiseCompareGuiders", model=model.out(0), conditioning=cond.out(0), seed=seed,
                  images_per_row=images_per_row, **SETTINGS, **slots)
    saves = [g.node("SaveImage", images=node.out(i), filename_prefix=f"compare_{i}") for i in range(3)]
    return g.finalize(), node, saves


def sweep_graph(comfy, strengths="1, 3", seed=3, images_per_row=2, guider="cfg"):
    g = comfy.graph_builder()
    model, cond = _model(g)
    top = _cfg(g) if guider == "cfg" else _ssg(g, schedule="custom", custom_betas="0, 0.1")
    node = g.node("ScalewiseGuidanceSweep", model=model.out(0), conditioning=cond.out(0), seed=seed,
                  images_per_row=images_per_row, **SETTINGS, guider=top.out(0), strengths=strengths)
    saves = [g.node("SaveImage", images=node.out(i), filename_prefix=f"sweep_{i}") for i in (0, 1, 3)]
    return g.finalize(), node, saves


def sampler_images(comfy, guider_maker, seed, batch):
    """The same guider and seeds through the Scale-wise Sampler: the reference the comparison must reproduce."""
    g = comfy.graph_builder()
    model, cond = _model(g)
    sampler = g.node("ScalewiseSampler", model=model.out(0), conditioning=cond.out(0), guider=guider_maker(g).out(0),
                     seed=seed, batch_size=batch, **SETTINGS)
    save = g.node("SaveImage", images=sampler.out(0), filename_prefix="reference")
    heat = g.node("ScalewiseGuidanceHeatmap", trace=sampler.out(1), normalize="scale", colormap="magma",
                  overlay_alpha=0.5)
    entry = ok(comfy, g.finalize())
    return files(comfy, entry, save), json.loads(entry["outputs"][heat.id]["scalewise_scores"][0])


def ok(comfy, prompt, timeout=300):
    entry, _ = comfy.run(prompt, timeout=timeout)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    return entry


def files(comfy, entry, save) -> list[np.ndarray]:
    return [np.asarray(Image.open(comfy.output_dir / i["subfolder"] / i["filename"]).convert("RGB"))
            for i in entry["outputs"][save.id]["images"]]


def failure(comfy, prompt) -> str:
    entry, _ = comfy.run(prompt)
    assert entry["status"]["status_str"] == "error", entry["status"]
    return json.dumps(entry["status"]["messages"])


def test_compare_reproduces_the_sampler_on_the_same_seeds(pack_loaded):
    prompt, node, (grid_save, batch_save, heat_save) = compare_graph(pack_loaded, seed=3, images_per_row=2)
    entry, ws = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", entry["status"]
    batch = files(pack_loaded, entry, batch_save)
    assert len(batch) == 4 and all(b.shape == (64, 64, 3) for b in batch)
    cfg_ref, _ = sampler_images(pack_loaded, _cfg, 3, 2)
    igg_ref, _ = sampler_images(pack_loaded, _igg, 3, 2)
    for got, want in zip(batch, cfg_ref + igg_ref):       # row by row, column i = image i of the seed
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    # the grid: a row per guider, a column per seed, each image in its cell (enlarged 2x, nearest)
    (grid,), (heat,) = files(pack_loaded, entry, grid_save), files(pack_loaded, entry, heat_save)
    layout = GridLayout.for_grid(2, 2, tile_size(64))
    assert grid.shape == heat.shape == (layout.height, layout.width, 3)
    for index, image in enumerate(batch):
        x, y = layout.cell(*divmod(index, 2))
        cell = grid[y:y + layout.tile, x:x + layout.tile]
        assert np.abs(cell[::2, ::2].astype(int) - image.astype(int)).max() <= 1
    # the row labels are drawn left of the cells; the heat-map grid differs from the image grid in its cells
    assert grid[layout.header_height:, :layout.label_width].std() > 0
    assert np.abs(heat.astype(int) - grid.astype(int))[layout.header_height:, layout.label_width:].mean() > 5
    # one progress bar over the comparison: 2 rows x 4 scales
    progress = [m["data"] for m in ws.messages if m["type"] == "progress" and m["data"].get("node") == node.id]
    assert [p["value"] for p in progress] == list(range(1, 9)) and {p["max"] for p in progress} == {8}
    assert len(entry["outputs"][node.id]["images"]) == 1   # the grid shown in the node


def test_sweep_plot_and_balance(pack_loaded):
    prompt, node, (grid_save, plot_save, batch_save) = sweep_graph(pack_loaded, strengths="3, 1, 6", seed=2)
    entry = ok(pack_loaded, prompt)
    report = json.loads(entry["outputs"][node.id]["scalewise_balance"][0])
    assert report["strengths"] == [1.0, 3.0, 6.0] and report["mask"] == "judge"
    assert all(0 <= v <= 1 for v in report["evenness"] + report["divergence"])
    expected = balance_point(report["strengths"], report["evenness"], report["divergence"])
    assert report["balance_strength"] == pytest.approx(expected.strength) and report["balance"] == expected.kind
    # evenness at strength 3 equals the Guidance Heatmap's on the Scale-wise Sampler's images of the same seeds
    images, scores = sampler_images(pack_loaded, lambda g: _cfg(g, 3.0), 2, 2)
    assert report["evenness"][1] == pytest.approx(np.mean(scores["evenness"]["mean"]), abs=1e-6)
    batch = files(pack_loaded, entry, batch_save)
    assert len(batch) == 6 and np.abs(batch[2].astype(int) - images[0].astype(int)).max() <= 1
    (plot,) = files(pack_loaded, entry, plot_save)
    assert plot.shape == (440, 720, 3)
    assert len(entry["outputs"][node.id]["images"]) == 2   # plot and grid shown in the node


@pytest.mark.parametrize("strengths,fragment", [("", "empty"), ("1, x", "entry 2 is 'x', not a number"),
                                                ("2, 2", "appears twice")])
def test_bad_strengths_are_refused_naming_the_input(pack_loaded, strengths, fragment):
    prompt, _, _ = sweep_graph(pack_loaded, strengths=strengths)
    with pytest.raises(pack_loaded.PromptRejected) as info:
        pack_loaded.queue(prompt)
    body = json.dumps(info.value.body)
    assert info.value.status == 400 and "strengths" in body and fragment in body, body


@pytest.mark.parametrize("build,fragments", [
    (lambda c: sweep_graph(c, strengths="1, 2, 3, 4, 5", images_per_row=13)[0],
     ("5 strengths x images_per_row 13 = 65 images", "at most 64", "images_per_row to 12")),
    (lambda c: compare_graph(c, guiders=("cfg", "igg", "cfg6", "ssg"), images_per_row=17)[0],
     ("4 guiders x images_per_row 17 = 68", "at most 64")),
    (lambda c: compare_graph(c, guiders=())[0], ("guider_1",)),
    (lambda c: compare_graph(c, guiders=("cfg", "softcfg_alone"))[0],
     ("guider_2", "SoftCFG modifies the unconditional branch of a CFG or IGG guider")),
    (lambda c: sweep_graph(c, guider="ssg_custom")[0], ("strengths", "custom beta schedule")),
    (lambda c: sweep_graph(c, strengths="1, 200")[0], ("strengths: 200", "cfg must be in")),
])
def test_bad_comparisons_fail_naming_the_input(pack_loaded, build, fragments):
    message = failure(pack_loaded, build(pack_loaded))
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    ok(pack_loaded, compare_graph(pack_loaded, guiders=("cfg",), images_per_row=1)[0])   # still serving


def test_cancel_mid_comparison(pack_loaded):
    """Cancel during the second row of a slow comparison (the 10-scale 256 px stand-in) stops it there."""
    prompt, node, _ = compare_graph(pack_loaded, guiders=("cfg", "igg", "cfg6"), images_per_row=4, var=VAR_TINY_256,
                                    vae=VAE, class_name="207: golden retriever", class_id=-1)
    with pack_loaded.ws() as ws:
        pid = pack_loaded.queue(prompt, client_id=ws.client_id)
        ws.wait_for(lambda m: m["type"] == "progress" and m["data"].get("node") == node.id
                    and m["data"]["value"] >= 12, timeout=300)
        pack_loaded.interrupt()
        end = ws.wait_end(pid, timeout=300)
        values = [m["data"]["value"] for m in ws.messages if m["type"] == "progress" and m["data"].get("node") == node.id]
    assert end["type"] == "execution_interrupted", end
    assert max(values) < 30                                   # 3 rows x 10 scales never completed
    ok(pack_loaded, compare_graph(pack_loaded, guiders=("cfg",), images_per_row=1)[0])


def test_heatmap_cells_come_from_the_trace(pack_loaded):
    """The heat-map grid of one CFG row: its cell equals the overlay rebuilt from the sampler's trace scores."""
    prompt, node, (_, batch_save, heat_save) = compare_graph(pack_loaded, guiders=("cfg",), images_per_row=1)
    entry = ok(pack_loaded, prompt)
    (heat,), (image,) = files(pack_loaded, entry, heat_save), files(pack_loaded, entry, batch_save)
    layout = GridLayout.for_grid(1, 1, tile_size(64))
    x, y = layout.cell(0, 0)
    cell = torch.from_numpy(heat[y:y + layout.tile:2, x:x + layout.tile:2].astype(np.float32) / 255)
    photo = torch.from_numpy(image.astype(np.float32) / 255)
    colour = (cell - 0.5 * photo) / 0.5                        # alpha 0.5: the colour-mapped magnitude
    # the finest scale is 4x4: every 16 px block is one token, one colour
    blocks = colour.reshape(4, 16, 4, 16, 3)
    assert (blocks - blocks[:, :1, :, :1]).abs().max() < 4 / 255


def test_out_of_memory_in_a_row_names_images_per_row(pack_loaded):
    """The sampler's out-of-memory path, shared: a simulated OOM (tests/test_packs/scalewise_fault_injection) in
    the middle of a comparison row becomes an error naming images_per_row; the next comparison works."""
    trigger = pack_loaded.work / "user" / "scalewise_fault_oom"
    trigger.write_text("2")
    message = failure(pack_loaded, compare_graph(pack_loaded, images_per_row=3)[0])
    assert not trigger.exists(), "the fault-injection test pack is not active"
    for fragment in ("ScalewiseCompareGuiders", "out of memory for a batch of 3", "lower images_per_row"):
        assert fragment in message, (fragment, message)
    ok(pack_loaded, compare_graph(pack_loaded, guiders=("cfg",), images_per_row=1)[0])


def _sweep_report(comfy, prompt, node):
    return json.loads(ok(comfy, prompt)["outputs"][node.id]["scalewise_balance"][0])


def test_sweep_divergence_needs_a_mask(pack_loaded):
    """A random-weight model without a mask: E only, balance -1. A connected mask is used (an all-foreground one
    leaves no background: D undefined, balance -1); a square mask of another size is resized (the same report as
    at the images' size), one of another shape is refused naming `mask` and its width x height."""
    from .fixtures_models import VAR_TINY

    def graph(mask_size=None, mask_count=1, mask_height=None):
        g = pack_loaded.graph_builder()
        model, cond = _model(g, var=VAR_TINY, vae=VAE, class_name="207: golden retriever")
        extra = {}
        if mask_size:
            solid = g.node("SolidMask", value=1.0, width=mask_size, height=mask_height or mask_size)
            extra["mask"] = solid.out(0)
        node = g.node("ScalewiseGuidanceSweep", model=model.out(0), conditioning=cond.out(0), seed=0,
                      images_per_row=2, **SETTINGS, guider=_cfg(g).out(0), strengths="1, 2", **extra)
        return g.finalize(), node

    report = _sweep_report(pack_loaded, *graph())
    assert report["divergence"] is None and report["balance_strength"] == -1 and report["mask"] is None
    assert len(report["evenness"]) == 2
    report = _sweep_report(pack_loaded, *graph(mask_size=64))
    assert report["mask"] == "connected" and report["divergence"] == [None, None]
    assert report["balance_strength"] == -1 and report["balance"] is None
    assert _sweep_report(pack_loaded, *graph(mask_size=32)) == report
    message = failure(pack_loaded, graph(mask_size=32, mask_height=48)[0])
    assert "mask is 32x48 (width x height) but the images are 64x64" in message, message


# -- editing in comparisons: the image and mask of the Scale-wise Sampler -------------------------------------

CIRCLE = "scalewise_circle.png"  # 64 px RGBA in the input folder: alpha = the mask editor's mask (white = regenerate)


def _edited(g, node_id, with_mask=True, **inputs):
    load = g.node("LoadImage", image=CIRCLE)
    model, cond = _model(g)
    edit = {"image": load.out(0), **({"mask": load.out(1)} if with_mask else {})}
    return g.node(node_id, model=model.out(0), conditioning=cond.out(0), **SETTINGS, **inputs, **edit)


def test_inputs_keep_their_order_and_editing_comes_last(pack_loaded):
    info = pack_loaded.object_info()
    assert info["ScalewiseCompareGuiders"]["input_order"]["optional"] == [
        "guider_1", "guider_2", "guider_3", "guider_4", "image", "mask", "temperature"]  # inputs added later: last
    assert info["ScalewiseGuidanceSweep"]["input_order"]["optional"] == ["mask", "image", "temperature"]


def test_an_edit_in_compare_equals_the_samplers_edit(pack_loaded):
    g = pack_loaded.graph_builder()
    node = _edited(g, "ScalewiseCompareGuiders", seed=5, images_per_row=2, guider_1=_cfg(g).out(0),
                   guider_2=_igg(g).out(0))
    batch_save = g.node("SaveImage", images=node.out(1), filename_prefix="compare_edit")
    entry = ok(pack_loaded, g.finalize())
    batch = files(pack_loaded, entry, batch_save)
    assert entry["outputs"][node.id]["scalewise_info"] == []      # the notes of an edit (none here)
    for row, maker in enumerate((_cfg, _igg)):
        s = pack_loaded.graph_builder()
        sampler = _edited(s, "ScalewiseSampler", seed=5, batch_size=2, guider=maker(s).out(0))
        save = s.node("SaveImage", images=sampler.out(0), filename_prefix="sampler_edit")
        reference = files(pack_loaded, ok(pack_loaded, s.finalize()), save)
        for got, want in zip(batch[2 * row:2 * row + 2], reference):
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    # the edit did something: the kept region is the picture's, unlike the same comparison without it
    plain, _, (_, plain_save, _) = compare_graph(pack_loaded, seed=5, images_per_row=2)
    unedited = files(pack_loaded, ok(pack_loaded, plain), plain_save)
    assert max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(batch, unedited)) > 50


def test_a_sweep_of_an_edit_measures_d_on_the_regenerated_region(pack_loaded):
    """With an image, the sweep's mask is the edit's; D is the Guidance Heatmap's on the Sampler's same edit."""
    g = pack_loaded.graph_builder()
    node = _edited(g, "ScalewiseGuidanceSweep", seed=5, images_per_row=2, guider=_cfg(g).out(0), strengths="1, 3")
    report = json.loads(ok(pack_loaded, g.finalize())["outputs"][node.id]["scalewise_balance"][0])
    assert report["mask"] == "edit" and len(report["divergence"]) == 2
    s = pack_loaded.graph_builder()
    sampler = _edited(s, "ScalewiseSampler", seed=5, batch_size=2, guider=_cfg(s, 3.0).out(0))
    heat = s.node("ScalewiseGuidanceHeatmap", trace=sampler.out(1), normalize="scale", colormap="magma",
                  overlay_alpha=0.5)
    scores = json.loads(ok(pack_loaded, s.finalize())["outputs"][heat.id]["scalewise_scores"][0])
    assert report["evenness"][1] == pytest.approx(np.mean(scores["evenness"]["mean"]), abs=1e-6)
    assert report["divergence"][1] == pytest.approx(np.mean(scores["divergence"]["mean"]), abs=1e-6)


def test_a_comparison_mask_needs_the_image(pack_loaded):
    g = pack_loaded.graph_builder()
    model, cond = _model(g)
    solid = g.node("SolidMask", value=1.0, width=64, height=64)
    g.node("ScalewiseCompareGuiders", model=model.out(0), conditioning=cond.out(0), seed=0, images_per_row=1,
           **SETTINGS, guider_1=_cfg(g).out(0), mask=solid.out(0))
    message = failure(pack_loaded, g.finalize())
    assert "mask is connected but image is not" in message, message
