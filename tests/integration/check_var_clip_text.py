"""VAR-CLIP Text Encode against an independent computation of VAR-CLIP's text vector.

    python check_var_clip_text.py COMFY_DIR PACK_DIR CLIP_DIR    (ComfyUI venv; prints one JSON line)

CLIP_DIR holds clip_l.safetensors (make_clip.py). The pack's encode_prompt runs on the CLIP object ComfyUI's Load
CLIP builds from it (comfy.sd.load_clip, type stable_diffusion) and on a DualCLIPLoader one (type sdxl, clip_l +
clip_g); the reference is Hugging Face `transformers` CLIPTextModelWithProjection on the same weights with
hidden_act "gelu" (open_clip's "ViT-L-14" activation, which VAR-CLIP ran), HF's CLIPTokenizer with truncation to 77,
its text_embeds divided by their norm (VAR-CLIP's CLIPWrapper) — no ComfyUI or pack code on that side.
"""
import json
import sys
from pathlib import Path

from check_support import comfy_on_cpu, load_pack

comfy_dir, pack_dir, clip_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
comfy_on_cpu(comfy_dir)
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer  # noqa: E402

import comfy.sd  # noqa: E402

load_pack(pack_dir)
from scalewise.nodes.var_clip import encode_prompt  # noqa: E402

PROMPTS = {  # name: (prompt for the node, the same prompt as VAR-CLIP's tokenizer reads it)
    "plain": ("a sailboat with a sail at sunset", "a sailboat with a sail at sunset"),
    "empty": ("", ""),
    "long": ("a photo of a very small dog " * 20, "a photo of a very small dog " * 20),
    "weighted": ("a (sailboat:1.3) with a sail at (sunset)", "a sailboat with a sail at sunset"),
}
clip_l = str(clip_dir / "clip_l.safetensors")
single = comfy.sd.load_clip(ckpt_paths=[clip_l], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)
dual = comfy.sd.load_clip(ckpt_paths=[clip_l, str(clip_dir / "clip_g.safetensors")],
                          clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)
ours = {name: encode_prompt(single, text) for name, (text, _) in PROMPTS.items()}
ours_dual = encode_prompt(dual, PROMPTS["plain"][0])[0].vectors
comfy_pooled = single.encode_from_tokens(single.tokenize(PROMPTS["plain"][0]), return_pooled=True)[1].float()
refused = {}
for name, text in (("embedding", "a embedding:foxy boat"),):
    try:
        encode_prompt(single, text)
    except ValueError as e:
        refused[name] = str(e)

tokenizer = CLIPTokenizer.from_pretrained(f"{comfy_dir}/comfy/sd1_tokenizer")
batch = tokenizer([official for _, official in PROMPTS.values()], truncation=True, max_length=77,
                  padding="max_length", return_tensors="pt")
config = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, eos_token_id=49407,
                        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                        projection_dim=768, hidden_act="gelu")
model = CLIPTextModelWithProjection(config)
weights = {k: v.float() for k, v in load_file(clip_l).items()}
prefix = "" if any(k.startswith("text_model.") for k in model.state_dict()) else "text_model."
sd = {(k[len(prefix):] if k.startswith(prefix) and prefix else k): v for k, v in weights.items()}
missing, unexpected = model.load_state_dict(sd, strict=False)
missing = [k for k in missing if not k.endswith("position_ids")]
assert not missing and not unexpected, (missing[:4], unexpected[:4])
with torch.no_grad():
    ref = model.eval()(input_ids=batch["input_ids"]).text_embeds
    ref = ref / ref.norm(dim=-1, keepdim=True)
    config.hidden_act = "quick_gelu"
    quick = CLIPTextModelWithProjection(config)
    quick.load_state_dict(sd, strict=False)
    ref_quick = quick.eval()(input_ids=batch["input_ids"]).text_embeds
    ref_quick = ref_quick / ref_quick.norm(dim=-1, keepdim=True)

result = {"cases": {}, "refused": refused,
          "dual_diff": float((ours_dual[0] - ours["plain"][0].vectors[0]).abs().max()),
          "comfy_pooled_norm": float(comfy_pooled.norm()),
          "comfy_pooled_cos": float(torch.nn.functional.cosine_similarity(comfy_pooled[0], ref[0], dim=0))}
for i, name in enumerate(PROMPTS):
    cond, notes = ours[name]
    result["cases"][name] = {"shape": list(cond.vectors.shape), "dtype": str(cond.vectors.dtype),
                             "diff": float((cond.vectors[0] - ref[i]).abs().max()),
                             "quick_gelu_diff": float((cond.vectors[0] - ref_quick[i]).abs().max()),
                             "norm": float(cond.vectors[0].norm()), "notes": notes,
                             "valid_ref": int(batch["attention_mask"][i].sum())}
print(json.dumps(result))
