"""The built-in scenes-128 model (issue #17) through a real ComfyUI server: offered by the loader next to tiny-shapes,
its classes in the picker after tiny-shapes', a run with it gives 128 px images, the two built-in models' files and
class sets do not mix, and the Guidance Sweep node takes the divergence masks from the scenes judge."""
import json

import pytest

from scalewise.models.builtin import SCENES_MODEL, SHAPES_MODEL

from .test_builtin_model import _options, _set, load_workflow, run_error, run_images
from .test_compare import SETTINGS, _cfg, _model, _sweep_report

SCENES, TINY = SCENES_MODEL.loader_name, SHAPES_MODEL.loader_name
STAR = SCENES_MODEL.class_names.index("star")
SCENES_STAR = f"scenes-128 {STAR}: star"


def scenes_workflow(batch=2):
    """The start-here workflow switched to the scenes model and one of its classes."""
    prompt = _set(load_workflow(), "ScalewiseVARLoader", var_name=SCENES, vae_name=SCENES, dtype="fp32")
    _set(prompt, "ScalewiseImageNetClass", class_name=SCENES_STAR)
    return _set(prompt, "ScalewiseSampler", batch_size=batch)


def test_class_picker_lists_the_scenes_classes_after_the_tiny_ones(pack_loaded):
    options = _options(pack_loaded, "ScalewiseImageNetClass", "class_name")
    scenes = [f"scenes-128 {i}: {name}" for i, name in enumerate(SCENES_MODEL.class_names)]
    assert options[1012:1022] == scenes and options[1022] == "scenes-128 10: (null / unconditional)"
    assert len(options) == 1023 and options[1011] == "tiny-shapes 10: (null / unconditional)"


def test_a_scenes_run_gives_128_px_images(pack_loaded):
    images = run_images(pack_loaded, scenes_workflow())
    assert len(images) == 2 and all(im.size == (128, 128) for im in images)
    assert images[0].tobytes() != images[1].tobytes()


@pytest.mark.parametrize("var_name,vae_name", [(TINY, SCENES), (SCENES, TINY)])
def test_the_two_builtin_models_do_not_mix(pack_loaded, var_name, vae_name):
    prompt = _set(load_workflow(), "ScalewiseVARLoader", var_name=var_name, vae_name=vae_name)
    with pytest.raises(pack_loaded.PromptRejected) as info:
        pack_loaded.queue(prompt)
    body = json.dumps(info.value.body)
    assert info.value.status == 400
    for fragment in ("vae_name", vae_name, var_name, "built-in"):
        assert fragment in body, (fragment, body)


def test_a_tiny_shapes_class_into_the_scenes_model_is_refused(pack_loaded):
    prompt = _set(scenes_workflow(), "ScalewiseImageNetClass", class_name="tiny-shapes 5: star")
    message = run_error(pack_loaded, prompt)
    for fragment in ("conditioning", "tiny-shapes 5: star", "a class of the built-in tiny-shapes model",
                     "the built-in scenes-128 model", "scenes-128 N: name"):
        assert fragment in message, (fragment, message)


def test_guidance_sweep_measures_divergence_with_the_scenes_judge(pack_loaded):
    """Without a MASK input, the sweep on the scenes model segments its images with the scenes judge: the report
    says the mask came from the judge and gives a divergence per strength (none without a mask: test_compare)."""
    g = pack_loaded.graph_builder()
    model, cond = _model(g, var=SCENES, vae=SCENES, class_name=SCENES_STAR)
    node = g.node("ScalewiseGuidanceSweep", model=model.out(0), conditioning=cond.out(0), seed=3, images_per_row=2,
                  **SETTINGS, guider=_cfg(g).out(0), strengths="1, 2")
    g.node("SaveImage", images=node.out(0), filename_prefix="scenes_sweep")
    report = _sweep_report(pack_loaded, g.finalize(), node)
    assert report["mask"] == "judge" and len(report["divergence"]) == 2, report
    assert all(d is None or 0 <= d <= 1 for d in report["divergence"]), report
