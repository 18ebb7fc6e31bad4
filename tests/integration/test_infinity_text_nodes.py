"""Infinity's text nodes in the real server: a flan-t5 download folder and an encoder-only file in
models/text_encoders -> Load Infinity Text Encoder -> Infinity Text Encode; ComfyUI's own CLIP objects refused."""
import json

import pytest

from .fixtures_models import (CLIP_L, FLAN_T5_FILE, FLAN_T5_HUB, INFINITY_TINY, INFINITY_VAE_TINY, OFFICIAL_VAE,
                              OFFICIAL_VAR)
from .test_infinity_nodes import SAMPLER
from .test_reliability import output_images


def text_graph(comfy, name=FLAN_T5_HUB, positive="a red fox in the snow", negative="", comfy_clip=False,
               sink="preview", dtype="fp32"):
    g = comfy.graph_builder()
    if comfy_clip:  # ComfyUI's own Load CLIP
        clip = g.node("CLIPLoader", clip_name=name, type="stable_diffusion", device="default")
    else:
        clip = g.node("ScalewiseInfinityTextEncoderLoader", text_encoder_name=name, dtype="auto", device="default")
    text = g.node("ScalewiseInfinityTextEncode", clip=clip.out(0), positive=positive, negative=negative)
    if sink == "preview":
        g.node("PreviewAny", source=text.out(0))
    elif sink == "infinity":  # text to image with the tiny Infinity model (text_channels 256, as the tiny T5)
        loader = g.node("ScalewiseInfinityLoader", infinity_name=INFINITY_TINY, vae_name=INFINITY_VAE_TINY,
                        resolution="256×256 (1:1, 0.06M)", dtype=dtype)
        cfg = g.node("ScalewiseCFGGuider", cfg=3.0, schedule="constant", start_scale=0, end_scale=0, power=1.0)
        sampler = g.node("ScalewiseSampler", model=loader.out(0), conditioning=text.out(0), guider=cfg.out(0),
                         **{**SAMPLER, "batch_size": 2})
        g.node("SaveImage", images=sampler.out(0), filename_prefix="infinity_text")
    else:  # into a VAR model's sampler
        loader = g.node("ScalewiseVARLoader", var_name=OFFICIAL_VAR, vae_name=OFFICIAL_VAE, dtype="fp32")
        cfg = g.node("ScalewiseCFGGuider", cfg=3.0, schedule="constant", start_scale=0, end_scale=0, power=1.0)
        sampler = g.node("ScalewiseSampler", model=loader.out(0), conditioning=text.out(0), guider=cfg.out(0),
                         seed=0, batch_size=1, top_k=0, top_p=0.9, more_smooth=False, preview="off",
                         smooth_start_scale=0, last_scale_temperature=1.0)
        g.node("SaveImage", images=sampler.out(0), filename_prefix="infinity_text_var")
    return g.finalize(), text


def infos(entry, node) -> list[str]:
    return entry["outputs"].get(node.id, {}).get("scalewise_info", [])


def test_the_loader_lists_a_download_as_its_index(pack_loaded):
    options = pack_loaded.object_info("ScalewiseInfinityTextEncoderLoader")["ScalewiseInfinityTextEncoderLoader"][
        "input"]["required"]["text_encoder_name"][1]["options"]
    assert FLAN_T5_HUB in options and FLAN_T5_FILE in options
    assert not any("-of-0000" in o for o in options)         # no shard listed on its own
    assert options.index(FLAN_T5_HUB) < options.index(CLIP_L)  # flan-t5 first


@pytest.mark.parametrize("name", [FLAN_T5_HUB, FLAN_T5_FILE, FLAN_T5_HUB.replace("/", "\\")])
def test_encode_with_the_folder_or_the_file(pack_loaded, name):
    prompt, text = text_graph(pack_loaded, name=name, positive="word " * 600, negative="blurry, (dark:1.2)")
    entry, _ = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    notes = infos(entry, text)
    assert any("positive: cut to 512 tokens" in n for n in notes), notes
    assert any("negative: prompt weights such as (word:1.2) are ignored" in n for n in notes), notes


def test_comfyui_clip_is_refused(pack_loaded):
    entry, _ = pack_loaded.run(text_graph(pack_loaded, name=CLIP_L, comfy_clip=True)[0], timeout=300)
    assert entry["status"]["status_str"] == "error"
    message = json.dumps(entry["status"]["messages"])
    assert "not flan-t5-xl" in message and "Load Infinity Text Encoder" in message, message[:2000]


def test_a_wrong_file_is_refused_by_name(pack_loaded):
    entry, _ = pack_loaded.run(text_graph(pack_loaded, name=CLIP_L)[0], timeout=300)
    assert entry["status"]["status_str"] == "error"
    message = json.dumps(entry["status"]["messages"])
    assert CLIP_L in message and "no T5 encoder tensors" in message, message[:2000]


def test_infinity_text_into_a_var_model_is_explained(pack_loaded):
    entry, _ = pack_loaded.run(text_graph(pack_loaded, sink="var")[0], timeout=300)
    assert entry["status"]["status_str"] == "error"
    assert "InfinityText" in json.dumps(entry["status"]["messages"])


def test_text_to_image_with_and_without_a_negative_prompt(pack_loaded):
    runs = {}
    for negative in ("", "blurry"):
        prompt, _ = text_graph(pack_loaded, negative=negative, sink="infinity")
        entry, _ = pack_loaded.run(prompt, timeout=300)
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
        runs[negative] = output_images(pack_loaded, entry)
        assert len(runs[negative]) == 2 and len(runs[negative][0]) == 256 * 256 * 3
    assert runs[""] != runs["blurry"]  # the negative's rows replace cfg_uncond[:len] on the unconditional side
