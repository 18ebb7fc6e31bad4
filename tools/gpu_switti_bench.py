"""Switti and half precision on a GPU, and memory that stays flat through ComfyUI (issue 19).

    python tools/gpu_switti_bench.py [--tiny] [--sections speed,half,endurance] [--repo .gpu-ref/switti]
                                     [--comfy .gpu-ref/ComfyUI] [--deadline-s 330] [--out DIR]

Section `speed` -- Switti against the official pipeline, side by side in one process. Official shapes with
random weights (switti-512 and switti-1024; --tiny: depth 2, width 128, VQ-VAE ch 32, same schedules), drawn once
and loaded into the official `SwittiHF` / `VQVAE` classes through switti_official_state_dict; the official
`SwittiPipeline` casts them to bf16 as its from_pretrained does; text encoders excluded (random CLIP-like
embeddings, drawn outside the timing, fed to both: the pipeline's encode_prompt returns them). README settings:
cfg 6, top-k 400, top-p 0.95, more_smooth from scale 2, CFG off from scale 8 (512) / 11 (1024), last-scale
temperature 0.1. First an fp32 greedy parity check (top_k 1, no smoothing, TF32 off): the tokens of both must be
equal at every scale. Then interleaved timing (CUDA events) and peak memory, batch 1 and 4.

Section `half` -- what half precision does to tokens:
  * batch_invariance: image i is promised to be the same whatever the batch size. Per dtype (fp32, bf16, fp16),
    guider (CFG, IGG, SSG over CFG) and batch size b of 1 and 8, the tokens of images 0..b-1 against the same
    images of a batch of 32, per scale (sampling as in use: the built-in model with its example settings, a
    full-size random VAR-d16 with top-k 900, top-p 0.96);
  * agreement: greedy tokens of the built-in (trained) model in bf16 and fp16 against fp32 on the same inputs;
  * vae_fp16: the full-size VQ-VAE (random weights; ch 160) decoding random token maps in fp16 at 256, 512 and
    1024 px, and the built-in model's trained VQ-VAE decoding its own samples at 64 px: the largest |output|
    of every Conv2d and GroupNorm (forward hooks) against fp16's largest finite value 65504, the module where
    it occurs, non-finite outputs, and the image difference to an fp32 decode of the same latent.

Section `endurance` -- memory that stays flat: ComfyUI's own modules (model_management, model_patcher, the
pack's node classes) imported from --comfy, no server (a real one needs more packages than fit the device's
64 MiB carry, see tools/README.md). Through the nodes' `execute`: the VAR loader node (the built-in model, and a
random VAR-d16 written as official files into a temporary models/var), the sampler node; ComfyUI loads and
offloads them next to a core model (a plain torch module in ComfyUI's ModelPatcher, 1 GiB in fp16). 50 runs
cancelled mid-sampling (ComfyUI's interrupt flag set from its progress-bar hook after scale 1..K-1), 100
complete runs with every 10th preceded by unloading all models and running the core model;
torch.cuda.memory_allocated with the models loaded and with all unloaded, before and after, and a fixed-seed
image before and after (must be equal).

JSON lines go to $OUT/gpu_switti_bench.jsonl (else --out, else .gpu-out/); a short table is printed LAST.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402,F401  (makes the repository importable as `scalewise`)
from scalewise.tools import benchmark as bm  # noqa: E402  (official-shape random models, guider settings)
from scalewise.tools import gpu_common as gc_  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from scalewise.guidance import CFG, Draw, Generation, IGG, SSG, sample  # noqa: E402
from scalewise.models import SCHEDULES, TextCondition, switti_official_state_dict, vqvae_official_state_dict  # noqa: E402
from scalewise.models.shapes import load_shapes_model  # noqa: E402
from scalewise.tools import tiny_weights  # noqa: E402  (the random VQ-VAE)

TAG = "gpu_switti_bench"
FP16_MAX = torch.finfo(torch.float16).max  # 65504
TARGETS = {"switti-512": {1: 0.12}, "switti-1024": {1: 0.4}}  # s per image at batch 1
TARGET_SPEEDUP, TARGET_1024_PEAK_GIB = 3.0, 7.0
SECTIONS = ("speed", "half", "endurance")


def note(msg):
    gc_.note(TAG, msg)


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


# == section speed ================================================================================

class OfficialSwitti:
    """The fetched repository's SwittiHF, VQVAE and SwittiPipeline (its top-level `models`, `utils`, `dist`)."""

    def __init__(self, repo: str):
        sys.path.insert(0, repo)
        import models.pipeline as pipeline_module
        from models.switti import SwittiHF
        from models.vqvae import VQVAE
        if not os.path.abspath(pipeline_module.__file__).startswith(repo):
            raise SystemExit(f"`models` was imported from {pipeline_module.__file__}, not from {repo}")
        self.SwittiHF, self.VQVAE, self.module = SwittiHF, VQVAE, pipeline_module

    def build(self, spec, pack_model, device):
        """The official pipeline (fp32) holding the pack model's weights; text encoders are empty modules."""
        patch_nums = SCHEDULES[spec["resolution"]]
        with torch.device(device):
            switti = self.SwittiHF(depth=spec["depth"], use_ar=spec["autoregressive"], reso=spec["resolution"])
            vae = self.VQVAE(vocab_size=4096, z_channels=32, ch=spec["vae_ch"], test_mode=True, share_quant_resi=4,
                             v_patch_nums=patch_nums)
        if switti.C != spec["width"] or switti.num_heads != spec["heads"]:
            raise RuntimeError(f"official Switti of depth {spec['depth']} has width {switti.C}, heads "
                               f"{switti.num_heads}; the pack's spec says {spec['width']}, {spec['heads']}")
        switti.load_state_dict({k: v.float() for k, v in switti_official_state_dict(pack_model.transformer).items()},
                               strict=True)
        vae.load_state_dict({k: v.float() for k, v in
                             vqvae_official_state_dict(pack_model.vae, len(patch_nums)).items()}, strict=True)
        pipe = self.module.SwittiPipeline(switti.eval().requires_grad_(False), vae.eval().requires_grad_(False),
                                          nn.Module(), nn.Module(), device, torch.float32)
        pipe.prepared = None
        # Text encoders are excluded from the measurement: encode_prompt hands over prepared embeddings.
        pipe.encode_prompt = lambda prompt, null_prompt="", encode_null=True: pipe.prepared
        return pipe

    @staticmethod
    def prepare(pipe, text: TextCondition):
        """The pipeline's (prompt_embeds, pooled, attn_bias) from the pack's TextCondition: cond rows then the
        negative repeated (as its encode_prompt expands the null prompt), bias 0 / -inf from the mask."""
        dtype = pipe.switti.head.weight.dtype
        b = text.hidden.shape[0]
        neg = text.negative

        def bias(mask):
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))

        pipe.prepared = (torch.cat((text.hidden, neg.hidden.expand(b, -1, -1))).to(dtype),
                         torch.cat((text.pooled, neg.pooled.expand(b, -1))).to(dtype),
                         torch.cat((bias(text.mask), bias(neg.mask).expand(b, -1))))

    def run(self, pipe, text, *, seed, greedy=False, stop=8, record=False):
        self.prepare(pipe, text)
        wrapped = self.module.sample_with_top_k_top_p_
        tokens = []
        if record:
            def recording(*a, **kw):
                out = wrapped(*a, **kw)
                tokens.append(out[:, :, 0].clone())
                return out
            self.module.sample_with_top_k_top_p_ = recording
        try:
            kw = (dict(top_k=1, top_p=0.0, more_smooth=False) if greedy else
                  dict(top_k=bm.SWITTI_TOP_K, top_p=bm.SWITTI_TOP_P, more_smooth=True,
                       smooth_start_si=bm.SWITTI_SMOOTH_START))
            images = pipe(None, seed=seed, cfg=bm.SWITTI_CFG_SCALE, return_pil=False, turn_on_cfg_start_si=0,
                          turn_off_cfg_start_si=stop, last_scale_temp=bm.SWITTI_LAST_TEMPERATURE, **kw)
        finally:
            self.module.sample_with_top_k_top_p_ = wrapped
            pipe.prepared = None
        if record:
            pns = pipe.switti.patch_nums
            return images, [t.view(-1, p, p) for t, p in zip(tokens, pns)]
        return images


def pack_switti(model, text, *, seed, stop, greedy=False):
    guider = CFG(bm.SWITTI_CFG_SCALE, start_scale=0, end_scale=stop)
    if greedy:
        return sample(model, guider, Generation(text, seed=seed,
                                                draw=Draw(top_k=1, last_scale_temperature=bm.SWITTI_LAST_TEMPERATURE)))
    return sample(model, guider, Generation(text, seed=seed, draw=Draw(top_k=bm.SWITTI_TOP_K, top_p=bm.SWITTI_TOP_P,
                                                                       more_smooth=True, smooth_start_scale=bm.SWITTI_SMOOTH_START, last_scale_temperature=bm.SWITTI_LAST_TEMPERATURE)))


def set_tf32(on: bool):
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on


def switti_parity(official, pipe, pack32, spec, batch, stop, device, emit):
    """fp32 greedy (TF32 off), same embeddings: the tokens of the official pipeline and of the pack."""
    text = bm.random_text(batch, torch.Generator().manual_seed(5), device, torch.float32)
    set_tf32(False)
    try:
        _, ref = official.run(pipe, text, seed=0, greedy=True, stop=stop, record=True)
        got = pack_switti(pack32, text, seed=0, stop=stop, greedy=True).tokens
    finally:
        set_tf32(True)
    figures = gc_.agreement_figures(ref, got)
    emit({"section": "parity", "impl": "pack", "reference": "official", "model": spec["model"],
          "resolution": spec["resolution"], "batch": batch, "guider": "cfg", "dtype": "fp32", **figures})
    note(f"{spec['model']}: fp32 greedy parity: {'equal' if figures['tokens_equal'] else figures}")


def section_speed(args, device, emit, deadline):
    official = OfficialSwitti(gc_.require_repo(args.repo, "Switti", os.path.join("models", "pipeline.py")))
    for spec in bm.model_plan(args.switti_models, args.tiny):
        if deadline.passed():
            emit({"section": "skipped", "model": spec["model"], "error": "deadline"})
            continue
        gc_.guarded(emit, {"section": "model", "model": spec["model"]}, switti_model, official, spec, args, device,
                    emit, deadline)
        gc_.free(torch, device)


def switti_model(official, spec, args, device, emit, deadline):
    """Build one Switti pair, check parity, then time both per batch size."""
    timer = gc_.Timer(torch, device)
    half = bm.DTYPES[args.dtype]
    t0 = time.monotonic()
    stop = bm.SWITTI_CFG_STOP[spec["resolution"]]
    pack32 = bm.build_model(spec, device, torch.float32)
    pipe = official.build(spec, pack32, device)
    note(f"built {spec['model']} (pack and official, fp32) in {time.monotonic() - t0:.1f} s")
    gc_.guarded(emit, {"section": "parity", "model": spec["model"]}, switti_parity, official, pipe, pack32, spec,
                args.parity_batch, stop, device, emit)
    # timing: the pipeline casts its modules in place (as from_pretrained(torch_dtype=bf16) does)
    packh = copy.deepcopy(pack32).to(half)
    del pack32
    pipe.switti.to(half)
    pipe.vae.to(half)
    gc_.free(torch, device)
    own = {"official": gc_.module_bytes(pipe.switti, pipe.vae), "pack": gc_.module_bytes(packh)}
    for batch in args.switti_batches:
        if deadline.passed():
            emit({"section": "skipped", "model": spec["model"], "batch": batch, "error": "deadline"})
            continue
        gen = torch.Generator().manual_seed(100 + batch)
        seed = [0]

        def inputs():
            seed[0] += 1
            return bm.random_text(batch, gen, device, half)

        configs = {"official": lambda p=pipe: official.run(p, inputs(), seed=seed[0], stop=stop),
                   "pack": lambda m=packh: pack_switti(m, inputs(), seed=seed[0], stop=stop).images}
        res = gc_.interleaved(timer, configs, own, warmup=args.warmup, repeat=args.repeat,
                              budget_s=args.budget_s, deadline=deadline, is_oom=is_oom)
        ref_s = gc_.stats(res["official"]["times"])[0]
        for impl, r in res.items():
            s, s_min = gc_.stats(r["times"])
            row = {"section": "speed", "impl": impl, "model": spec["model"], "resolution": spec["resolution"],
                   "batch": batch, "guider": "cfg", "dtype": gc_.dtype_name(half),
                   "s_per_batch": gc_.rounded(s), "s_per_batch_min": gc_.rounded(s_min),
                   "wall_s_per_batch": gc_.rounded(gc_.stats(r["walls"])[0]),
                   "img_per_s": gc_.rounded(batch / s if s else None, 3), "peak_gib": gc_.rounded(r["peak"], 4),
                   "runs": len(r["times"]),
                   "speedup_vs_official": gc_.rounded(ref_s / s if s and ref_s and impl == "pack" else None, 3)}
            if r["error"]:
                row["error"] = r["error"]
            emit(row)
    del pipe, packh
    gc_.free(torch, device)


# == section half =================================================================================

def builtin_guiders():
    """The built-in model's example settings (CFG 3 constant) and the IGG / SSG stacks on the same footing."""
    return {"cfg": lambda: CFG(3.0, "constant"), "igg": lambda: IGG(3.0, "constant"),
            "ssg": lambda: SSG(0.1, base=CFG(3.0, "constant"))}


def d16_guiders():
    return {g: bm.GUIDERS[g] for g in ("cfg", "igg", "ssg")}


def half_models(args, device):
    """(name, fp32 model, guiders, Draw settings, class id) of the two models of section half."""
    builtin = load_shapes_model(device=device, dtype=torch.float32)
    d16_spec = bm.model_plan(["d16"], args.tiny)[0]
    d16 = bm.build_model(d16_spec, device, torch.float32)
    return [("builtin-shapes", builtin, builtin_guiders(), dict(top_k=900, top_p=0.8), 5),
            (d16_spec["model"], d16, d16_guiders(), dict(top_k=bm.TOP_K, top_p=bm.TOP_P), 207)]


def batch_invariance(name, model, guiders, kwargs, cls, batches, device, emit, deadline):
    big = max(batches)
    for dname in ("fp32", "bf16", "fp16"):
        if deadline.passed():
            emit({"section": "skipped", "model": name, "dtype": dname, "error": "deadline"})
            continue
        m = model if dname == "fp32" else copy.deepcopy(model).to(bm.DTYPES[dname])
        try:
            for g, make in guiders.items():
                tokens = {b: sample(m, make(), Generation([cls], seed=1000, batch_size=b,
                                                          draw=Draw(**kwargs))).tokens for b in batches}
                for b in batches:
                    if b == big:
                        continue
                    ref = [t[:b] for t in tokens[big]]
                    emit({"section": "batch_invariance", "model": name, "dtype": dname, "guider": g, "batch": b,
                          "reference_batch": big, **gc_.agreement_figures(ref, tokens[b])})
        except (RuntimeError, NotImplementedError) as e:
            if is_oom(e):
                raise
            emit({"section": "batch_invariance", "model": name, "dtype": dname,
                  "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"})
        del m
        gc_.free(torch, device)


def builtin_agreement(model, batch, device, emit):
    """Greedy tokens of the built-in model in bf16 / fp16 against fp32, same inputs; returns fp32 tokens."""
    set_tf32(False)
    try:
        ref = {g: sample(model, make(), Generation([5], seed=0, batch_size=batch, draw=Draw(top_k=1))).tokens
               for g, make in builtin_guiders().items()}
    finally:
        set_tf32(True)
    for dname in ("bf16", "fp16"):
        half = copy.deepcopy(model).to(bm.DTYPES[dname])
        for g, make in builtin_guiders().items():
            got = sample(half, make(), Generation([5], seed=0, batch_size=batch, draw=Draw(top_k=1))).tokens
            emit({"section": "agreement", "model": "builtin-shapes", "dtype": dname, "reference_dtype": "fp32",
                  "guider": g, "batch": batch, **gc_.agreement_figures(ref[g], got)})
        del half
    return ref["cfg"]


class ActivationProbe:
    """Forward hooks on every Conv2d and GroupNorm: the largest |output| (inf once any output overflowed, with
    the first module that did) and the count of non-finite values over all outputs."""

    def __init__(self, module: nn.Module):
        self.max, self.where, self.nonfinite, self.handles = 0.0, None, 0, []
        for name, m in module.named_modules():
            if isinstance(m, (nn.Conv2d, nn.GroupNorm)):
                self.handles.append(m.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(_m, _inp, out):
            out = out.detach()
            finite = torch.isfinite(out)
            bad = int((~finite).sum())
            self.nonfinite += bad
            if bad:  # `where` keeps the first module that overflowed: later ones only pass inf/nan on
                if self.max != math.inf:
                    self.max, self.where = math.inf, name
            elif out.numel() and self.max != math.inf:
                peak = float(out.abs().amax())
                if peak > self.max:
                    self.max, self.where = peak, name
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def decode_probe(vae, fhat):
    probe = ActivationProbe(vae)
    try:
        image = vae.fhat_to_image(fhat)
    finally:
        probe.close()
    return image, probe


def vae_fp16(args, device, emit, builtin, builtin_tokens):
    """fp16 decoding: the full-size VQ-VAE (random) at 256/512/1024 px, the built-in trained one at 64 px."""
    cases = []
    ch = bm.TINY_VAE_CH if args.tiny else bm.VAE_CH
    for px in ((256,) if args.tiny else (256, 512, 1024)):
        cases.append((f"vqvae-ch{ch}-random", tiny_weights.random_vqvae(ch=ch, device=device), px, SCHEDULES[px], None))
    cases.append(("builtin-shapes-vqvae", builtin.vae, builtin.image_size, builtin.patch_nums, builtin_tokens))
    for name, vae32, px, patch_nums, tokens in cases:
        batch = 1 if tokens is None else tokens[0].shape[0]
        if tokens is None:
            gen = torch.Generator().manual_seed(px)
            tokens = [torch.randint(0, vae32.quantize.embedding.weight.shape[0], (batch, p, p),
                                    generator=gen).to(device)
                      for p in patch_nums]
        with torch.inference_mode():
            fhat = vae32.quantize.tokens_to_fhat(tokens, patch_nums).float()
            ref, probe32 = decode_probe(vae32, fhat)
            vae16 = copy.deepcopy(vae32).to(torch.float16)
            try:
                img, probe16 = decode_probe(vae16, fhat)
                row = {"section": "vae_fp16", "vae": name, "resolution": px, "batch": batch, "dtype": "fp16",
                       "max_abs_activation": probe16.max, "where": probe16.where, "limit": FP16_MAX,
                       "headroom": gc_.rounded(FP16_MAX / probe16.max if probe16.max else None, 3),
                       "nonfinite_values": probe16.nonfinite, "max_abs_activation_fp32": probe32.max,
                       "where_fp32": probe32.where,
                       "image_max_abs_diff_vs_fp32": gc_.rounded(float((img - ref).abs().max()), 6),
                       "image_finite": bool(torch.isfinite(img).all())}
            except (RuntimeError, NotImplementedError) as e:
                if is_oom(e):
                    raise
                row = {"section": "vae_fp16", "vae": name, "resolution": px, "dtype": "fp16",
                       "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
            emit(row)
            del vae16
        gc_.free(torch, device)


def section_half(args, device, emit, deadline):
    """Each part reports its own failure; the others still run."""
    models = half_models(args, device)
    builtin = models[0][1]
    tokens = gc_.guarded(emit, {"section": "agreement", "model": "builtin-shapes"}, builtin_agreement, builtin,
                         args.agreement_batch, device, emit)
    if tokens is None:  # the trained VQ-VAE then decodes the built-in model's own greedy tokens of batch 8
        tokens = sample(builtin, CFG(3.0, "constant"), Generation([5], seed=0, batch_size=8, draw=Draw(top_k=1))).tokens
    gc_.guarded(emit, {"section": "vae_fp16", "model": "vqvae"}, vae_fp16, args, device, emit, builtin, tokens)
    for name, model, guiders, kwargs, cls in models:
        batches = args.invariance_batches_builtin if name == "builtin-shapes" else args.invariance_batches
        gc_.guarded(emit, {"section": "batch_invariance", "model": name}, batch_invariance, name, model, guiders,
                    kwargs, cls, batches, device, emit, deadline)


# == section endurance ============================================================================

def import_comfy(root: str, device):
    """ComfyUI's modules from `root` (a ComfyUI tree), its arguments parsed as a CPU-only or GPU server would."""
    root = gc_.require_repo(root, "ComfyUI", os.path.join("comfy", "model_management.py"))
    sys.path.insert(0, root)
    sys.argv = [sys.argv[0]] + ([] if device.type == "cuda" else ["--cpu"])
    install_av_stub_if_missing()
    import comfy.options
    comfy.options.enable_args_parsing()
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.utils
    import folder_paths
    import scalewise.nodes  # noqa: F401  (registers the model folders, as the server's loader does)
    return mm, comfy.model_patcher, comfy.utils, folder_paths


def install_av_stub_if_missing():
    """comfy_api's video types import PyAV (`av`), which is absent on the device machine and whose 34 MiB wheel
    does not fit its carry: when it cannot be imported, an inert stand-in lets those modules load. Nothing
    here decodes or encodes video, so no code path reaches it. Set SCALEWISE_GPU_STUB_AV=1 to force it."""
    if not os.environ.get("SCALEWISE_GPU_STUB_AV"):
        try:
            import av  # noqa: F401
            return
        except ImportError:
            pass
    import importlib.abc
    import importlib.machinery

    class Inert(type):
        def __getattr__(cls, name):
            return Inert(name, (), {})

    class Loader(importlib.abc.Loader):
        def create_module(self, spec):
            module = types.ModuleType(spec.name)
            module.__path__ = []
            module.__getattr__ = lambda name: Inert(name, (), {})
            return module

        def exec_module(self, module):
            pass

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "av" or name.startswith("av."):
                return importlib.machinery.ModuleSpec(name, Loader(), is_package=True)
            return None

    for name in [n for n in sys.modules if n == "av" or n.startswith("av.")]:
        del sys.modules[name]
    sys.meta_path.insert(0, Finder())
    note("PyAV is not importable here: an inert stand-in for `av` lets comfy_api's video modules load")


def write_random_var(folder: str, args, device):
    """A random VAR-d16 (tiny: the tiny 256 px layout) as official files in `folder`, for the loader node."""
    from safetensors.torch import save_file
    from scalewise.models import var_official_state_dict
    spec = bm.model_plan(["d16"], args.tiny)[0]
    model = bm.build_model(spec, "cpu", torch.float32)
    save_file({k: v.contiguous() for k, v in var_official_state_dict(model.transformer).items()},
              os.path.join(folder, "var_random.safetensors"))
    save_file({k: v.contiguous() for k, v in vqvae_official_state_dict(model.vae, len(model.patch_nums)).items()},
              os.path.join(folder, "vae_random.safetensors"))
    del model


class CoreModel(nn.Module):
    """Stands for a core ComfyUI model in the memory books: a stack of linear layers."""

    def __init__(self, width: int, layers: int):
        super().__init__()
        self.layers = nn.Sequential(*(nn.Linear(width, width) for _ in range(layers)))

    def forward(self, x):
        return self.layers(x)


def section_endurance(args, device, emit, deadline):
    mm, model_patcher, comfy_utils, folder_paths = import_comfy(args.comfy, device)
    from scalewise.guidance import CFG as LibCFG
    from scalewise.models.shapes import BUILTIN_NAME
    from scalewise.nodes.var import ClassCondition, VARLoader
    from scalewise.nodes.sampler import Sampler
    cuda = device.type == "cuda"
    dev = mm.get_torch_device()
    note(f"ComfyUI model management on {dev}; VRAM state {mm.vram_state.name}")

    tmp = tempfile.mkdtemp(prefix="scalewise-endurance-")
    write_random_var(tmp, args, device)
    folder_paths.add_model_folder_path("var", tmp)
    builtin = VARLoader.execute(BUILTIN_NAME, BUILTIN_NAME, "fp16" if cuda else "fp32").args[0]
    d16 = VARLoader.execute("var_random.safetensors", "vae_random.safetensors", "fp16" if cuda else "fp32").args[0]
    width, layers = (4096, 32) if cuda and not args.tiny else (256, 4)
    core_net = CoreModel(width, layers).to(torch.float16 if cuda else torch.float32)
    core = model_patcher.ModelPatcher(core_net, load_device=dev, offload_device=mm.unet_offload_device())
    models = [(builtin, ClassCondition((5,)), 8), (d16, ClassCondition((207,)), 1 if args.tiny else 4)]

    def run(i, seed):
        patcher, cond, batch = models[i % 2]
        out = Sampler.execute(patcher, cond, seed, batch, 900, 0.95, False, "off", 0, 1.0, guider=LibCFG(1.5))
        return out.args[0]

    def run_core():
        mm.load_models_gpu([core])
        with torch.inference_mode():
            core_net(torch.zeros(8, width, device=dev, dtype=next(core_net.parameters()).dtype))

    def allocated():
        if not cuda:
            return None
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated() / 2 ** 20

    def unloaded():
        mm.unload_all_models()
        mm.soft_empty_cache(True)
        gc_.free(torch, device)
        return allocated()

    class Cancel:
        at = None

    def hook(value, total, preview, node_id=None):
        if Cancel.at is not None and value >= Cancel.at:
            mm.interrupt_current_processing(True)
    comfy_utils.set_progress_bar_global_hook(hook)

    t0 = time.monotonic()
    first = run(0, 7)
    run(1, 3)
    run_core()
    base_unloaded = unloaded()
    run(0, 7)
    run(1, 3)
    run_core()
    base_loaded = allocated()
    cancels, caught = args.cancels, 0
    for i in range(cancels):
        scales = len(models[i % 2][0].model.patch_nums)
        Cancel.at = 1 + i % (scales - 1)
        try:
            run(i, 100 + i)
        except mm.InterruptProcessingException:
            caught += 1
        finally:
            Cancel.at = None
            mm.interrupt_current_processing(False)
    run_core()
    after_cancels_loaded = allocated()
    note(f"endurance: {caught}/{cancels} cancels caught ({time.monotonic() - t0:.1f} s)")
    runs = args.runs
    for i in range(runs):
        if deadline.passed():
            runs = i
            break
        if i % 10 == 9:
            unloaded()
            run_core()
        run(i, 1000 + i)
    run(0, 9)
    run(1, 9)
    run_core()
    after_loaded = allocated()
    again = run(0, 7)
    after_unloaded = unloaded()
    comfy_utils.set_progress_bar_global_hook(None)
    row = {"section": "endurance", "through": "node execute, ComfyUI modules imported (no server)",
           "models": ["builtin-shapes", "random VAR-d16" + (" (tiny)" if args.tiny else ""), "core ModelPatcher"],
           "cancels": cancels, "cancels_caught": caught, "runs": runs,
           "allocated_loaded_before_mib": base_loaded, "allocated_loaded_after_cancels_mib": after_cancels_loaded,
           "allocated_loaded_after_mib": after_loaded, "allocated_unloaded_before_mib": base_unloaded,
           "allocated_unloaded_after_mib": after_unloaded, "same_image_after": bool(torch.equal(first, again)),
           "seconds": round(time.monotonic() - t0, 1)}
    if cuda:
        row["flat"] = (after_loaded - base_loaded < 1 and after_cancels_loaded - base_loaded < 1
                       and after_unloaded - base_unloaded < 1)
    emit(row)


# == table and main ===============================================================================

def table(rows, tiny) -> str:
    out = []
    speed = [r for r in rows if r["section"] == "speed"]
    if speed:
        head = (f"{'model':<18}{'px':>5}{'batch':>6} {'impl':<9}{'dtype':<6}{'s/batch':>9}{'img/s':>8}{'peak GiB':>9}"
                f"{'x offic.':>9}")
        out += [head, "-" * len(head)]
        for r in speed:
            out.append(f"{r['model']:<18}{r['resolution']:>5}{r['batch']:>6} {r['impl']:<9}{r['dtype']:<6}"
                       f"{gc_.fmt(r['s_per_batch'], '9.4f')}{gc_.fmt(r['img_per_s'], '8.2f')}"
                       f"{gc_.fmt(r['peak_gib'], '9.2f')}{gc_.fmt(r['speedup_vs_official'], '9.2f')}"
                       + (f"  {r['error']}" if "error" in r else ""))
    for r in rows:
        s = r["section"]
        if s == "parity" and "error" not in r:
            out.append(f"parity {r['model']} fp32 greedy vs official: "
                       + ("EQUAL at every scale" if r["tokens_equal"]
                          else f"DIFFER from scale {r['first_diverging_scale']} ({r['token_agreement']:.4f})"))
        elif s == "batch_invariance" and "error" not in r:
            per = " ".join(f"{x:.2f}" for x in r["agreement_per_scale"])
            out.append(f"batch-invariance {r['model']:<15}{r['dtype']:<5}{r['guider']:<5} b{r['batch']:<2} vs "
                       f"b{r['reference_batch']}: {'same' if r['tokens_equal'] else 'DIFFERS'} [{per}]")
        elif s == "agreement" and "error" not in r:
            out.append(f"agreement builtin {r['dtype']} {r['guider']:<4} vs fp32: {r['token_agreement']:.4f} "
                       f"(first diverging scale {r['first_diverging_scale']})")
        elif s == "vae_fp16" and "error" not in r:
            out.append(f"vae fp16 {r['vae']:<22}{r['resolution']:>5} px: max |activation| {r['max_abs_activation']:.1f}"
                       f" at {r['where']} (limit 65504, headroom {gc_.fmt(r['headroom'], '.1f')}x), non-finite "
                       f"{r['nonfinite_values']}, |image - fp32| {r['image_max_abs_diff_vs_fp32']}")
        elif s == "endurance" and "error" not in r:
            out.append(f"endurance ({r['through']}): {r['cancels_caught']}/{r['cancels']} cancels, {r['runs']} runs; "
                       f"allocated MiB loaded {gc_.fmt(r['allocated_loaded_before_mib'], '.1f')} -> "
                       f"{gc_.fmt(r['allocated_loaded_after_cancels_mib'], '.1f')} (cancels) -> "
                       f"{gc_.fmt(r['allocated_loaded_after_mib'], '.1f')}; unloaded "
                       f"{gc_.fmt(r['allocated_unloaded_before_mib'], '.1f')} -> "
                       f"{gc_.fmt(r['allocated_unloaded_after_mib'], '.1f')}; same image after: "
                       f"{r['same_image_after']}; flat: {r.get('flat', 'n/a (no CUDA)')}")
        if "error" in r and s != "speed":
            out.append(f"{s} {r.get('model', r.get('vae', ''))} {r.get('dtype', '')}: {r['error']}")
    out.append("targets (issue 19)" + (" -- tiny models: figures shown, not judged" if tiny else ""))
    for r in speed:
        if r["impl"] != "pack":
            continue
        base = r["model"].replace("-ar", "")
        want = TARGETS.get(base, {}).get(r["batch"])
        if want and r["s_per_batch"] is not None:
            ok = "n/a" if tiny else ("ok" if r["s_per_batch"] <= want else "MISSED")
            out.append(f"  {r['model']} batch {r['batch']}: {r['s_per_batch']:.3f} s (target <= {want} s) {ok}")
        if r["speedup_vs_official"] is not None:
            ok = "n/a" if tiny else ("ok" if r["speedup_vs_official"] >= TARGET_SPEEDUP else "MISSED")
            out.append(f"  {r['model']} batch {r['batch']}: {r['speedup_vs_official']:.2f}x the official pipeline "
                       f"(target >= {TARGET_SPEEDUP}x) {ok}")
        if base == "switti-1024" and r["batch"] == 1 and r["peak_gib"] is not None:
            ok = "n/a" if tiny else ("ok" if r["peak_gib"] <= TARGET_1024_PEAK_GIB else "MISSED")
            out.append(f"  {r['model']} batch 1 peak {r['peak_gib']:.2f} GiB (target <= {TARGET_1024_PEAK_GIB}) {ok}")
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=os.path.join(gc_.ROOT, ".gpu-ref", "switti"), help="the official Switti code")
    p.add_argument("--comfy", default=os.path.join(gc_.ROOT, ".gpu-ref", "ComfyUI"),
                   help="a ComfyUI tree (its Python files suffice), for section endurance")
    p.add_argument("--tiny", action="store_true", help="small models of the official layouts (CPU check)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None)
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--models", default="switti-512,switti-1024", help="Switti models of section speed")
    p.add_argument("--batches", default=None, help="section speed (default 1,4; tiny 1,2)")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default=None,
                   help="section speed, both pipelines (default bf16 on CUDA, as from_pretrained; fp32 on the CPU)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=20.0)
    p.add_argument("--parity-batch", type=int, default=2)
    p.add_argument("--agreement-batch", type=int, default=8)
    p.add_argument("--cancels", type=int, default=None, help="section endurance (default 50; tiny 6)")
    p.add_argument("--runs", type=int, default=None, help="section endurance (default 100; tiny 10)")
    p.add_argument("--deadline-s", type=float, default=330.0, help="soft limit of the whole run")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cpu" and not args.tiny:
        p.error("the official shapes on the CPU take hours: pass --tiny (or run on a GPU)")
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    args.sections = bm.csv(args.sections)
    for s in args.sections:
        if s not in SECTIONS:
            p.error(f"unknown section {s!r}: choose from {', '.join(SECTIONS)}")
    args.switti_models = bm.model_names(args.models)
    if any(m not in bm.SWITTI for m in args.switti_models):
        p.error(f"Switti models only: {', '.join(bm.SWITTI)}")
    args.switti_batches = [int(b) for b in bm.csv(args.batches or ("1,2" if args.tiny else "1,4"))]
    args.invariance_batches_builtin = (1, 8, 32)
    args.invariance_batches = (1, 4) if args.tiny else (1, 8, 32)
    args.cancels = args.cancels if args.cancels is not None else (6 if args.tiny else 50)
    args.runs = args.runs if args.runs is not None else (10 if args.tiny else 100)
    if args.tiny:
        args.warmup, args.repeat = min(args.warmup, 1), min(args.repeat, 1)
        args.agreement_batch = min(args.agreement_batch, 4)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    deadline = gc_.Deadline(args.deadline_s)
    device = torch.device(args.device)
    set_tf32(True)
    out = gc_.out_dir(args.out)
    dev_name = bm.device_name(device)
    emit = gc_.Emitter(os.path.join(out, "gpu_switti_bench.jsonl"),
                       {"device": dev_name, "device_type": device.type, "tiny": args.tiny, "torch": torch.__version__})
    note(f"{dev_name}, torch {torch.__version__}, sections {','.join(args.sections)}, output {emit.path}")
    runners = {"speed": section_speed, "half": section_half, "endurance": section_endurance}
    try:
        gc_.run_sections(runners, args, device, emit, deadline, note)
    finally:
        emit.close()
    print(table(emit.rows, args.tiny), flush=True)
    return gc_.exit_status(emit.rows)


if __name__ == "__main__":
    sys.exit(main())
