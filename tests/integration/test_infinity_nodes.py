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


# The official templates' 1M sizes, width x height (official dynamic_resolution.py: 16 x the last (h, w) step).
OFFICIAL_1M = ["1024×1024 (1:1, 1M)", "1120×896 (5:4, 1M)", "1152×864 (4:3, 1M)", "1248×832 (3:2, 1M)",
               "1344×768 (7:4, 1M)", "1440×720 (2:1, 1M)", "1600×640 (5:2, 1M)", "1776×592 (3:1, 1M)",
               "896×1120 (4:5, 1M)", "864×1152 (3:4, 1M)", "832×1248 (2:3, 1M)", "768×1344 (4:7, 1M)",
               "720×1440 (1:2, 1M)", "640×1600 (2:5, 1M)", "592×1776 (1:3, 1M)"]


def test_the_loader_offers_every_official_size(pack_loaded):
    info = pack_loaded.object_info()["ScalewiseInfinityLoader"]["input"]["required"]
    sizes = info["resolution"][1]["options"] if isinstance(info["resolution"][1], dict) and \
        "options" in info["resolution"][1] else info["resolution"][0]
    assert len(sizes) == 60 and len(set(sizes)) == 60 and info["resolution"][1].get("default") == sizes[0]
    assert sizes[:15] == OFFICIAL_1M  # largest first; per size 1:1, the wide aspects, the tall ones
    squares = [s for s in sizes if "(1:1," in s]  # the first releases' names, kept for saved workflows
    assert squares == ["1024×1024 (1:1, 1M)", "768×768 (1:1, 0.60M)", "512×512 (1:1, 0.25M)", "256×256 (1:1, 0.06M)"]
    assert [s.split(", ")[1] for s in sizes] == [pn + ")" for pn in ("1M", "0.60M", "0.25M", "0.06M") for _ in range(15)]
    for name in sizes:  # width x height of the named aspect, 16 px per token
        width, height = (int(v) for v in name.split(" ")[0].split("×"))
        a, b = (int(v) for v in name.split("(")[1].split(",")[0].split(":"))
        assert width % 16 == 0 and height % 16 == 0 and abs(width / height - a / b) < 0.02 * a / b, name
    assert "352×176 (2:1, 0.06M)" in sizes and "176×352 (1:2, 0.06M)" in sizes
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


def test_a_wide_size_makes_wide_images_and_heat_maps(pack_loaded):
    """352×176 (2:1, 0.06M): the tiny model on the official 0.5 template gives [1, 176, 352, 3] images; the heat
    map accepts them with the trace; the loader's note names the template and its scales."""
    from PIL import Image

    from .test_infinity_text_nodes import text_graph
    prompt, _ = text_graph(pack_loaded, sink="infinity")
    loader_id, loader = next((i, n) for i, n in prompt.items() if n["class_type"] == "ScalewiseInfinityLoader")
    loader["inputs"]["resolution"] = "352×176 (2:1, 0.06M)"
    sampler_id = next(i for i, n in prompt.items() if n["class_type"] == "ScalewiseSampler")
    prompt["heat"] = {"class_type": "ScalewiseGuidanceHeatmap",
                      "inputs": {"trace": [sampler_id, 1], "image": [sampler_id, 0], "normalize": "scale",
                                 "colormap": "magma", "overlay_alpha": 0.5}}
    prompt["heat_save"] = {"class_type": "SaveImage", "inputs": {"images": ["heat", 0], "filename_prefix": "wide_heat"}}
    entry, _ = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    sizes = []
    for node_id, node_out in entry["outputs"].items():
        for img in node_out.get("images", []):
            if img["type"] == "output" and node_id != "heat_save":
                sizes.append(Image.open(pack_loaded.output_dir / img.get("subfolder", "") / img["filename"]).size)
    assert sizes == [(352, 176), (352, 176)]  # (width, height) of both images of the batch
    note = json.dumps(entry["outputs"][loader_id], ensure_ascii=False)
    assert "template h/w 0.5 at 0.06M: 7 scales" in note and "11×22" in note and "352×176 px" in note


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
    """The dtype widget's bf16 and fp16 run Infinity (its layers take their inputs in the weights' dtype; under fp16
    the BSQ VAE loads in float32, whose decoder overflows float16)."""
    from .test_infinity_text_nodes import text_graph
    prompt, _ = text_graph(pack_loaded, sink="infinity")
    loader = next(n for n in prompt.values() if n["class_type"] == "ScalewiseInfinityLoader")
    loader["inputs"].update(dtype=dtype)
    entry, _ = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    images = output_images(pack_loaded, entry)
    assert len(images) == 2 and len(images[0]) == 256 * 256 * 3
    assert all(len(set(image)) > 1 for image in images)  # not a constant (NaN -> black) image
