"""Infinity Text Encode against Hugging Face's T5EncoderModel (what the official tools/run_infinity.py runs), and the
pack's loader on every form of the download.

    python check_infinity_text.py COMFY_DIR PACK_DIR WORK_DIR    (ComfyUI venv; prints one JSON line)

A tiny random flan-like T5 (gated-gelu, bias in block 0, 32 buckets / max distance 128, the real 32128 vocabulary) is
made with `transformers` and saved as the Hub has flan-t5-xl: the full T5ForConditionalGeneration, sharded
(save_pretrained). The pack reads it as that folder, as .bin shards with their index (written from the same
tensors by hand: transformers 5 no longer writes .bin), as an encoder-only file of tools/convert_flan_t5.py, and the
reference is T5EncoderModel on the folder with the official tokenisation (max_length 512, padding to 512,
truncation, attention mask, valid rows kept) - no ComfyUI code on that side. ComfyUI's own Load CLIP path is run on a
flan-t5-xl-shaped file (24 layers, d_model 2048) to show what it makes of it.
"""
import gc
import json
import sys
from pathlib import Path

from check_support import comfy_on_cpu, load_pack

comfy_dir, pack_dir, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
comfy_on_cpu(comfy_dir)
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import T5Config, T5EncoderModel, T5ForConditionalGeneration, T5TokenizerFast  # noqa: E402

import comfy.model_management  # noqa: E402
import comfy.sd  # noqa: E402

load_pack(pack_dir)
from scalewise.nodes import infinity_text as it  # noqa: E402
from scalewise.tools.convert_flan_t5 import convert  # noqa: E402

LAYERS, FFN = 3, 96
config = T5Config(vocab_size=32128, d_model=64, d_ff=FFN, d_kv=16, num_heads=4, num_layers=LAYERS,
                  num_decoder_layers=2, feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                  relative_attention_max_distance=128, layer_norm_epsilon=1e-6, tie_word_embeddings=False,
                  pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
torch.manual_seed(0)
full = T5ForConditionalGeneration(config).eval()
with torch.no_grad():
    for name, p in full.named_parameters():  # activations of order 1 through the layers
        if "layer_norm" in name:
            p.copy_(1 + 0.1 * torch.randn_like(p))
        elif "shared" in name or "embed" in name or "relative_attention_bias" in name:
            p.copy_(torch.randn_like(p))
        else:
            p.copy_(torch.randn_like(p) / p.shape[1] ** 0.5)
hub = work / "flan-t5-tiny"
full.save_pretrained(hub, max_shard_size="3MB")
shard_files = sorted(p.name for p in hub.glob("*.safetensors"))

# The same tensors as .bin shards (torch.save) with their index, as older Hub downloads hold them.
bin_dir = work / "flan-t5-tiny-bin"
bin_dir.mkdir()
weight_map = {}
for i, name in enumerate(shard_files):
    part = load_file(str(hub / name))
    if "shared.weight" in part:  # .bin files carry the tied copies too
        part["encoder.embed_tokens.weight"] = part["shared.weight"].clone()
    out = f"pytorch_model-{i + 1:05d}-of-{len(shard_files):05d}.bin"
    torch.save(part, bin_dir / out)
    weight_map.update({k: out for k in part})
(bin_dir / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

converted32, converted16 = work / "flan_tiny_fp32.safetensors", work / "flan_tiny_fp16.safetensors"
convert(str(hub), str(converted32), torch.float32)
convert(str(hub), str(converted16), torch.float16)

# An embedding whose vectors are the token-embedding rows of "red fox": it must give the features of those words.
tokenizer = T5TokenizerFast.from_pretrained(f"{comfy_dir}/comfy/text_encoders/t5_tokenizer")
tokenizer.save_pretrained(hub)  # the Hub folder holds the tokenizer files too: the loader compares its vocabulary
vocab_check = {"hub written": (hub / "tokenizer.json").is_file()}
other = work / "other-vocabulary"  # the same files with one piece changed, and with one piece fewer
for name, change in (("piece", lambda v: v.__setitem__(5, ["▁zzz", 0.0])), ("count", lambda v: v.pop())):
    folder = other / name
    folder.mkdir(parents=True)
    data = json.loads((hub / "tokenizer.json").read_text(encoding="utf-8"))
    change(data["model"]["vocab"])
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    try:
        it.load_text_encoder(str(folder / "model.safetensors.index.json"), torch.float32)
        vocab_check[name] = None
    except Exception as e:  # noqa: BLE001 - the message is the result
        vocab_check[name] = f"{type(e).__name__}: {e}"
fox = tokenizer("red fox", add_special_tokens=False)["input_ids"]
emb_dir = work / "embeddings"
emb_dir.mkdir()
table = load_file(str(converted32))["shared.weight"]
save_file({"flan_t5xl": table[torch.tensor(fox)].contiguous()}, str(emb_dir / "foxy.safetensors"))
save_file({"clip_l": torch.zeros(2, 768)}, str(emb_dir / "sd15.safetensors"))
import folder_paths  # noqa: E402

folder_paths.folder_names_and_paths["embeddings"] = ([str(emb_dir)], {".safetensors"})

words = len(tokenizer("word", add_special_tokens=False)["input_ids"])
assert words == 1
PROMPTS = {  # name: (prompt for the pack, the prompt as the official code reads it)
    "plain": ("a red fox in the snow", "a red fox in the snow"),
    "empty": ("", ""),
    "weighted": ("a (red fox:1.3) in (the) snow", "a red fox in the snow"),
    "embedding": ("a embedding:foxy in the snow", "a red fox in the snow"),
    "511 tokens": ("word " * 511, "word " * 511),        # + </s> = 512: nothing cut
    "512 tokens": ("word " * 512, "word " * 512),        # one too many: the official truncation drops one
    "600 tokens": ("word " * 600, "word " * 600),
}

sources = {"hub folder": hub, "hub index": hub / "model.safetensors.index.json",
           "bin index": bin_dir / "pytorch_model.bin.index.json", "converted fp32": converted32}
ours = {}
for label, path in sources.items():
    clip, load_notes = it.load_text_encoder(str(path), torch.float32)
    ours[label] = {name: it.encode_prompt(clip, text) for name, (text, _) in PROMPTS.items()}
    tokens = {name: [t if isinstance(t, int) else "vector" for t, _ in it.infinity_tokens(clip, text)[0]]
              for name, (text, _) in PROMPTS.items()}
    negative = {"none": it.encode(clip, "a red fox", "")[0], "given": it.encode(clip, "a red fox", "blurry")[0]}
    blurry = it.encode_prompt(clip, "blurry")[0]
    refusals = {}
    for name, text in (("missing embedding", "a embedding:nothere fox"), ("sd15 embedding", "embedding:sd15 fox")):
        try:
            it.encode_prompt(clip, text, "positive")
            refusals[name] = None
        except ValueError as e:
            refusals[name] = str(e)
    del clip
    comfy.model_management.unload_all_models()
    gc.collect()
clip16, _ = it.load_text_encoder(str(converted16))   # auto: ComfyUI's text-encoder dtype (fp16)
hub16, _ = it.load_text_encoder(str(hub), torch.float16)
fp16 = {"dtype": str(clip16.cond_stage_model.flan_t5xl.transformer.shared.weight.dtype),
        "same": all(torch.equal(it.encode_prompt(clip16, t)[0], it.encode_prompt(hub16, t)[0])
                    for t, _ in PROMPTS.values())}
del clip16, hub16

# What ComfyUI's Load CLIP makes of a flan-t5-xl-shaped file (24 layers, d_model 2048; small elsewhere).
xl = T5Config(vocab_size=32128, d_model=2048, d_ff=8, d_kv=4, num_heads=2, num_layers=24, num_decoder_layers=1,
              feed_forward_proj="gated-gelu")
with torch.device("meta"):
    shapes = T5EncoderModel(xl).state_dict()
xl_file = work / "flan_xl_shaped.safetensors"
save_file({k: torch.full(v.shape, 0.01, dtype=torch.float16) for k, v in shapes.items()
           if k != "encoder.embed_tokens.weight"}, str(xl_file))
detected = comfy.sd.detect_te_model(load_file(str(xl_file))).name
# ComfyUI builds its pile-T5-XL at full size; its own config override (model_options "<name>_model_config") shrinks
# the sizes this file does not have, the path is Load CLIP's.
small = {"pile_t5xl_model_config": {"d_ff": 8, "d_kv": 4, "num_heads": 2}}
comfy_clip = comfy.sd.load_clip(ckpt_paths=[str(xl_file)], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION,
                                model_options=small)
comfy_kind = sorted(comfy_clip.tokenize(""))
fox_text = "a red fox in the snow"
comfy_ids = [t for t, _, w in comfy_clip.tokenize(fox_text, return_word_ids=True)["pile_t5xl"][0] if w != 0]
flan_ids = tokenizer(fox_text, add_special_tokens=False)["input_ids"]
comfy_biases = sum("relative_attention_bias" in k for k in comfy_clip.cond_stage_model.state_dict())
try:
    it.encode_prompt(comfy_clip, "a red fox", "positive")
    comfy_refusal = None
except ValueError as e:
    comfy_refusal = str(e)
del comfy_clip
comfy.model_management.unload_all_models()
gc.collect()

# Reference: HF T5EncoderModel on the Hub folder, official tokenisation.
reference = T5EncoderModel.from_pretrained(str(hub)).eval()
batch = tokenizer([official for _, official in PROMPTS.values()], max_length=512, padding="max_length",
                  truncation=True, return_tensors="pt")
with torch.no_grad():
    states = reference(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state.float()
result = {"vocab_check": vocab_check, "shards": shard_files, "load_notes": load_notes, "detected": detected, "comfy_kind": comfy_kind,
          "comfy_refusal": comfy_refusal, "comfy_pile_ids_differ": comfy_ids != flan_ids,
          "comfy_biases": comfy_biases, "file_biases": sum("relative_attention_bias" in k for k in shapes), "refusals": refusals, "fp16": fp16, "cases": {}, "sources_equal": {}}
for i, name in enumerate(PROMPTS):
    valid = int(batch.attention_mask[i].sum())
    ref = states[i, :valid]
    feats, notes = ours["hub folder"][name]
    case = {"shape": list(feats.shape), "valid_ref": valid, "notes": notes, "scale": float(ref.abs().max()),
            "tokens_equal": tokens[name] == batch.input_ids[i, :valid].tolist(),
            "diff": float((feats - ref).abs().max()) if feats.shape == ref.shape else None}
    result["cases"][name] = case
    result["sources_equal"][name] = all(torch.equal(ours[s][name][0], feats) for s in sources)
result["embedding_tokens"] = tokens["embedding"]
result["negative"] = {"none": negative["none"].negative is None,
                      "given": negative["given"].negative is not None and
                      torch.equal(negative["given"].negative[0], blurry),
                      "features": len(negative["given"].features)}
print(json.dumps(result))
