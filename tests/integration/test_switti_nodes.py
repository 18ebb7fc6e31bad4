"""Switti text-to-image in the real server: ComfyUI's CLIP files -> Switti Text Encode -> sampler."""
import json

import pytest

from .fixtures_models import CLIP_G, CLIP_L, SWITTI, SWITTI_AR, SWITTI_VAE
from .test_nodes import saved_images


def switti_graph(comfy, model=SWITTI, prompt="a red fox in the snow", guider="cfg", seed=0, cond=None):
    g = comfy.graph_builder()
    clip = g.node("DualCLIPLoader", clip_name1=CLIP_L, clip_name2=CLIP_G, type="sdxl")
    text = g.node("ScalewiseSwittiTextEncode", clip=clip.out(0), positive=prompt, negative="")
    loader = g.node("ScalewiseSwittiLoader", switti_name=model, vae_name=SWITTI_VAE, dtype="fp32")
    cfg = g.node("ScalewiseCFGGuider", cfg=6.0, schedule="linear", start_scale=0, end_scale=-1, power=1.0)
    guide = cfg
    if guider == "softcfg":
        guide = g.node("ScalewiseSoftCFGGuider", base=cfg.out(0), strength=1.0, normalization="global",
                       confidence="max", floor=0.05)
    if cond is None:
        cond = text.out(0)
    elif cond == "class":
        cond = g.node("ScalewiseImageNetClass", class_name="207: golden retriever", class_id=-1,
                      batch_classes="").out(0)
    sampler = g.node("ScalewiseSampler", model=loader.out(0), conditioning=cond, guider=guide.out(0), seed=seed,
                     batch_size=1, top_k=400, top_p=0.95, more_smooth=True, preview="every scale",
                     smooth_start_scale=2, last_scale_temperature=0.1)
    save = g.node("SaveImage", images=sampler.out(0), filename_prefix="switti_test")
    return g.finalize(), save, text


@pytest.mark.parametrize("model", [SWITTI, SWITTI_AR])
def test_text_to_image_workflow(pack_loaded, model):
    prompt, save, _ = switti_graph(pack_loaded, model=model)
    entry, _ = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    images = saved_images(pack_loaded, entry, save)
    assert len(images) == 1 and images[0].size == (64, 64)


def test_softcfg_is_refused_on_non_ar_switti_only(pack_loaded):
    entry, _ = pack_loaded.run(switti_graph(pack_loaded, guider="softcfg")[0], timeout=300)
    assert entry["status"]["status_str"] == "error"
    assert "non-autoregressive" in json.dumps(entry["status"]["messages"])
    ok, _ = pack_loaded.run(switti_graph(pack_loaded, model=SWITTI_AR, guider="softcfg")[0], timeout=300)
    assert ok["status"]["status_str"] == "success"


def test_class_conditioning_into_switti_is_explained(pack_loaded):
    entry, _ = pack_loaded.run(switti_graph(pack_loaded, cond="class")[0], timeout=300)
    assert entry["status"]["status_str"] == "error"
    assert "Switti Text Encode" in json.dumps(entry["status"]["messages"])


def test_long_prompt_is_cut_and_the_user_told(pack_loaded):
    long_prompt = ", ".join(["a very detailed photograph of a mountain lake"] * 40)  # ~300 tokens
    prompt, _, text = switti_graph(pack_loaded, prompt=long_prompt, seed=3)
    entry, _ = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success"
    assert "cut to 77 tokens" in json.dumps(entry["outputs"].get(text.id, {}))
    assert "cut to 77 tokens" in pack_loaded.log()


def test_empty_prompt_works(pack_loaded):
    entry, _ = pack_loaded.run(switti_graph(pack_loaded, prompt="", seed=4)[0], timeout=300)
    assert entry["status"]["status_str"] == "success"
