"""Token Pruning (FastVAR) in the real server: MODEL -> MODEL on the built-in model; the unpatched MODEL stays exact,
the patched one samples pruned, and bad settings are refused naming the widget."""
import json

from scalewise.models.shapes import BUILTIN_NAME

from .test_nodes import saved_images
from .test_reliability import outcome


def pruning_graph(comfy, exact_too=False, **widgets):
    """Built-in model -> Token Pruning -> sampler (CFG 3, 2 images); with `exact_too` a second sampler on the
    loader's own MODEL output. Returns (prompt, pruned save node, exact save node or None)."""
    g = comfy.graph_builder()
    model = g.node("ScalewiseVARLoader", var_name=BUILTIN_NAME, vae_name=BUILTIN_NAME, dtype="fp32")
    settings = dict(preset="fastvar", keep_ratios="0.5, 0.25", skip_last=0)
    pruned = g.node("ScalewiseTokenPruning", model=model.out(0), **{**settings, **widgets})
    cond = g.node("ScalewiseImageNetClass", class_name="tiny-shapes 5: star", class_id=-1, batch_classes="")
    cfg = g.node("ScalewiseCFGGuider", cfg=3.0, schedule="constant", start_scale=0, end_scale=0, power=1.0)
    saves = []
    for source in (pruned, model) if exact_too else (pruned,):
        sampler = g.node("ScalewiseSampler", model=source.out(0), conditioning=cond.out(0), guider=cfg.out(0),
                         seed=7, batch_size=2, top_k=0, top_p=0.9, more_smooth=False, preview="off",
                         smooth_start_scale=0, last_scale_temperature=1.0)
        saves.append(g.node("SaveImage", images=sampler.out(0), filename_prefix="pruning_test"))
    return g.finalize(), saves[0], saves[1] if exact_too else None


def exact_graph(comfy):
    g = comfy.graph_builder()
    model = g.node("ScalewiseVARLoader", var_name=BUILTIN_NAME, vae_name=BUILTIN_NAME, dtype="fp32")
    cond = g.node("ScalewiseImageNetClass", class_name="tiny-shapes 5: star", class_id=-1, batch_classes="")
    cfg = g.node("ScalewiseCFGGuider", cfg=3.0, schedule="constant", start_scale=0, end_scale=0, power=1.0)
    sampler = g.node("ScalewiseSampler", model=model.out(0), conditioning=cond.out(0), guider=cfg.out(0),
                     seed=7, batch_size=2, top_k=0, top_p=0.9, more_smooth=False, preview="off",
                     smooth_start_scale=0, last_scale_temperature=1.0)
    save = g.node("SaveImage", images=sampler.out(0), filename_prefix="pruning_exact")
    return g.finalize(), save


def pixels(images):
    return [im.tobytes() for im in images]


def test_pruned_and_unpatched_models_from_one_loader(pack_loaded):
    """The patched MODEL samples pruned images; the loader's own MODEL, in the same graph, gives the images of a
    graph without the Token Pruning node (the policy lives in the clone's model_options only)."""
    prompt, pruned_save, exact_save = pruning_graph(pack_loaded, exact_too=True)
    entry, _ = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    pruned, beside = saved_images(pack_loaded, entry, pruned_save), saved_images(pack_loaded, entry, exact_save)
    prompt, save = exact_graph(pack_loaded)
    entry, _ = pack_loaded.run(prompt, timeout=300)
    exact = saved_images(pack_loaded, entry, save)
    assert len(pruned) == 2 and pruned[0].size == (64, 64)
    assert pixels(beside) == pixels(exact)
    assert pixels(pruned) != pixels(exact)


def test_bad_settings_are_refused_naming_the_widget(pack_loaded):
    bad = outcome(pack_loaded, pruning_graph(pack_loaded, preset="custom", keep_ratios="0.5, x")[0])
    assert bad.kind == "rejected" and "keep_ratios" in bad.message and "'x'" in bad.message
    zero = outcome(pack_loaded, pruning_graph(pack_loaded, preset="custom", keep_ratios="0")[0])
    assert zero.kind == "rejected" and "keep_ratios" in zero.message
    too_many = outcome(pack_loaded, pruning_graph(pack_loaded, preset="custom", keep_ratios="0.5", skip_last=3)[0])
    assert too_many.kind == "error" and "no unpruned scale" in too_many.message and "4 scales" in too_many.message
