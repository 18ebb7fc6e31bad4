"""Every token form ComfyUI's tokenizer can hand Switti Text Encode, through the real server (issue 13 item 2):
textual-inversion embeddings found (as token vectors), missing, of another model's width or with unequal clip_l and
clip_g counts; prompt weights; ComfyUI's escapes; long and empty prompts (test_switti_nodes.py). Each either works
as the README says or fails in Switti Text Encode with an error naming the input and the word."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from .fixtures_models import CLIP_G, CLIP_L, SWITTI_AR, SWITTI_VAE, clip_cache
from .test_nodes import saved_images

TEXT_NODE = "ScalewiseSwittiTextEncode"


@pytest.fixture(scope="module")
def embeddings(comfy):
    """models/embeddings: negxl (the issue's SDXL embedding: clip_l [2, 768], clip_g [2, 1280]); foxy (the token
    embeddings of "red fox" from the test's own clip files); sd15 (an SD 1.x file: one 768-wide tensor); uneven
    (2 clip_l but 3 clip_g vectors)."""
    from transformers import CLIPTokenizer

    folder = comfy.models_dir / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(5)
    save_file({"clip_l": torch.randn(2, 768, generator=gen) * 0.02,
               "clip_g": torch.randn(2, 1280, generator=gen) * 0.02}, str(folder / "negxl.safetensors"))
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(os.environ["COMFY_DIR"], "comfy", "sd1_tokenizer"))
    ids = torch.tensor(tokenizer("red fox", add_special_tokens=False)["input_ids"])
    rows = {name: load_file(str(clip_cache() / f"{name}.safetensors"))["text_model.embeddings.token_embedding.weight"]
            for name in ("clip_l", "clip_g")}
    save_file({name: rows[name][ids].contiguous() for name in rows}, str(folder / "foxy.safetensors"))
    save_file({"emb_params": torch.randn(3, 768, generator=gen) * 0.02}, str(folder / "sd15.safetensors"))
    save_file({"clip_l": torch.randn(2, 768, generator=gen) * 0.02,
               "clip_g": torch.randn(3, 1280, generator=gen) * 0.02}, str(folder / "uneven.safetensors"))
    return folder


def graph(comfy, positive, negative="", seed=7):
    g = comfy.graph_builder()
    clip = g.node("DualCLIPLoader", clip_name1=CLIP_L, clip_name2=CLIP_G, type="sdxl")
    text = g.node(TEXT_NODE, clip=clip.out(0), positive=positive, negative=negative)
    loader = g.node("ScalewiseSwittiLoader", switti_name=SWITTI_AR, vae_name=SWITTI_VAE, dtype="fp32")
    cfg = g.node("ScalewiseCFGGuider", cfg=6.0, schedule="constant", start_scale=0, end_scale=-1, power=1.0)
    sampler = g.node("ScalewiseSampler", model=loader.out(0), conditioning=text.out(0), guider=cfg.out(0),
                     seed=seed, batch_size=1, top_k=0, top_p=0.0, more_smooth=False, preview="off",
                     smooth_start_scale=0, last_scale_temperature=1.0)
    save = g.node("SaveImage", images=sampler.out(0), filename_prefix="switti_prompt")
    return g.finalize(), text, save


def run(comfy, positive, negative=""):
    prompt, text, save = graph(comfy, positive, negative)
    entry, _ = comfy.run(prompt, timeout=600)
    return entry, text, save


def image(comfy, positive, negative=""):
    entry, _, save = run(comfy, positive, negative)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    return np.asarray(saved_images(comfy, entry, save)[0])


def error_of(entry) -> str:
    assert entry["status"]["status_str"] == "error", json.dumps(entry["status"])[:2000]
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and errors[0]["node_type"] == TEXT_NODE, json.dumps(errors)[:2000]
    assert errors[0]["exception_type"].endswith("ValueError"), errors[0]["exception_type"]
    return errors[0]["exception_message"]


def test_the_issue_negative_with_an_sdxl_embedding_works(pack_loaded, embeddings):
    entry, _, _ = run(pack_loaded, "a red fox in the snow", "embedding:negxl, blurry")
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]


def test_an_embedding_goes_in_as_token_vectors(pack_loaded, embeddings):
    # foxy's vectors are the token embeddings of "red fox": the image must be the one of the words, bit for bit,
    # and differ from the prompt without them (so this comparison can fail).
    words = image(pack_loaded, "a red fox in the snow")
    assert np.array_equal(image(pack_loaded, "a embedding:foxy in the snow"), words)
    assert not np.array_equal(image(pack_loaded, "a in the snow"), words)


@pytest.mark.parametrize("where", ["positive", "negative"])
def test_a_missing_embedding_is_named(pack_loaded, embeddings, where):
    texts = {"positive": "a red fox", "negative": ""}
    texts[where] = "blurry, embedding:no_such_thing, ugly"
    msg = error_of(run(pack_loaded, texts["positive"], texts["negative"])[0])
    assert msg.startswith(f"{where}:") and "embedding:no_such_thing" in msg and "models/embeddings" in msg, msg


def test_an_sd1_embedding_is_named_with_its_width(pack_loaded, embeddings):
    msg = error_of(run(pack_loaded, "a (embedding:sd15:1.1) fox")[0])
    assert msg.startswith("positive:") and "embedding:sd15" in msg, msg
    assert "768" in msg and "1280" in msg and "clip_g" in msg, msg


def test_unequal_clip_l_and_clip_g_vectors_are_named(pack_loaded, embeddings):
    msg = error_of(run(pack_loaded, "a fox", "embedding:uneven")[0])
    assert msg.startswith("negative:") and "embedding:uneven" in msg and "2 clip_l" in msg and "3 clip_g" in msg, msg


def test_weights_are_parsed_but_not_applied_and_the_user_told(pack_loaded, embeddings):
    # ComfyUI's weight syntax is read (the brackets are not text) but Switti has no weighting: the image of the
    # weighted prompt is the one of the plain words, and the node says the weights were ignored.
    plain = image(pack_loaded, "a red fox in the snow")
    entry, text, save = run(pack_loaded, "a ((red fox:1.4)) in (the snow)")
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    assert np.array_equal(np.asarray(saved_images(pack_loaded, entry, save)[0]), plain)
    assert "weights such as (word:1.2) are ignored" in json.dumps(entry["outputs"].get(text.id, {}))


def test_escaped_brackets_and_break_are_text(pack_loaded, embeddings):
    # \( \) are literal brackets in ComfyUI; BREAK is no keyword in ComfyUI (A1111's): both are plain tokens.
    entry, text, _ = run(pack_loaded, r"a fox \(red\) BREAK snow, embedding:negxl")
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    assert "ignored" not in json.dumps(entry["outputs"].get(text.id, {}))
