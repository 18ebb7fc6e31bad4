"""Editing (issue 15) through a real ComfyUI server: core Load Image (its alpha = the mask editor's mask) feeds the
sampler's image and mask; the server's result equals the library's; fitting, batches, refusals, the heat map."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scalewise.guidance import CFG, Draw, Edit, Generation, sample
from scalewise.models.shapes import BUILTIN_NAME, CLASS_NAMES, load_shapes_model

REPO = Path(__file__).resolve().parents[2]
PICTURES = REPO / "example_workflows" / "input"
CIRCLE, BAND = "scalewise_circle.png", "scalewise_circle_band.png"
STAR = CLASS_NAMES.index("star")


def _id(prompt, class_type):
    return next(k for k, v in prompt.items() if v["class_type"] == class_type)


def edit_graph(comfy, picture=CIRCLE, with_mask=True, batch=2, denoise=1.0, fit="crop", mask_rule="official",
               mask_node=None, repeat=1, heatmap=False):
    g = comfy.graph_builder()
    model = g.node("ScalewiseVARLoader", var_name=BUILTIN_NAME, vae_name=BUILTIN_NAME, dtype="fp32")
    cond = g.node("ScalewiseImageNetClass", class_name="tiny-shapes 5: star", class_id=-1, batch_classes="")
    cfg = g.node("ScalewiseCFGGuider", cfg=3.0, schedule="constant", start_scale=0, end_scale=0, power=1.0)
    inputs = {}
    if picture is not None:
        load = g.node("LoadImage", image=picture)
        image = load.out(0)
        if repeat > 1:
            image = g.node("RepeatImageBatch", image=image, amount=repeat).out(0)
        inputs["image"] = image
        if with_mask:
            inputs["mask"] = load.out(1)
    if mask_node is not None:
        inputs["mask"] = mask_node(g).out(0)
    sampler = g.node("ScalewiseSampler", model=model.out(0), conditioning=cond.out(0), guider=cfg.out(0), seed=5,
                     batch_size=batch, top_k=900, top_p=0.8, more_smooth=False, preview="off", smooth_start_scale=0,
                     last_scale_temperature=1.0, denoise=denoise, fit=fit, mask_rule=mask_rule, **inputs)
    g.node("SaveImage", images=sampler.out(0), filename_prefix="scalewise_edit_test")
    if heatmap:
        g.node("ScalewiseGuidanceHeatmap", trace=sampler.out(1), image=sampler.out(0), normalize="scale",
               colormap="magma", overlay_alpha=0.5)
    return g.finalize()


def run_ok(comfy, prompt):
    entry, _ = comfy.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    return entry


def saved(comfy, entry, prompt) -> list[np.ndarray]:
    images = entry["outputs"][_id(prompt, "SaveImage")]["images"]
    return [np.asarray(Image.open(comfy.output_dir / i["subfolder"] / i["filename"]).convert("RGB")) for i in images]


def run_error(comfy, prompt) -> str:
    entry, _ = comfy.run(prompt)
    assert entry["status"]["status_str"] == "error", entry["status"]
    return json.dumps(entry["status"]["messages"])


def test_sampler_inputs_keep_their_order(pack_loaded):
    """Saved workflows store widget values by position: the editing inputs are optional and come last."""
    order = pack_loaded.object_info("ScalewiseSampler")["ScalewiseSampler"]["input_order"]
    assert order["optional"] == ["guider", "image", "mask", "denoise", "fit", "mask_rule", "batch_index",
                                 "temperature"]  # an input added later goes last


def test_the_pictures_are_in_the_input_folder(pack_loaded):
    for name in (CIRCLE, BAND):
        assert (pack_loaded.work / "input" / name).read_bytes() == (PICTURES / name).read_bytes()


def test_inpainting_from_load_image_equals_the_library(pack_loaded):
    prompt = edit_graph(pack_loaded)
    images = saved(pack_loaded, run_ok(pack_loaded, prompt), prompt)
    assert len(images) == 2 and all(im.shape == (64, 64, 3) for im in images)
    # what Load Image does: RGB / 255, and MASK = 1 - alpha / 255
    rgba = np.asarray(Image.open(PICTURES / CIRCLE), dtype=np.float32) / 255
    picture = torch.from_numpy(rgba[..., :3]).permute(2, 0, 1)[None]
    mask = torch.from_numpy(1 - rgba[..., 3])[None]
    out = sample(load_shapes_model(), CFG(3.0, schedule="constant"), Generation([STAR], seed=5, batch_size=2,
                                                                                draw=Draw(top_k=900, top_p=0.8), edit=Edit(picture, mask=mask)))
    expected = (out.images.permute(0, 2, 3, 1).numpy() * 255).clip(0, 255).astype(np.uint8)  # SaveImage's rounding
    for got, want in zip(images, expected):
        # the same float32 computation in two processes; a value on a rounding edge may move by one level
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.mark.parametrize("fit", ["pad", "crop"])
def test_another_size_is_fitted_and_the_output_has_the_models_size(pack_loaded, fit):
    prompt = edit_graph(pack_loaded, picture=BAND, with_mask=False, batch=1, fit=fit, denoise=0.5)
    images = saved(pack_loaded, run_ok(pack_loaded, prompt), prompt)
    assert [im.shape for im in images] == [(64, 64, 3)]


def test_a_batch_of_images_sets_the_batch_and_a_mismatch_is_refused(pack_loaded):
    prompt = edit_graph(pack_loaded, batch=1, repeat=3)
    assert len(saved(pack_loaded, run_ok(pack_loaded, prompt), prompt)) == 3
    message = run_error(pack_loaded, edit_graph(pack_loaded, batch=2, repeat=3, with_mask=False, denoise=0.5))
    assert "batch_size 2 does not fit the batch of 3 (image 3)" in message, message


def test_a_mask_without_an_image_is_refused_naming_both(pack_loaded):
    prompt = edit_graph(pack_loaded, picture=None,
                        mask_node=lambda g: g.node("SolidMask", value=1.0, width=64, height=64))
    message = run_error(pack_loaded, prompt)
    assert "ScalewiseSampler" in message and "mask is connected but image is not" in message, message


def test_denoise_without_an_image_is_refused(pack_loaded):
    message = run_error(pack_loaded, edit_graph(pack_loaded, picture=None, denoise=0.5))
    assert "denoise 0.5 < 1 needs an image" in message, message


def test_the_heatmap_takes_the_edit_region_as_foreground(pack_loaded):
    prompt = edit_graph(pack_loaded, batch=1, heatmap=True)
    entry = run_ok(pack_loaded, prompt)
    scores = json.loads(entry["outputs"][_id(prompt, "ScalewiseGuidanceHeatmap")]["scalewise_scores"][0])
    assert scores["divergence"] is not None and len(scores["divergence"]["per_scale"][0]) == 4
