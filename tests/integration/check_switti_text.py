"""Switti Text Encode against an independent computation of the official features (switti.md §4.2).

    python check_switti_text.py COMFY_DIR PACK_DIR CLIP_DIR WORK_DIR    (ComfyUI venv; prints one JSON line)

CLIP_DIR holds clip_l.safetensors and clip_g.safetensors (make_clip.py). The pack's encode_prompt runs on the CLIP
object ComfyUI's DualCLIPLoader builds from them (comfy.sd.load_clip, type sdxl); the reference runs Hugging Face
`transformers` CLIPTextModel (what the official pipeline uses) on the same weights, with HF's CLIPTokenizer,
truncation to 77 and the padding mask, as the official FrozenCLIPEmbedder does — no ComfyUI code on that side.
A textual-inversion file whose vectors are the token embeddings of "red fox" must give the features of those words.
"""
import gc
import json
import sys
from pathlib import Path

from check_support import comfy_on_cpu, load_pack

comfy_dir, pack_dir, clip_dir, work = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
comfy_on_cpu(comfy_dir)
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

import comfy.model_management  # noqa: E402
import comfy.sd  # noqa: E402

load_pack(pack_dir)
from scalewise.nodes.switti_text import encode_prompt  # noqa: E402

# The public configs of openai/clip-vit-large-patch14 and laion/CLIP-ViT-bigG-14-laion2B-39B-b160k (text towers).
CONFIGS = {
    "clip_l": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   hidden_act="quick_gelu"),
    "clip_g": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                   hidden_act="gelu"),
}
EOS, BIGG_PAD = 49407, 0   # CLIP-L pads with EOS, bigG with "!" (id 0); pads never reach a valid position

tokenizer = CLIPTokenizer.from_pretrained(f"{comfy_dir}/comfy/sd1_tokenizer")  # the CLIP BPE vocabulary files


def words(text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# A prompt whose 75-token cut falls inside a short segment: ComfyUI's first chunk ends before it (segments of
# under 8 tokens are kept whole, in the next chunk), the official tokenizer cuts it. 73 one-token words, then a
# 3-token word made a segment of its own by the weight syntax.
odd = "qzxv"
assert len(words(odd)) == 3 and len(words("a " * 73)) == 73
straddle = ("a " * 73 + f"({odd}:1.0) in the snow", "a " * 73 + f"{odd} in the snow")
PROMPTS = {  # name: (prompt for the pack, the same prompt as the official pipeline reads it)
    "plain": ("a red fox in the snow", "a red fox in the snow"),
    "empty": ("", ""),
    "straddle": straddle,
    "weighted": ("a (red fox:1.3) in (the) snow", "a red fox in the snow"),
    "embedding": ("a embedding:foxy in the snow", "a red fox in the snow"),
    "embedding, weighted": ("a (embedding:foxy:0.8), in the snow", "a red fox, in the snow"),
}

files = {name: load_file(str(clip_dir / f"{name}.safetensors")) for name in CONFIGS}
# The embedding: the token-embedding rows of "red fox" from each encoder's own file.
fox = torch.tensor(words("red fox"))
(work / "embeddings").mkdir(parents=True, exist_ok=True)
save_file({name: files[name]["text_model.embeddings.token_embedding.weight"][fox].contiguous() for name in CONFIGS},
          str(work / "embeddings" / "foxy.safetensors"))

clip = comfy.sd.load_clip(ckpt_paths=[str(clip_dir / "clip_l.safetensors"), str(clip_dir / "clip_g.safetensors")],
                          embedding_directory=[str(work / "embeddings")], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)
ours = {name: encode_prompt(clip, text) for name, (text, _) in PROMPTS.items()}
comfy_chunk0 = sum(w != 0 for _, _, w in clip.tokenize(straddle[0], return_word_ids=True)["g"][0])
del clip
comfy.model_management.unload_all_models()  # ComfyUI's fp32 copy of the encoders (3.3 GB) before HF's
gc.collect()

# Reference: official tokenisation and HF CLIPTextModel, one encoder at a time (memory).
batch = tokenizer([official for _, official in PROMPTS.values()], truncation=True, max_length=77,
                  padding="max_length", return_tensors="pt")
ids, attention = batch["input_ids"], batch["attention_mask"]
reference = {}
with torch.no_grad():
    for name, cfg in CONFIGS.items():
        config = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5,
                                eos_token_id=EOS, **cfg)
        with torch.device("meta"):
            model = CLIPTextModel(config)
        # transformers 5 names the keys without the "text_model." prefix of the files (and of older versions)
        prefix = "" if any(k.startswith("text_model.") for k in model.state_dict()) else "text_model."
        sd = {k[len(prefix):]: v.float() for k, v in files[name].items() if k.startswith("text_model.")}
        missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
        missing = [k for k in missing if not k.endswith("position_ids")]
        assert not missing and not unexpected, f"{name}: {len(missing)} missing, {len(unexpected)} unexpected keys"
        for module in model.modules():  # a non-persistent buffer left on the meta device
            if getattr(module, "position_ids", None) is not None and module.position_ids.is_meta:
                module.position_ids = torch.arange(77)[None]
        model.eval()
        inputs = ids if name == "clip_l" else ids.masked_fill(attention == 0, BIGG_PAD)
        out = model(input_ids=inputs, attention_mask=attention)
        reference[name] = (out.last_hidden_state, out.pooler_output)
        del model, sd

result = {"comfy_straddle_chunk0": int(comfy_chunk0), "cases": {}}
for i, (name, (text, _)) in enumerate(PROMPTS.items()):
    cond, notes = ours[name]
    valid = int(attention[i].sum())
    hidden = torch.cat([reference["clip_l"][0][i], reference["clip_g"][0][i]], dim=-1)
    result["cases"][name] = {
        "shape": list(cond.hidden.shape), "valid": int(cond.mask.sum()), "valid_ref": valid,
        "mask_ok": bool(torch.equal(cond.mask[0], attention[i].bool())),
        "hidden_diff": float((cond.hidden[0, :valid] - hidden[:valid]).abs().max()),
        "pooled_diff": float((cond.pooled[0] - reference["clip_g"][1][i]).abs().max()),
        "scale": float(hidden[:valid].abs().max()), "notes": notes}
print(json.dumps(result))
