"""The pack inside a real ComfyUI server: registration, workflows, validation, progress, interrupt."""
import io as _io
import json
import struct

import pytest
from PIL import Image

from .fixtures_models import BROKEN, VAE, VAR_TINY, VAR_TINY_256

NODE_IDS = ["ScalewiseVARLoader", "ScalewiseImageNetClass", "ScalewiseCFGGuider", "ScalewiseIGGGuider",
            "ScalewiseSoftCFGGuider", "ScalewiseSSGGuider", "ScalewiseSampler", "ScalewiseGuidanceHeatmap",
            "ScalewiseSwittiLoader", "ScalewiseSwittiTextEncode", "ScalewiseCompareGuiders", "ScalewiseGuidanceSweep",
            "ScalewiseVARCLIPTextEncode", "ScalewiseTokenPruning"]

# Saved workflows store widget values by position: these orders must never change.
WIDGET_ORDER = {
    "ScalewiseVARLoader": ["var_name", "vae_name", "dtype"],
    "ScalewiseImageNetClass": ["class_name", "class_id", "batch_classes"],
    "ScalewiseCFGGuider": ["cfg", "schedule", "start_scale", "end_scale", "power"],
    "ScalewiseIGGGuider": ["scale", "schedule", "window", "window_size", "operand", "start_scale", "end_scale"],
    "ScalewiseSoftCFGGuider": ["base", "strength", "normalization", "confidence", "floor"],
    "ScalewiseSSGGuider": ["beta", "schedule", "custom_betas", "dse_rescale", "interpolation", "prior_source"],
    "ScalewiseSampler": ["model", "conditioning", "seed", "batch_size", "top_k", "top_p", "more_smooth", "preview",
                         "smooth_start_scale", "last_scale_temperature"],
    "ScalewiseGuidanceHeatmap": ["trace", "normalize", "colormap", "overlay_alpha"],
    "ScalewiseSwittiLoader": ["switti_name", "vae_name", "dtype"],
    "ScalewiseSwittiTextEncode": ["clip", "positive", "negative"],
    "ScalewiseVARCLIPTextEncode": ["clip", "prompt"],
    "ScalewiseTokenPruning": ["model", "preset", "keep_ratios", "skip_last"],
    "ScalewiseCompareGuiders": ["model", "conditioning", "seed", "images_per_row", "top_k", "top_p", "more_smooth",
                                "preview", "smooth_start_scale", "last_scale_temperature"],
    "ScalewiseGuidanceSweep": ["model", "conditioning", "seed", "images_per_row", "top_k", "top_p", "more_smooth",
                               "preview", "smooth_start_scale", "last_scale_temperature", "guider", "strengths"],
}


def graph(comfy, var=VAR_TINY, guider="cfg", seed=0, batch=1, class_id=207, preview="every scale", top_k=50):
    g = comfy.graph_builder()
    model = g.node("ScalewiseVARLoader", var_name=var, vae_name=VAE, dtype="fp32")
    cond = g.node("ScalewiseImageNetClass", class_name="207: golden retriever", class_id=class_id, batch_classes="")
    kwargs = {}
    if guider:
        cfg = g.node("ScalewiseCFGGuider", cfg=3.0, schedule="linear", start_scale=0, end_scale=0, power=1.0)
        kwargs["guider"] = cfg.out(0)
        if guider == "ssg+igg":
            igg = g.node("ScalewiseIGGGuider", scale=2.0, schedule="linear", window="global", window_size=3,
                         operand="raw_logits", start_scale=0, end_scale=0, base=cfg.out(0))
            ssg = g.node("ScalewiseSSGGuider", beta=0.2, schedule="constant", custom_betas="", dse_rescale=True,
                         interpolation="bilinear", prior_source="guided_pre_ssg", base=igg.out(0))
            kwargs["guider"] = ssg.out(0)
    sampler = g.node("ScalewiseSampler", model=model.out(0), conditioning=cond.out(0), seed=seed, batch_size=batch,
                     top_k=top_k, top_p=0.95, more_smooth=False, preview=preview, smooth_start_scale=0,
                     last_scale_temperature=1.0, **kwargs)
    save = g.node("SaveImage", images=sampler.out(0), filename_prefix="scalewise_test")
    heat = g.node("ScalewiseGuidanceHeatmap", trace=sampler.out(1), image=sampler.out(0), normalize="scale",
                  colormap="magma", overlay_alpha=0.5)
    return g.finalize(), save, heat


def saved_images(comfy, entry, node):
    out = []
    for img in entry["outputs"][node.id]["images"]:
        path = comfy.output_dir / img.get("subfolder", "") / img["filename"] if img["type"] == "output" else None
        if path is not None:
            out.append(Image.open(path).convert("RGB"))
    return out


def test_every_node_is_registered_and_documented(pack_loaded):
    info = pack_loaded.object_info()
    for node_id in NODE_IDS:
        assert node_id in info, node_id
        node = info[node_id]
        assert node["description"], node_id
        inputs = {**node["input"]["required"], **node["input"].get("optional", {})}
        for name, spec in inputs.items():
            assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert node["input_order"]["required"] == WIDGET_ORDER[node_id], node_id
    assert "Cannot import" not in "\n".join(pack_loaded.pack_import_errors())


def test_model_folder_lists_checkpoints(pack_loaded):
    files = pack_loaded.get_json("/models/var")
    assert {VAR_TINY, VAR_TINY_256, VAE} <= set(files)


def test_class_picker_lists_imagenet(pack_loaded):
    """ImageNet's 1000 classes and null class first (ids = positions), then each built-in model's 10 + null
    (tiny-shapes, then scenes-128)."""
    spec = pack_loaded.object_info("ScalewiseImageNetClass")["ScalewiseImageNetClass"]["input"]["required"]
    options = spec["class_name"][1]["options"] if isinstance(spec["class_name"][0], str) else spec["class_name"][0]
    assert len(options) == 1001 + 2 * 11 and options[207] == "207: golden retriever"
    assert options[1000].startswith("1000:")
    assert all(o.startswith("tiny-shapes ") for o in options[1001:1012])
    assert all(o.startswith("scenes-128 ") for o in options[1012:])


def test_workflow_runs_and_is_reproducible(pack_loaded):
    prompt, save, heat = graph(pack_loaded, guider="ssg+igg", seed=5, batch=2)
    entry, _ = pack_loaded.run(prompt)
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = saved_images(pack_loaded, entry, save)
    assert len(images) == 2 and images[0].size == (64, 64)
    heat_ui = entry["outputs"][heat.id]
    scores = json.loads(heat_ui["scalewise_scores"][0])
    assert scores["guider"].startswith("CFG 3 linear + IGG 2 linear + SSG 0.2")
    assert heat_ui["images"]
    # image 1 of the batch equals a batch of one with the same seed and batch_index 1
    prompt1, save1, _ = graph(pack_loaded, guider="ssg+igg", seed=5, batch=1)
    next(n for n in prompt1.values() if n["class_type"] == "ScalewiseSampler")["inputs"]["batch_index"] = 1
    entry1, _ = pack_loaded.run(prompt1)
    single = saved_images(pack_loaded, entry1, save1)[0]
    diff = max(abs(a - b) for a, b in zip(images[1].tobytes(), single.tobytes()))
    assert diff <= 1


def test_progress_and_preview_per_scale(pack_loaded):
    prompt, _, _ = graph(pack_loaded, seed=1, preview="every scale")
    sampler_id = next(k for k, v in prompt.items() if v["class_type"] == "ScalewiseSampler")
    entry, ws = pack_loaded.run(prompt)
    assert entry["status"]["status_str"] == "success"
    progress = [m["data"] for m in ws.messages if m["type"] == "progress" and m["data"].get("node") == sampler_id]
    assert [p["value"] for p in progress] == [1, 2, 3, 4] and all(p["max"] == 4 for p in progress)
    frames = [f for f in ws.binary if struct.unpack(">I", f[:4])[0] in (1, 4)]
    assert len(frames) >= 4
    jpeg = frames[0][8:] if struct.unpack(">I", frames[0][:4])[0] == 1 else None
    if jpeg:
        Image.open(_io.BytesIO(jpeg)).verify()


@pytest.mark.parametrize("change,fragment", [
    (lambda p: p[_id(p, "ScalewiseVARLoader")]["inputs"].update(var_name="missing.pth"), "missing.pth"),
    (lambda p: p[_id(p, "ScalewiseSampler")]["inputs"].update(top_p=2.0), "top_p"),
    (lambda p: p[_id(p, "ScalewiseSampler")]["inputs"].update(batch_size=0), "batch_size"),
    (lambda p: p[_id(p, "ScalewiseImageNetClass")]["inputs"].update(class_id=1001), "class_id"),
    (lambda p: p[_id(p, "ScalewiseImageNetClass")]["inputs"].update(batch_classes="3, cat"), "batch_classes"),
    (lambda p: p[_id(p, "ScalewiseSampler")]["inputs"].update(model=[_id(p, "ScalewiseImageNetClass"), 0]),
     "model"),
    (lambda p: p[_id(p, "ScalewiseCFGGuider")]["inputs"].update(cfg=-3.0), "cfg"),
    (lambda p: p[_id(p, "ScalewiseVARLoader")]["inputs"].update(dtype="fp8"), "dtype"),
])
def test_validation_errors_name_the_culprit(pack_loaded, change, fragment):
    prompt, _, _ = graph(pack_loaded)
    change(prompt)
    with pytest.raises(pack_loaded.PromptRejected) as info:
        pack_loaded.queue(prompt)
    assert info.value.status == 400 and fragment in json.dumps(info.value.body)


def _id(prompt, class_type):
    return next(k for k, v in prompt.items() if v["class_type"] == class_type)


def test_bad_file_fails_with_a_clear_message_and_server_keeps_serving(pack_loaded):
    prompt, _, _ = graph(pack_loaded, var=BROKEN)
    entry, _ = pack_loaded.run(prompt)
    assert entry["status"]["status_str"] == "error"
    message = json.dumps(entry["status"]["messages"])
    assert BROKEN in message
    ok, _ = pack_loaded.run(graph(pack_loaded, seed=77)[0])
    assert ok["status"]["status_str"] == "success"


def test_interrupt_mid_sampling_then_same_image_as_fresh(pack_loaded):
    prompt, save, _ = graph(pack_loaded, var=VAR_TINY_256, seed=3, batch=2, preview="every scale")
    sampler_id = _id(prompt, "ScalewiseSampler")
    with pack_loaded.ws() as ws:
        pid = pack_loaded.queue(prompt, client_id=ws.client_id)
        ws.wait_for(lambda m: m["type"] == "progress" and m["data"].get("node") == sampler_id
                    and m["data"]["value"] >= 2, timeout=120)
        pack_loaded.interrupt()
        end = ws.wait_end(pid, timeout=120)
    assert end["type"] == "execution_interrupted", end
    entry, _ = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success"
    after = saved_images(pack_loaded, entry, save)
    # the same prompt on a model that never saw the interrupt: a different dtype choice forces a fresh load
    fresh_prompt = json.loads(json.dumps(prompt))
    fresh_prompt[_id(prompt, "ScalewiseVARLoader")]["inputs"]["dtype"] = "auto"  # auto = fp32 on CPU
    fresh, _ = pack_loaded.run(fresh_prompt, timeout=300)
    again = saved_images(pack_loaded, fresh, save)
    assert [a.tobytes() for a in after] == [b.tobytes() for b in again]
