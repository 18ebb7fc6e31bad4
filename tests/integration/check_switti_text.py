"""Checks the Switti text-encoding recipe on a random-weight SDXL CLIP object of ComfyUI (no files).

    python check_switti_text.py COMFY_DIR PACK_DIR      (ComfyUI venv; prints one JSON line)
"""
import importlib.util
import json
import sys

comfy_dir, pack_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, comfy_dir)
from comfy.cli_args import args  # noqa: E402

args.cpu = True
import torch  # noqa: E402

import comfy.sd  # noqa: E402
import comfy.sdxl_clip  # noqa: E402

spec = importlib.util.spec_from_file_location("scalewise", f"{pack_dir}/__init__.py",
                                              submodule_search_locations=[pack_dir])
pack = importlib.util.module_from_spec(spec)
sys.modules["scalewise"] = pack
spec.loader.exec_module(pack)
from scalewise.nodes.switti import encode_prompt  # noqa: E402


class Target:
    clip = comfy.sdxl_clip.SDXLClipModel
    tokenizer = comfy.sdxl_clip.SDXLTokenizer
    params = {}


torch.manual_seed(0)
clip = comfy.sd.CLIP(target=Target(), embedding_directory=None)
with torch.no_grad():
    for name, p in clip.cond_stage_model.named_parameters():
        p.copy_(torch.randn(p.shape) * 0.02 + (1.0 if name.endswith("norm.weight") or "layer_norm" in name
                                               and name.endswith("weight") else 0.0))

text = "a red fox in the snow"
cond, cut = encode_prompt(clip, text)
tokens = clip.tokenize(text)
valid = int(cond.mask.sum())

# (a) clip_layer(-33) gives the final LayerNorm of the last layer (clip_layer(-1) has no final LN)
last = clip.clone()
last.clip_layer(-1)
raw = last.encode_from_tokens(tokens).float()
ln = clip.cond_stage_model
final_l = ln.clip_l.transformer.text_model.final_layer_norm
final_g = ln.clip_g.transformer.text_model.final_layer_norm
with torch.no_grad():
    expected = torch.cat((final_l(raw[..., :768]), final_g(raw[..., 768:])), dim=-1)
states_ok = torch.allclose(cond.hidden[:, :valid], expected[:, :valid], atol=1e-4)
# (b) the pooled vector is the unprojected bigG pooled output
_, unprojected = clip.clone().encode_from_tokens(tokens, return_pooled="unprojected")
pooled_ok = torch.allclose(cond.pooled, unprojected.float(), atol=1e-4)
# (c) the 0.3.75 quirk: clip_layer(-33) with "unprojected" falls back to the penultimate layer
quirk = clip.clone()
quirk.clip_layer(-33)
quirk_cond, _ = quirk.encode_from_tokens(tokens, return_pooled="unprojected")
default = clip.encode_from_tokens(tokens).float()
quirk_present = torch.allclose(quirk_cond.float(), default, atol=1e-5)
print(json.dumps({"states": bool(states_ok), "pooled": bool(pooled_ok), "quirk": bool(quirk_present),
                  "valid": valid, "empty_valid": int(encode_prompt(clip, "")[0].mask.sum()),
                  "shape": list(cond.hidden.shape), "cut": cut}))
