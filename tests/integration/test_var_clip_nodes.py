"""VAR-CLIP in the real server: the tiny training dump in models/var -> Load VAR Model, ComfyUI's clip_l -> VAR-CLIP
Text Encode -> sampler with each guider, and the wrong conditioning for either family explained."""
import json

import pytest

from .fixtures_models import CLIP_L, OFFICIAL_VAE, OFFICIAL_VAR, OFFICIAL_VAR_CLIP
from .test_nodes import saved_images

GUIDERS = {
    "cfg": ("ScalewiseCFGGuider", dict(cfg=4.0, schedule="linear", start_scale=0, end_scale=0, power=1.0)),
    "igg": ("ScalewiseIGGGuider", dict(scale=4.0, schedule="linear", window="global", window_size=3,
                                       operand="raw_logits", start_scale=0, end_scale=0)),
}


def var_clip_graph(comfy, var=OFFICIAL_VAR_CLIP, guider="igg", cond=None, extra=None):
    g = comfy.graph_builder()
    clip = g.node("CLIPLoader", clip_name=CLIP_L, type="stable_diffusion", device="default")
    text = g.node("ScalewiseVARCLIPTextEncode", clip=clip.out(0), prompt="a sailboat with a sail at sunset")
    loader = g.node("ScalewiseVARLoader", var_name=var, vae_name=OFFICIAL_VAE, dtype="fp32")
    kind, widgets = GUIDERS["cfg" if guider in ("softcfg", "ssg") else guider]
    guide = g.node(kind, **widgets)
    if guider == "softcfg":
        guide = g.node("ScalewiseSoftCFGGuider", base=guide.out(0), strength=1.0, normalization="global",
                       confidence="max", floor=0.05)
    elif guider == "ssg":
        guide = g.node("ScalewiseSSGGuider", base=guide.out(0), beta=0.3, schedule="constant", custom_betas="",
                       dse_rescale=True, interpolation="bilinear", prior_source="guided_pre_ssg")
    if cond == "class":
        cond = g.node("ScalewiseImageNetClass", class_name="207: golden retriever", class_id=-1,
                      batch_classes="").out(0)
    sampler = g.node("ScalewiseSampler", model=loader.out(0), conditioning=cond or text.out(0), guider=guide.out(0),
                     seed=0, batch_size=2, top_k=900, top_p=0.95, more_smooth=False, preview="every scale",
                     smooth_start_scale=0, last_scale_temperature=1.0)
    save = g.node("SaveImage", images=sampler.out(0), filename_prefix="var_clip_test")
    return g.finalize(), save


@pytest.mark.parametrize("guider", ["cfg", "igg", "softcfg", "ssg"])
def test_text_to_image_with_every_guider(pack_loaded, guider):
    prompt, save = var_clip_graph(pack_loaded, guider=guider)
    entry, _ = pack_loaded.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    images = saved_images(pack_loaded, entry, save)
    assert len(images) == 2 and images[0].size == (256, 256)


def test_class_conditioning_into_var_clip_is_explained(pack_loaded):
    entry, _ = pack_loaded.run(var_clip_graph(pack_loaded, cond="class")[0], timeout=300)
    assert entry["status"]["status_str"] == "error"
    assert "VAR-CLIP Text Encode" in json.dumps(entry["status"]["messages"])


def test_var_clip_text_into_a_class_var_is_explained(pack_loaded):
    entry, _ = pack_loaded.run(var_clip_graph(pack_loaded, var=OFFICIAL_VAR)[0], timeout=300)
    assert entry["status"]["status_str"] == "error"
    assert "Class (VAR) node" in json.dumps(entry["status"]["messages"])
