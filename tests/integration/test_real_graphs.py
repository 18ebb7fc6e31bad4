"""Issue 25 §1: the IMAGE and MASK inputs as core nodes and other packs really make them, through the real server.

Each case calls the core node that produces the input (Load Image of a picture without alpha, Upscale Image with
bicubic, Join Image with Alpha, Repeat Image Batch as a video's frames) or, where no core node makes that layout, the
test-only pack tests/test_packs/scalewise_other_packs (a segmenter's [B, 1, H, W] mask, a one-channel image), and
asserts the result or the exact message.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from scalewise.guidance import CFG, Draw, Edit, Generation, sample
from scalewise.models.shapes import BUILTIN_NAME, CLASS_NAMES, load_shapes_model

REPO = Path(__file__).resolve().parents[2]
CIRCLE = REPO / "example_workflows" / "input" / "scalewise_circle.png"  # 64 px RGBA: alpha = the mask editor's mask
JPEG = "scalewise_test_no_alpha.jpg"
FAULT_FILE = "scalewise_fault_oom"  # tests/test_packs/scalewise_fault_injection: one-shot simulated OOM
STAR = CLASS_NAMES.index("star")


@pytest.fixture
def server(pack_loaded):
    """The session's server, with a JPEG (no alpha channel) in its input folder."""
    jpeg = pack_loaded.work / "input" / JPEG
    if not jpeg.exists():
        Image.open(CIRCLE).convert("RGB").save(jpeg, quality=95)
    return pack_loaded


def _id(prompt, class_type):
    return next(k for k, v in prompt.items() if v["class_type"] == class_type)


def graph(comfy, picture=CIRCLE.name, image=None, mask=None, seed=5, batch=1, denoise=1.0, batch_index=0,
          heatmap_mask=None, heatmap_image=None):
    """Load Image -> (image, mask) -> Scale-wise Sampler on the built-in model -> Save Image (and a heat map).
    `image` / `mask`: functions (builder, load node) -> an output to wire in; None = Load Image's own; False = none."""
    g = comfy.graph_builder()
    model = g.node("ScalewiseVARLoader", var_name=BUILTIN_NAME, vae_name=BUILTIN_NAME, dtype="fp32")
    cond = g.node("ScalewiseImageNetClass", class_name="tiny-shapes 5: star", class_id=-1, batch_classes="")
    cfg = g.node("ScalewiseCFGGuider", cfg=3.0, schedule="constant", start_scale=0, end_scale=0, power=1.0)
    load = g.node("LoadImage", image=picture)
    inputs = {}
    if image is not False:
        inputs["image"] = load.out(0) if image is None else image(g, load)
    if mask is not False:
        inputs["mask"] = load.out(1) if mask is None else mask(g, load)
    sampler = g.node("ScalewiseSampler", model=model.out(0), conditioning=cond.out(0), guider=cfg.out(0), seed=seed,
                     batch_size=batch, top_k=900, top_p=0.8, more_smooth=False, preview="off", smooth_start_scale=0,
                     last_scale_temperature=1.0, denoise=denoise, fit="crop", mask_rule="official",
                     batch_index=batch_index, **inputs)
    g.node("SaveImage", images=sampler.out(0), filename_prefix="scalewise_real_graphs")
    if heatmap_mask is not None or heatmap_image is not None:
        heat = {"image": sampler.out(0) if heatmap_image is None else heatmap_image(g, sampler)}
        if heatmap_mask is not None:
            heat["mask"] = heatmap_mask(g, load)
        g.node("ScalewiseGuidanceHeatmap", trace=sampler.out(1), normalize="scale", colormap="magma",
               overlay_alpha=0.5, **heat)
    return g.finalize()


def run_ok(comfy, prompt, timeout=300):
    entry, _ = comfy.run(prompt, timeout=timeout)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    return entry


def saved(comfy, entry, prompt) -> list[np.ndarray]:
    images = entry["outputs"][_id(prompt, "SaveImage")]["images"]
    return [np.asarray(Image.open(comfy.output_dir / i["subfolder"] / i["filename"]).convert("RGB")).astype(int)
            for i in images]


def notes(entry, prompt, class_type) -> list[str]:
    return entry["outputs"].get(_id(prompt, class_type), {}).get("scalewise_info", [])


def other_pack(layout, slot):
    return lambda g, load: g.node("ScalewiseTestOtherPackOutput", image=load.out(0), mask=load.out(1),
                                  layout=layout).out(slot)


def test_an_empty_mask_from_load_image_keeps_the_image_and_says_so(server):
    """Core Load Image gives an all-zero 64x64 MASK for a picture without alpha (a JPEG): nothing is marked, so the
    image is kept (its reconstruction, whatever the seed), and the node says so, with how to paint a mask."""
    prompts = [graph(server, picture=JPEG, seed=seed) for seed in (5, 6)]
    entries = [run_ok(server, p) for p in prompts]
    first, second = (saved(server, e, p)[0] for e, p in zip(entries, prompts))
    assert np.array_equal(first, second)  # every token kept: no random draw reaches the image
    said = notes(entries[0], prompts[0], "ScalewiseSampler")
    assert len(said) == 1 and said[0].startswith("the mask marks nothing (every pixel below 0.5: e.g. Load Image "
                                                 "of a picture without alpha, or nothing painted)"), said
    assert "Open in MaskEditor" in said[0] and "disconnect the mask and use denoise" in said[0]
    assert "Scale-wise Sampler: the mask marks nothing" in server.log()
    painted = run_ok(server, p := graph(server, seed=5))  # the same picture with its painted mask: no note
    assert notes(painted, p, "ScalewiseSampler") == []


def test_a_bicubic_upscale_with_overshoot_is_accepted_and_clamped(server):
    """Core Upscale Image (bicubic) overshoots [0, 1] at edges; the sampler takes it, clamped, as the library does
    with the clamped image."""
    size = 150
    rgba = np.asarray(Image.open(CIRCLE), dtype=np.float32) / 255  # what Load Image reads
    picture = torch.from_numpy(rgba[..., :3]).permute(2, 0, 1)[None]
    upscaled = F.interpolate(picture, size=(size, size), mode="bicubic")  # server.utils.common_upscale's call
    assert float(upscaled.min()) < 0 or float(upscaled.max()) > 1  # the case is real on this picture
    prompt = graph(server, mask=False, denoise=0.5, image=lambda g, load: g.node(
        "ImageScale", image=load.out(0), upscale_method="bicubic", width=size, height=size, crop="disabled").out(0))
    got = saved(server, run_ok(server, prompt), prompt)[0]
    out = sample(load_shapes_model(), CFG(3.0, schedule="constant"), Generation([STAR], seed=5,
                                                                                draw=Draw(top_k=900, top_p=0.8), edit=Edit(upscaled.clamp(0, 1), denoise=0.5, fit="crop")))
    want = (out.images.permute(0, 2, 3, 1).numpy()[0] * 255).clip(0, 255).astype(np.uint8).astype(int)
    assert np.abs(got - want).max() <= 1  # one float32 computation in two processes: a level at a rounding edge


def test_values_that_are_not_an_image_are_refused_naming_the_range(server):
    """Values beyond any resampling overshoot (an image left at 0..255 by a pack's loader) are refused, naming the
    input, the values found, what they look like and the range accepted."""
    prompt = graph(server, image=other_pack("image 0..255", 0))
    entry, _ = server.run(prompt)
    assert entry["status"]["status_str"] == "error"
    message = json.dumps(entry["status"]["messages"])
    assert "image values must be in [0, 1] (RGB, as ComfyUI's IMAGE), got 24 to 237 (this looks like 0..255: " \
           "divide by 255)" in message, message
    assert "-0.5 to 1.5 (the overshoot of bicubic resampling) is accepted and clamped" in message


def test_an_rgba_image_is_read_as_its_rgb_channels(server):
    """Core Join Image with Alpha makes [B, H, W, 4]; the sampler takes the first three channels, as core's VAE
    Encode does: the same image as from the RGB picture."""
    rgb = graph(server)
    rgba = graph(server, image=lambda g, load: g.node("JoinImageWithAlpha", image=load.out(0),
                                                     alpha=load.out(1)).out(0))
    assert np.array_equal(saved(server, run_ok(server, rgb), rgb)[0], saved(server, run_ok(server, rgba), rgba)[0])


def test_grey_images_become_rgb(server):
    """A one-channel image and a grey+alpha image (preprocessor packs' maps) are the same grey RGB picture."""
    prompts = [graph(server, image=other_pack(layout, 0)) for layout in ("image grey [B, H, W, 1]",
                                                                        "image grey+alpha [B, H, W, 2]")]
    one, two = (saved(server, run_ok(server, p), p)[0] for p in prompts)
    assert np.array_equal(one, two)


@pytest.mark.parametrize("layout", ["mask [B, 1, H, W]", "mask [B, H, W, 1]"])
def test_segmenter_mask_layouts_are_read_as_core_masks(server, layout):
    """[B, 1, H, W] and [B, H, W, 1] masks, in the sampler and in the heat map: the same result as core's [B, H, W]."""
    plain = graph(server, heatmap_mask=lambda g, load: load.out(1))
    other = graph(server, mask=other_pack(layout, 1), heatmap_mask=other_pack(layout, 1))
    plain_entry, other_entry = run_ok(server, plain), run_ok(server, other)
    assert np.array_equal(saved(server, plain_entry, plain)[0], saved(server, other_entry, other)[0])
    scores = [e["outputs"][_id(p, "ScalewiseGuidanceHeatmap")]["scalewise_scores"][0]
              for e, p in ((plain_entry, plain), (other_entry, other))]
    assert scores[0] == scores[1] and json.loads(scores[0])["divergence"] is not None


def test_an_rgba_image_and_an_empty_mask_in_the_heat_map(server):
    """The heat map overlays an RGBA image like its RGB channels; a foreground mask that marks nothing leaves D
    undefined, and the node says so."""
    prompt = graph(server, heatmap_image=lambda g, sampler: g.node(
        "JoinImageWithAlpha", image=sampler.out(0),
        alpha=g.node("SolidMask", value=1.0, width=64, height=64).out(0)).out(0),
        heatmap_mask=lambda g, load: g.node("SolidMask", value=0.0, width=64, height=64).out(0))
    entry = run_ok(server, prompt)
    said = notes(entry, prompt, "ScalewiseGuidanceHeatmap")
    assert said == ["the mask marks no object (every pixel below 0.5), so divergence D is undefined there: connect "
                    "a foreground mask, white = object"], said


def test_a_video_sized_batch_is_sampled_in_parts_of_64(server):
    """70 frames (core Repeat Image Batch, as VideoHelperSuite's Load Video gives a batch of frames) with batch_size 1:
    one image per frame, sampled 64 + 6; image 65 equals image 65 re-made alone (batch_index 65)."""
    frames = graph(server, mask=False, denoise=0.5,
                   image=lambda g, load: g.node("RepeatImageBatch", image=load.out(0), amount=70).out(0))
    images = saved(server, run_ok(server, frames, timeout=600), frames)
    assert len(images) == 70
    alone = graph(server, mask=False, denoise=0.5, batch_index=65)
    again = saved(server, run_ok(server, alone), alone)
    assert len(again) == 1 and np.abs(images[65] - again[0]).max() <= 1  # same tokens; decode batch differs
    assert not np.array_equal(images[0], images[65])  # each frame has its own random stream


def test_out_of_memory_in_a_video_batch_names_the_image_input(server):
    trigger = server.work / "user" / FAULT_FILE  # the server's --user-directory
    trigger.write_text("1")
    prompt = graph(server, mask=False, denoise=0.5,
                   image=lambda g, load: g.node("RepeatImageBatch", image=load.out(0), amount=70).out(0))
    entry, _ = server.run(prompt, timeout=300)
    assert not trigger.exists(), "the fault-injection test pack is not active"
    message = json.dumps(entry["status"]["messages"])
    assert ("out of memory for a batch of 64 at 64 px on cpu: lower the number of images in the image batch (70, "
            "sampled 64 at a time): split it, e.g. with core's Rebatch Images before this node") in message, message
    run_ok(server, graph(server))  # the server and the model still serve


def test_a_class_list_from_a_multiline_text_node_is_read_line_by_line(server):
    """Core PrimitiveStringMultiline into batch_classes, one class per line (as text-list nodes write them): the
    same classes as the comma-separated list."""
    def classes(source):
        g = server.graph_builder()
        model = g.node("ScalewiseVARLoader", var_name=BUILTIN_NAME, vae_name=BUILTIN_NAME, dtype="fp32")
        cond = g.node("ScalewiseImageNetClass", class_name="tiny-shapes 5: star", class_id=-1, batch_classes=source(g))
        sampler = g.node("ScalewiseSampler", model=model.out(0), conditioning=cond.out(0), seed=3, batch_size=3,
                         top_k=1, top_p=0.0, more_smooth=False, preview="off", smooth_start_scale=0,
                         last_scale_temperature=1.0)
        g.node("SaveImage", images=sampler.out(0), filename_prefix="scalewise_real_graphs_classes")
        return g.finalize()
    typed = classes(lambda g: "0, 3, 5")
    linked = classes(lambda g: g.node("PrimitiveStringMultiline", value="0: circle\r\n3\n5: star\n").out(0))
    assert all(np.array_equal(a, b) for a, b in zip(saved(server, run_ok(server, typed), typed),
                                                    saved(server, run_ok(server, linked), linked)))


def test_a_long_batch_with_batch_size_above_one_says_to_set_it_to_one(server):
    """100 frames with batch_size 2: batch_size cannot be 100 (its maximum is 64), so the message says to set 1."""
    prompt = graph(server, mask=False, denoise=0.5, batch=2,
                   image=lambda g, load: g.node("RepeatImageBatch", image=load.out(0), amount=100).out(0))
    entry, _ = server.run(prompt)
    message = json.dumps(entry["status"]["messages"])
    assert ("batch_size 2 does not fit the batch of 100 (image 100): each of batch_size, the image batch and the "
            "mask batch must be 1 or the same number (set batch_size to 1: the image or mask batch then sets the "
            "number of images)") in message, message


def test_the_heat_map_names_an_image_of_another_size_as_connected(server):
    """An RGBA picture of another size into the heat map: the message shows the IMAGE as the user connected it
    ([batch, height, width, channels], 4 channels) and says what to connect."""
    prompt = graph(server, heatmap_image=lambda g, sampler: g.node(
        "JoinImageWithAlpha", alpha=g.node("SolidMask", value=1.0, width=80, height=60).out(0),
        image=g.node("ImageScale", image=sampler.out(0), upscale_method="bilinear", width=80, height=60,
                     crop="disabled").out(0)).out(0))
    entry, _ = server.run(prompt)
    message = json.dumps(entry["status"]["messages"])
    assert ("image: got shape [1, 60, 80, 4] ([batch, height, width, channels]), but the trace is of 1 image(s) of "
            "64x64 px: connect the image output of the sampler that made the trace") in message, message
