"""Infinity's peak GPU memory and time per image, measured, against tools/infinity_memory.py's figures computed
from the shapes (README "Infinity", Memory; issue 27.7).

    python tools/gpu_infinity_bench.py [--tiny] [--sections memory,fp8,partial] [--models 2B,8B]
                                       [--sizes 1M,0.25M] [--comfy .gpu-ref/ComfyUI] [--deadline-s 330] [--out DIR]

Models: the official sizes (tools/infinity_memory.py MODELS) with random weights drawn on the GPU
(tools/tiny_weights.py `infinity_state_dict`; no file is read or downloaded), built through the loader's own path
(models/infinity_loader.py `infinity_transformer_from`), the BSQ VAE with PyTorch's default init on the GPU; bf16
(the official precision). Text: random flan-t5-xl-wide features of a 24-token prompt (the text encoder is off the
GPU while sampling, as in ComfyUI). Sampling as the example workflows: CFG 3 constant (Infinity's published cfg;
guidance.CFG(3.0, "constant")) or none, top-k 900, top-p 0.97, tau 0.5. One "generation" is guidance.sample:
every scale, then the decode.

Section `memory` -- the 2B (batch 1 and 2) and the 8B (batch 1) at 1024 px (pn 1M, template 1:1) and 512 px
(0.25M), with CFG and without: torch.cuda.max_memory_allocated over one generation with only that model on the GPU
(its weights included; the CUDA context and the allocator's cache not: max_memory_reserved is reported beside),
seconds per image (CUDA events, after a warm-up run), and the computed peak of the same row
(tools/infinity_memory.py `computed`) with the ratio measured / computed.

Section `fp8` -- the same rows with the depth blocks' linear weights (`InfinityTransformer.cast_layers`) stored in
float8_e4m3fn (`infinity_transformer_from(..., operations=CAST, weight_dtype=torch.float8_e4m3fn)`; CAST: a plain
torch Linear that hands its weight over in the input's dtype per use, as ComfyUI's manual_cast layers do, through
models/infinity.py `layer_parameters`), computed in bf16; compared with the computed "with fp8 blocks" peak. And
greedy (top-k 1) bits of the fp8 model against the bf16 model with the same weights and inputs (CFG, batch 1, per
size): agreement per scale and overall.

Section `partial` -- ComfyUI's partial loading (only with --comfy DIR, a ComfyUI tree; else reported skipped): the
model built as Load Infinity Model builds it (nodes/infinity.py `comfy_operations`, on the CPU, in a
comfy.model_patcher.ModelPatcher) and loaded by the sampler node's nodes/sampler.py `load_model` (ComfyUI's
load_models_gpu with the generation's memory estimate, then `place_uncast`), on a simulated smaller card: ComfyUI's
--reserve-vram (comfy.cli_args.args.reserve_vram, set before model_management is imported; for the next card the
module value it sets, model_management.EXTRA_RESERVED_VRAM) = the GPU's memory - the card's + ComfyUI's default
0.4 GB, so that ComfyUI plans as on that card (on NVIDIA its weight budget is free memory - estimate - reserve,
MIN_WEIGHT_MEMORY_RATIO 0). The issue's targets: the 8B on a 24 GB card (24564 MiB, an RTX 4090's) and the 2B on
a 12 GB card (12282 MiB) at 1024 px, batch 1, with CFG. Reported: peak allocated and reserved over the load and one
generation, whether reserved + the CUDA context fit the card, seconds per image (the first run, with the load,
apart), MB loaded on the GPU and left on the CPU (ModelPatcher.loaded_size / model_size) and the block layers cast
per use. On the CPU (--tiny without CUDA) ComfyUI loads the whole model: the row says so.

--tiny: the same sections on tiny widths (depth 2, width 64; the 2B's and the 8B's VAE layouts, the 8B's patchify)
at 256 px, in seconds on the CPU: a smoke test of the script, never results.

JSON lines go to $OUT/gpu_infinity_bench.jsonl (else --out, else .gpu-out/); a short table is printed LAST.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (makes the repository importable as `scalewise`)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from scalewise.guidance import CFG, Draw, Generation, sample  # noqa: E402
from scalewise.models.bsq_vae import BSQVAE, BSQVAEConfig  # noqa: E402
from scalewise.models.infinity import InfinityModel, InfinityText, square_scales  # noqa: E402
from scalewise.models.infinity_loader import infinity_transformer_from  # noqa: E402
from scalewise.tools import gpu_common as gc_  # noqa: E402
from scalewise.tools import infinity_memory  # noqa: E402
from scalewise.tools.tiny_weights import infinity_state_dict  # noqa: E402

TAG = "gpu_infinity_bench"
SECTIONS = ("memory", "fp8", "partial")
GIB, MIB = 2 ** 30, 2 ** 20
FP8 = torch.float8_e4m3fn
BATCHES = {"2B": (1, 2), "8B": (1,)}
PROMPT_TOKENS = 24
# Card sizes as the cards report them (cudaMemGetInfo total): RTX 4090 / 3090 24564 MiB, RTX 4070 12282 MiB.
CARDS_MIB = {"24GB": 24564, "12GB": 12282}
PARTIAL_TARGETS = (("8B", "24GB"), ("2B", "12GB"))  # issue 27.7: 1024 px, batch 1, CFG
COMFY_DEFAULT_RESERVE_GB = 0.4  # model_management.EXTRA_RESERVED_VRAM on Linux without the flag (400 MiB)
# --tiny: the official layouts at tiny widths (2B: d bits, stride-16 VAE; 8B: 4 d bits, stride-8 VAE, patchify)
TINY = {"2B": (dict(width=64, depth=2, heads=2, block_chunks=2, ffn_hidden=256, bits=8),
               BSQVAEConfig(ch=32, ch_mult=(1, 1, 1, 1, 1), bits=8, downsample=16), 1),
        "8B": (dict(width=64, depth=2, heads=2, block_chunks=2, ffn_hidden=256, bits=16),
               BSQVAEConfig(ch=32, ch_mult=(1, 1, 1, 1), bits=4, downsample=8), 2)}


def note(msg):
    gc_.note(TAG, msg)


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def guider(guided: bool):
    return CFG(3.0, "constant") if guided else None


def draw(greedy: bool = False) -> Draw:
    return Draw(top_k=1) if greedy else Draw(top_k=900, top_p=0.97, temperature=0.5)


class CastLinear(nn.Linear):
    """A plain-torch cast layer: the weight kept in its storage dtype (fp8), handed over in the input's dtype per
    use (`cast_parameters`, read by models/infinity.py `layer_parameters`), as ComfyUI's manual_cast Linear."""

    def cast_parameters(self, x):
        return self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype)

    def forward(self, x):
        return F.linear(x, *self.cast_parameters(x))


CAST = types.SimpleNamespace(Linear=CastLinear)


# == models ======================================================================================

class Spec:
    """One model of the plan: the meta-device shapes (tools/infinity_memory.py) at `pn`, built for real on demand."""

    def __init__(self, name: str, pn: str, tiny: bool):
        self.name, self.pn, self.tiny = name, pn, tiny
        sizes, vae_cfg, _ = TINY[name] if tiny else (None, None, None)
        self.meta_transformer, self.meta_vae, self.patch = infinity_memory.meta_model(name, pn, sizes, vae_cfg)
        self.cfg, self.vae_cfg = self.meta_transformer.config, self.meta_vae.config
        self.px = self.cfg.scales[-1][0] * self.vae_cfg.downsample * self.patch
        self.label = name + ("-tiny" if tiny else "")

    def computed(self, batch: int, guided: bool, itemsize: int) -> dict:
        return infinity_memory.computed(self.meta_transformer, self.meta_vae, self.patch, batch, guided, itemsize)

    def state_dict(self, device, dtype, draw_device):
        return infinity_state_dict(self.cfg, device, dtype, seed=0, draw_device=draw_device)

    def transformer(self, sd, device, dtype, operations=nn, weight_dtype=None):
        """Through the loader's own path (keys, config inferred from the tensors, fp8 cast key by key). `sd` is not
        changed; tensors already in place are shared, not copied."""
        t = infinity_transformer_from(f"random-{self.label}", dict(sd), pn=self.pn, device=device, dtype=dtype,
                                      operations=operations, weight_dtype=weight_dtype)
        if t.config != self.cfg:
            raise RuntimeError(f"{self.label}: the loader inferred {t.config}, the plan says {self.cfg}")
        return t

    def vae(self, device, dtype):
        torch.manual_seed(1)  # PyTorch's default init, drawn where the VAE is built
        with torch.device(device):
            vae = BSQVAE(self.vae_cfg)
        return vae.to(dtype).eval().requires_grad_(False)


def text(batch: int, seed: int = 0) -> InfinityText:
    gen = torch.Generator().manual_seed(seed)
    return InfinityText(tuple(torch.randn(PROMPT_TOKENS, 2048, generator=gen) for _ in range(batch)))


def generate(model, guided: bool, batch: int, seed: int, greedy: bool = False):
    return sample(model, guider(guided), Generation(text(batch), seed=seed, batch_size=batch, draw=draw(greedy)))


def plan(args):
    """(Spec, batch, guided) rows of sections memory and fp8, model by model, largest size first."""
    for name in args.models:
        for pn in args.sizes:
            spec = Spec(name, pn, args.tiny)
            yield spec, [(b, g) for b in BATCHES[name] for g in (True, False)]


# == measuring ===================================================================================

def measure(timer: gc_.Timer, fn, args, deadline) -> dict:
    """`args.warmup` untimed runs, then up to `args.repeat` timed ones (at least 1, more while `args.budget_s`
    lasts and the deadline has not passed): times, the largest absolute max_memory_allocated and
    max_memory_reserved of a timed run (CUDA; None on the CPU). An exception is returned as the row's error ("out
    of memory", or the exception named, its traceback on stderr), so one failing row cannot cost a device call the
    others."""
    torch_ = timer.torch
    res = {"times": [], "peak": None, "reserved": None, "error": None}
    try:
        for _ in range(args.warmup):
            fn()
        t0 = time.monotonic()
        for i in range(args.repeat):
            if i >= 1 and (time.monotonic() - t0 > args.budget_s or deadline.passed()):
                break
            base = torch_.cuda.memory_allocated(timer.device) if timer.cuda else 0
            out, seconds, _, peak = timer.run(fn, own_bytes=base)  # own_bytes = base: the absolute peak
            del out
            res["times"].append(seconds)
            if timer.cuda:
                res["peak"] = max(res["peak"] or 0.0, peak)
                res["reserved"] = max(res["reserved"] or 0.0, torch_.cuda.max_memory_reserved(timer.device) / GIB)
    except Exception as e:  # noqa: BLE001 -- recorded in the row
        if is_oom(e):
            res["error"] = "out of memory"
        else:
            traceback.print_exc()
            res["error"] = gc_.error_text(e)
        gc_.free(torch_, timer.device)
    return res


def figures_row(section, spec, batch, guided, res, computed_gib, weights, compute, **extra) -> dict:
    s = gc_.stats(res["times"])[0]
    ratio = res["peak"] / computed_gib if res["peak"] and computed_gib else None
    row = {"section": section, "model": spec.label, "px": spec.px, "pn": spec.pn, "batch": batch, "cfg": guided,
           "weights": weights, "compute": compute,
           "s_per_image": gc_.rounded(s / batch if s else None), "runs": len(res["times"]),
           "peak_gib": gc_.rounded(res["peak"], 4), "peak_reserved_gib": gc_.rounded(res["reserved"], 4),
           "computed_gib": gc_.rounded(computed_gib, 4), "measured_over_computed": gc_.rounded(ratio, 4), **extra}
    if res["error"]:
        row["error"] = res["error"]
    return row


def model_gib(model) -> float:
    return gc_.module_bytes(model) / GIB


def parameter_bytes(model) -> int:
    """Bytes of the parameters in their storage dtypes (what tools/infinity_memory.py counts; the few buffers, the
    zero_k_bias constants and the VAE's bit masks, apart)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


# == sections ====================================================================================

def section_memory(args, device, emit, deadline):
    timer = gc_.Timer(torch, device)
    for spec, rows in plan(args):
        if deadline.passed():
            emit({"section": "skipped", "model": spec.label, "px": spec.px, "error": "deadline"})
            continue
        sd = spec.state_dict(device, args.dtype, device)
        model = InfinityModel(spec.transformer(sd, device, args.dtype), spec.vae(device, args.dtype))
        del sd
        note(f"memory: {spec.label} {spec.px} px built, {model_gib(model):.2f} GiB of weights")
        itemsize = args.dtype.itemsize
        for batch, guided in rows:
            if deadline.passed():
                emit({"section": "skipped", "model": spec.label, "px": spec.px, "batch": batch, "error": "deadline"})
                continue
            res = measure(timer, lambda m=model, g=guided, b=batch: generate(m, g, b, 0).images, args, deadline)
            c = spec.computed(batch, guided, itemsize)
            emit(figures_row("memory", spec, batch, guided, res, c["peak"] / GIB, gc_.dtype_name(args.dtype),
                             gc_.dtype_name(args.dtype),
                             parameter_bytes=parameter_bytes(model), computed_parameter_bytes=c["weights"],
                             computed_generation_gib=gc_.rounded(max(c["sampling"], c["decoding"]) / GIB, 4)))
        del model
        gc_.free(torch, device)


def section_fp8(args, device, emit, deadline):
    timer = gc_.Timer(torch, device)
    for spec, rows in plan(args):
        if deadline.passed():
            emit({"section": "skipped", "model": spec.label, "px": spec.px, "error": "deadline"})
            continue
        sd = spec.state_dict(device, args.dtype, device)
        vae = spec.vae(device, args.dtype)
        plain = InfinityModel(spec.transformer(sd, device, args.dtype), vae)
        reference = generate(plain, True, 1, 0, greedy=True).tokens
        stored = InfinityModel(spec.transformer(sd, device, args.dtype, CAST, FP8), vae)
        del plain, sd  # the bf16 block weights go; the other tensors are shared with the fp8 model
        gc_.free(torch, device)
        layers = stored.transformer.cast_layers()
        kinds = sorted({str(m.weight.dtype).replace("torch.", "") for m in layers})
        got = generate(stored, True, 1, 0, greedy=True).tokens
        figures = gc_.agreement_figures(reference, got)
        emit({"section": "fp8_agreement", "model": spec.label, "px": spec.px, "pn": spec.pn, "batch": 1, "cfg": True,
              "weights": "fp8_e4m3fn blocks", "reference": gc_.dtype_name(args.dtype), "draw": "greedy (top_k 1)",
              "bits_compared": sum(t.numel() for t in reference),
              "bits_agreeing": sum(int((a.cpu() == b.cpu()).sum()) for a, b in zip(reference, got)),
              "block_weight_dtypes": kinds,
              "bit_agreement": figures["token_agreement"], "agreement_per_scale": figures["agreement_per_scale"],
              "first_diverging_scale": figures["first_diverging_scale"], "bits_equal": figures["tokens_equal"]})
        note(f"fp8: {spec.label} {spec.px} px greedy bits agree with {gc_.dtype_name(args.dtype)}: "
             f"{figures['token_agreement']:.4f}; {model_gib(stored):.2f} GiB of weights")
        itemsize = args.dtype.itemsize
        for batch, guided in rows:
            if deadline.passed():
                emit({"section": "skipped", "model": spec.label, "px": spec.px, "batch": batch, "error": "deadline"})
                continue
            res = measure(timer, lambda m=stored, g=guided, b=batch: generate(m, g, b, 0).images, args, deadline)
            c = spec.computed(batch, guided, itemsize)
            emit(figures_row("fp8", spec, batch, guided, res, c["fp8_peak"] / GIB, "fp8_e4m3fn blocks",
                             gc_.dtype_name(args.dtype),
                             parameter_bytes=parameter_bytes(stored),
                             computed_parameter_bytes=c["weights"] - c["blocks"] + c["blocks"] // itemsize))
        del stored, vae
        gc_.free(torch, device)


def import_comfy(root: str, device, reserve_gb: float | None):
    """ComfyUI's modules from `root`: its launch arguments at their defaults (no parsing), --cpu on the CPU and
    --reserve-vram `reserve_gb` set before model_management is imported; PyAV stood in for where it is missing
    (tools/gpu_switti_bench.py `install_av_stub_if_missing`). Returns (model_management, model_patcher, the pack's
    nodes.sampler and nodes.infinity, ComfyUI's args)."""
    root = gc_.require_repo(root, "ComfyUI", os.path.join("comfy", "model_management.py"))
    sys.path.insert(0, root)
    from scalewise.tools.gpu_switti_bench import install_av_stub_if_missing
    install_av_stub_if_missing()
    from comfy.cli_args import args as comfy_args
    if device.type == "cpu":
        comfy_args.cpu = True
    comfy_args.reserve_vram = reserve_gb
    import comfy.model_management as mm
    import comfy.model_patcher
    if reserve_gb is not None and abs(mm.EXTRA_RESERVED_VRAM - reserve_gb * GIB) > 1:
        raise RuntimeError(f"--reserve-vram {reserve_gb} did not reach model_management (EXTRA_RESERVED_VRAM "
                           f"{mm.EXTRA_RESERVED_VRAM}): it was imported before the flag was set")
    nodes_sampler, nodes_infinity = node_modules()
    return mm, comfy.model_patcher, nodes_sampler, nodes_infinity, comfy_args


def node_modules():
    """The pack's nodes/sampler.py and nodes/infinity.py, without the package's __init__ (which imports every node
    for ComfyUI's loader: the text encoders' comfy.sd, and through it transformers, among them, which nothing here
    needs and the device machine's transformers may not suit ComfyUI 0.3.75's)."""
    import importlib
    if "scalewise.nodes" not in sys.modules:
        package = types.ModuleType("scalewise.nodes")
        package.__path__ = [os.path.join(gc_.ROOT, "nodes")]
        package.__package__ = "scalewise.nodes"
        sys.modules["scalewise.nodes"] = package
    return importlib.import_module("scalewise.nodes.sampler"), importlib.import_module("scalewise.nodes.infinity")


def reserve_for(card: str, device) -> float | None:
    """--reserve-vram in GB (ComfyUI's GB are GiB) that leaves ComfyUI the memory of `card` on this GPU."""
    if device.type != "cuda":
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    return round((total - CARDS_MIB[card] * MIB) / GIB + COMFY_DEFAULT_RESERVE_GB, 3)


def section_partial(args, device, emit, deadline):
    if not args.comfy:
        emit({"section": "partial", "skipped": "no --comfy DIR: ComfyUI's partial loading needs a ComfyUI tree "
                                               "(tools/README.md: .gpu-ref/ComfyUI)"})
        return
    targets = [(m, c) for m, c in PARTIAL_TARGETS if m in args.models]
    if not targets:
        emit({"section": "partial", "skipped": f"no target among --models {','.join(args.models)}"})
        return
    mm, model_patcher, nodes_sampler, nodes_infinity, comfy_args = import_comfy(
        args.comfy, device, reserve_for(targets[0][1], device))
    cuda = device.type == "cuda"
    dev = mm.get_torch_device()
    timer = gc_.Timer(torch, dev)
    note(f"partial: ComfyUI model management on {dev}, VRAM state {mm.vram_state.name}, "
         f"async offload streams {mm.NUM_STREAMS}")
    for name, card in targets:
        if deadline.passed():
            emit({"section": "skipped", "model": name, "card": card, "error": "deadline"})
            continue
        gc_.guarded(emit, {"section": "partial", "model": name, "card": card}, partial_one, args, device, dev, name,
                    card, mm, model_patcher, nodes_sampler, nodes_infinity, comfy_args, timer, emit, deadline, cuda)
        mm.unload_all_models()
        mm.soft_empty_cache(True)
        gc_.free(torch, device)


def partial_one(args, device, dev, name, card, mm, model_patcher, nodes_sampler, nodes_infinity, comfy_args, timer,
                emit, deadline, cuda):
    reserve = reserve_for(card, device)
    if reserve is not None:
        comfy_args.reserve_vram = reserve
        mm.EXTRA_RESERVED_VRAM = reserve * GIB  # what --reserve-vram sets (model_management.py)
    spec = Spec(name, args.sizes[0] if args.tiny else "1M", args.tiny)
    batch, guided = 1, True
    dtype = args.dtype
    # as Load Infinity Model: ComfyUI's cast layers, on the CPU, in a ModelPatcher (nodes/infinity.py execute)
    sd = spec.state_dict("cpu", dtype, device)
    transformer = spec.transformer(sd, "cpu", dtype, nodes_infinity.comfy_operations(dtype, dtype))
    del sd
    model = InfinityModel(transformer, spec.vae("cpu", dtype))
    patcher = model_patcher.ModelPatcher(model, load_device=dev, offload_device=mm.unet_offload_device())
    context = None
    if cuda:
        torch.cuda.synchronize()
        free_b, total_b = torch.cuda.mem_get_info(dev)
        context = (total_b - free_b - torch.cuda.memory_reserved(dev)) / GIB  # the CUDA context and other processes

    def run():
        nodes_sampler.load_model(patcher, batch, guided)  # as the sampler node, at every run
        return generate(patcher.model, guided, batch, 0).images

    base = torch.cuda.memory_allocated(dev) if cuda else 0
    _, first_s, _, first_peak = timer.run(run, own_bytes=base)
    first_reserved = torch.cuda.max_memory_reserved(dev) / GIB if cuda else None
    layers = model.transformer.cast_layers()
    offloaded = [m for m in layers if m.weight.device.type != dev.type]
    res = measure(timer, run, types.SimpleNamespace(warmup=0, repeat=args.repeat, budget_s=args.budget_s), deadline)
    peak = max(p for p in (first_peak, res["peak"]) if p is not None) if cuda else None
    reserved = max(r for r in (first_reserved, res["reserved"]) if r is not None) if cuda else None
    c = spec.computed(batch, guided, dtype.itemsize)
    card_gib = CARDS_MIB[card] * MIB / GIB
    s = gc_.stats(res["times"])[0]
    row = {"section": "partial", "model": spec.label, "px": spec.px, "pn": spec.pn, "batch": batch, "cfg": guided,
           "card": card, "card_gib": round(card_gib, 3), "weights": gc_.dtype_name(dtype),
           "load": ("partial" if getattr(model, "model_lowvram", False) else "full")
           + ("" if cuda else " (CPU: ComfyUI loads the whole model, no VRAM to plan for)"),
           "reserve_vram_gb": reserve, "memory_estimate_gib": gc_.rounded(model.memory_estimate(batch, guided) / GIB, 4),
           "model_mb": round(patcher.model_size() / MIB, 1), "loaded_mb": round(patcher.loaded_size() / MIB, 1),
           "offloaded_mb": round((patcher.model_size() - patcher.loaded_size()) / MIB, 1),
           "cast_layers": len(layers), "cast_layers_offloaded": len(offloaded),
           "first_run_s": gc_.rounded(first_s), "s_per_image": gc_.rounded(s / batch if s else None),
           "runs": len(res["times"]), "peak_gib": gc_.rounded(peak, 4), "peak_reserved_gib": gc_.rounded(reserved, 4),
           "cuda_context_gib": gc_.rounded(context, 4),
           "fits_card": None if reserved is None else reserved + context <= card_gib,
           "computed_least_offload_gib": gc_.rounded(c["least_offload"] / GIB, 4),
           "computed_full_peak_gib": gc_.rounded(c["peak"] / GIB, 4)}
    if res["error"]:
        row["error"] = res["error"]
    emit(row)
    note(f"partial: {spec.label} on a {card} card: {row['load']}, {row['loaded_mb']:.0f} MB loaded, "
         f"{row['offloaded_mb']:.0f} MB offloaded, {len(offloaded)}/{len(layers)} block layers cast per use")


# == table and main ==============================================================================

def table(rows, tiny) -> str:
    out = []
    head = (f"{'section':<8}{'model':<9}{'px':>5}{'b':>3} {'cfg':<4}{'s/img':>8}{'peak GiB':>10}{'reserved':>10}"
            f"{'computed':>10}{'ratio':>7}")
    measured = [r for r in rows if r["section"] in ("memory", "fp8") and "s_per_image" in r]
    if measured:
        out += [head, "-" * len(head)]
        for r in measured:
            out.append(f"{r['section']:<8}{r['model']:<9}{r['px']:>5}{r['batch']:>3} {'yes' if r['cfg'] else 'no':<4}"
                       f"{gc_.fmt(r['s_per_image'], '8.3f')}{gc_.fmt(r['peak_gib'], '10.2f')}"
                       f"{gc_.fmt(r['peak_reserved_gib'], '10.2f')}{gc_.fmt(r['computed_gib'], '10.2f')}"
                       f"{gc_.fmt(r['measured_over_computed'], '7.2f')}" + (f"  {r['error']}" if "error" in r else ""))
    for r in rows:
        s = r["section"]
        if s == "fp8_agreement":
            out.append(f"fp8 {r['model']} {r['px']} px greedy bits vs {r['reference']}: {r['bits_agreeing']} of "
                       f"{r['bits_compared']} agree ({r['bit_agreement']:.4f}; first diverging scale "
                       f"{r['first_diverging_scale']})")
        elif s == "partial" and "skipped" in r:
            out.append(f"partial: skipped: {r['skipped']}")
        elif s == "partial" and "error" not in r:
            fits = {None: "n/a (no CUDA)", True: "fits", False: "DOES NOT FIT"}[r["fits_card"]]
            out.append(f"partial {r['model']} {r['px']} px b{r['batch']} CFG on a {r['card']} card: {r['load']}; "
                       f"{r['loaded_mb']:.0f} MB loaded, {r['offloaded_mb']:.0f} MB offloaded "
                       f"({r['cast_layers_offloaded']}/{r['cast_layers']} layers); {gc_.fmt(r['s_per_image'], '.3f')}"
                       f" s/img (first {r['first_run_s']:.3f} s with the load); peak {gc_.fmt(r['peak_gib'], '.2f')} "
                       f"GiB, reserved {gc_.fmt(r['peak_reserved_gib'], '.2f')} + context "
                       f"{gc_.fmt(r['cuda_context_gib'], '.2f')}: {fits}; computed least "
                       f"{r['computed_least_offload_gib']:.2f} GiB")
        if "error" in r and r not in measured:
            out.append(f"{s} {r.get('model', '')} {r.get('px', '')} {r.get('card', '')}: {r['error']}")
    if tiny:
        out.append("tiny models: a smoke test of the script, the figures are not results")
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny widths of the same layouts (CPU check)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None)
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--models", default="2B,8B")
    p.add_argument("--sizes", default=None, help="pn of the 1:1 template (default 1M,0.25M; tiny 0.06M)")
    p.add_argument("--comfy", default=None, help="a ComfyUI tree (its Python files suffice), for section partial")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=4.0, help="timed runs of one row stop after this (>= 1 run)")
    p.add_argument("--deadline-s", type=float, default=330.0, help="soft limit of the whole run")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cpu" and not args.tiny:
        p.error("the official sizes on the CPU take hours: pass --tiny (or run on a GPU)")
    args.dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    for s in args.sections:
        if s not in SECTIONS:
            p.error(f"unknown section {s!r}: choose from {', '.join(SECTIONS)}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in args.models:
        if m not in BATCHES:
            p.error(f"unknown model {m!r}: choose from {', '.join(BATCHES)}")
    args.sizes = [s.strip() for s in (args.sizes or ("0.06M" if args.tiny else "1M,0.25M")).split(",") if s.strip()]
    for s in args.sizes:
        try:
            square_scales(s)
        except (KeyError, ValueError):
            p.error(f"unknown size {s!r}: a pn of the 1:1 template, e.g. 1M, 0.60M, 0.25M, 0.06M")
    if args.tiny:
        args.warmup, args.repeat = min(args.warmup, 0), min(args.repeat, 1)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    deadline = gc_.Deadline(args.deadline_s)
    device = torch.device(args.device)
    out = gc_.out_dir(args.out)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    emit = gc_.Emitter(os.path.join(out, f"{TAG}.jsonl"),
                       {"device": dev_name, "device_type": device.type, "tiny": args.tiny, "torch": torch.__version__})
    note(f"{dev_name}, torch {torch.__version__}, sections {','.join(args.sections)}, output {emit.path}")
    runners = {"memory": section_memory, "fp8": section_fp8, "partial": section_partial}
    try:
        gc_.run_sections(runners, args, device, emit, deadline, note)
    finally:
        emit.close()
    print(table(emit.rows, args.tiny), flush=True)
    return gc_.exit_status(emit.rows)


if __name__ == "__main__":
    sys.exit(main())
