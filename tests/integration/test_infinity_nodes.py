"""Infinity in the real server: Load Infinity Model on the tiny files in models/infinity (its sizes by name, its
note), and the wrong conditioning or files explained."""
import json

import pytest

from .fixtures_models import (INFINITY_TINY, INFINITY_VAE_TINY, OFFICIAL_INFINITY, OFFICIAL_INFINITY_8B,
                              OFFICIAL_INFINITY_8B_VAE, OFFICIAL_INFINITY_VAE, OFFICIAL_VAE, OFFICIAL_VAR)
from .test_reliability import output_images

SAMPLER = dict(seed=0, batch_size=1, top_k=900, top_p=0.97, more_smooth=False, preview="off",
               smooth_start_scale=0, last_scale_temperature=1.0, temperature=0.5)


def loader_graph(comfy, infinity=INFINITY_TINY, vae=INFINITY_VAE_TINY, resolution="256×256 (1:1, 0.06M)"):
    g = comfy.graph_builder()
    loader = g.node("ScalewiseInfinityLoader", infinity_name=infinity, vae_name=vae, resolution=resolution,
                    dtype="fp32")
    cond = g.node("ScalewiseImageNetClass", class_name="207: golden retriever", class_id=-1, batch_classes="")
    guide = g.node("ScalewiseCFGGuider", cfg=3.0, schedule="constant", start_scale=0, end_scale=0, power=1.0)
    sampler = g.node("ScalewiseSampler", model=loader.out(0), conditioning=cond.out(0), guider=guide.out(0),
                     **SAMPLER)
    g.node("PreviewImage", images=sampler.out(0))
    return g.finalize(), loader


def test_the_loader_offers_the_official_square_sizes(pack_loaded):
    info = pack_loaded.object_info()["ScalewiseInfinityLoader"]["input"]["required"]
    sizes = info["resolution"][1]["options"] if isinstance(info["resolution"][1], dict) and \
        "options" in info["resolution"][1] else info["resolution"][0]
    assert sizes == ["1024×1024 (1:1, 1M)", "768×768 (1:1, 0.60M)", "512×512 (1:1, 0.25M)", "256×256 (1:1, 0.06M)"]
    names = info["infinity_name"][1]["options"] if "options" in info["infinity_name"][1] else info["infinity_name"][0]
    assert {INFINITY_TINY, OFFICIAL_INFINITY, OFFICIAL_INFINITY_8B} <= set(names)
    assert not any("-of-" in n for n in names)  # the 8B folder's shards are listed once, as its index


def test_a_class_into_infinity_names_the_text_node(pack_loaded):
    prompt, _ = loader_graph(pack_loaded)
    entry, _ = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "error"
    assert "Infinity Text Encode" in json.dumps(entry["status"]["messages"])


@pytest.mark.parametrize("infinity,vae,culprit", [
    (OFFICIAL_VAR, INFINITY_VAE_TINY, "infinity_name"),       # not in models/infinity
    (INFINITY_TINY, OFFICIAL_VAE, "vae_name"),
])
def test_files_from_another_folder_are_named(pack_loaded, infinity, vae, culprit):
    prompt, _ = loader_graph(pack_loaded, infinity=infinity, vae=vae)
    with pytest.raises(pack_loaded.PromptRejected) as info:
        pack_loaded.queue(prompt)
    body = json.dumps(info.value.body)
    assert info.value.status == 400 and culprit in body and "models/infinity" in body, body[:2000]


def test_a_size_that_is_not_offered_is_refused(pack_loaded):
    prompt, _ = loader_graph(pack_loaded, resolution="1000×1000")
    with pytest.raises(pack_loaded.PromptRejected) as info:
        pack_loaded.queue(prompt)
    assert info.value.status == 400 and "resolution" in json.dumps(info.value.body)


@pytest.mark.parametrize("infinity,vae,side", [(OFFICIAL_INFINITY, OFFICIAL_INFINITY_VAE, 256),
                                                (OFFICIAL_INFINITY_8B, OFFICIAL_INFINITY_8B_VAE, 256)],
                         ids=["2B .pth + nested VAE", "8B layout, sharded folder + patchify VAE"])
def test_the_official_formats_make_images(pack_loaded, infinity, vae, side):
    """The released formats (a flat .pth, the VAE under "vae", the 8B's sharded download with its patchify VAE)
    through the node, with a tiny text encoder, into the sampler with CFG."""
    from .test_infinity_text_nodes import text_graph
    prompt, _ = text_graph(pack_loaded, sink="infinity")
    loader = next(n for n in prompt.values() if n["class_type"] == "ScalewiseInfinityLoader")
    loader["inputs"].update(infinity_name=infinity, vae_name=vae)
    entry, _ = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    images = output_images(pack_loaded, entry)
    assert len(images) == 2 and len(images[0]) == side * side * 3


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_the_loaders_half_precision_options_make_images(pack_loaded, dtype):
    """The dtype widget's bf16 and fp16 run Infinity (its layers take their inputs in the weights' dtype; the tiny
    BSQ decoder overflows fp16 and is decoded again in float32, models/base.py)."""
    from .test_infinity_text_nodes import text_graph
    prompt, _ = text_graph(pack_loaded, sink="infinity")
    loader = next(n for n in prompt.values() if n["class_type"] == "ScalewiseInfinityLoader")
    loader["inputs"].update(dtype=dtype)
    entry, _ = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    images = output_images(pack_loaded, entry)
    assert len(images) == 2 and len(images[0]) == 256 * 256 * 3
    assert all(len(set(image)) > 1 for image in images)  # not a constant (NaN -> black) image
