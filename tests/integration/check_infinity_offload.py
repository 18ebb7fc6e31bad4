"""Infinity on ComfyUI's cast layers (nodes/infinity.py `comfy_operations`) under ComfyUI's own partial loading
(ModelPatcher.load with a weight budget, as load_models_gpu gives on a small card) and fp8 weight storage, on the
CPU; prints one JSON line of what it saw.

    python check_infinity_offload.py COMFY_DIR PACK_DIR      (ComfyUI venv)
"""
import copy
import json
import sys

from check_support import comfy_on_cpu, load_pack

comfy_dir, pack_dir = sys.argv[1], sys.argv[2]
args = comfy_on_cpu(comfy_dir)
import torch  # noqa: E402

import comfy.model_patcher  # noqa: E402
import comfy.ops  # noqa: E402

load_pack(pack_dir)
from scalewise.guidance import CFG, IGG, Draw, Generation, sample  # noqa: E402
from scalewise.models.infinity import InfinityModel, InfinityText  # noqa: E402
from scalewise.models.infinity_loader import infinity_transformer_from  # noqa: E402
from scalewise.nodes.infinity import comfy_operations, infinity_precision, storage_note  # noqa: E402
from scalewise.nodes.sampler import place_uncast  # noqa: E402
from scalewise.tools.tiny_weights import tiny_infinity  # noqa: E402

cpu = torch.device("cpu")
plain = tiny_infinity(seed=7)
text = InfinityText(tuple(torch.randn(n, 256, generator=torch.Generator().manual_seed(1)) for n in (4, 7)))
generation = Generation(text, seed=3, draw=Draw(top_k=1))


def built(weight_dtype=torch.float32) -> InfinityModel:
    sd = {k: v.clone() for k, v in plain.transformer.state_dict().items()}
    t = infinity_transformer_from("tiny.pth", sd, pn="0.06M", operations=comfy_operations(weight_dtype, torch.float32),
                                  weight_dtype=weight_dtype)
    return InfinityModel(t, copy.deepcopy(plain.vae))


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens)) and torch.equal(a.images, b.images)


out = {}
model = built()
layers = model.transformer.cast_layers()
patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)
budget = sum(m.weight.numel() * 4 for m in layers) // 3  # a third of the block weights fits
patcher.load(cpu, lowvram_model_memory=budget)
out["lowvram"] = bool(getattr(model, "model_lowvram", False))
out["cast_layers"] = len(layers)
out["cast_per_use"] = sum(bool(m.comfy_cast_weights) for m in layers)
calls = []
real_cast = comfy.ops.cast_bias_weight


def spy(s, *args, **kwargs):  # every cast of a weight by ComfyUI, per layer (forward and cast_parameters alike)
    calls.append(id(s))
    return real_cast(s, *args, **kwargs)


comfy.ops.cast_bias_weight = spy
place_uncast(model, cpu)
for guider, name in ((CFG(3.0), "cfg"), (IGG(scale=2.0), "igg")):
    out[f"partial_same_as_plain_{name}"] = same(sample(plain, guider, generation), sample(model, guider, generation))
comfy.ops.cast_bias_weight = real_cast
offloaded = {id(m) for m in layers if m.comfy_cast_weights}
out["offloaded_layers_cast"] = sorted(calls.count(i) for i in offloaded)[0] if offloaded else 0
out["loaded_layers_cast"] = sum(calls.count(id(m)) for m in layers if id(m) not in offloaded)
patcher.detach()

for name, fp8 in (("e4m3fn", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2)):
    stored = built(fp8)
    reference = copy.deepcopy(plain)
    for layer in reference.transformer.cast_layers():
        layer.weight.data = layer.weight.data.to(fp8).float()
    out[f"fp8_{name}_dtypes"] = sorted({str(m.weight.dtype) for m in stored.transformer.cast_layers()})
    out[f"fp8_{name}_same_as_rounded"] = same(sample(reference, CFG(3.0), generation),
                                              sample(stored, CFG(3.0), generation))

stored = built(torch.float8_e5m2)
out["storage_note"] = storage_note(stored, "dtype fp8_e5m2")
out["storage_note_plain"] = storage_note(built(), None)


def picked(choice):
    precision, weight, source = infinity_precision(choice, cpu)
    return [str(precision.transformer), str(weight), source, list(precision.notes)]


out["choice_fp8_e5m2"] = picked("fp8_e5m2")
args.fp8_e4m3fn_unet = True
out["flag_fp8_e4m3fn"] = picked("auto")
out["flag_with_bf16"] = picked("bf16")
out["flag_with_fp8_e5m2"] = picked("fp8_e5m2")
args.fp8_e4m3fn_unet, args.fp8_e8m0fnu_unet = False, True
out["flag_fp8_e8m0fnu"] = picked("auto")
print(json.dumps(out))
