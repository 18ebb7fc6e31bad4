"""Issue #25 §3 and §5: ComfyUI's launch flags and workflows made on another system.

§3: `dtype` auto follows ComfyUI's precision flags (transformer = the "unet" flags, VQ-VAE = the "vae" flags), an
explicit dtype wins (and says which flags it overrode), the fp8 storage flags fall back with a note, and
--cpu-vae runs the VQ-VAE's encoder and decoder on the CPU while its quantiser stays with the transformer.
Checked through ComfyUI's own argument parser and model_management on simulated GPUs (check_launch_flags.py), and
in real servers started with the flags.

§5: a model name saved with the other system's path separator (`Switti\\model.safetensors` from Windows on this
Linux server, `Switti/model.safetensors` against a Windows listing) means the listed file.
"""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scalewise.guidance import Generation, sample
from scalewise.models import ClassCondition
from tiny import tiny_model

from .fixtures_models import SWITTI, SWITTI_VAE

HERE = Path(__file__).resolve().parent
WORKFLOWS = HERE.parents[1] / "tests" / "workflows"
START_HERE = "Start here (tiny shapes model, no download)"
IMG2IMG = "Tiny shapes, image to image"
SWITTI_512 = "Switti 512 (text to image)"

F32, F16, BF16, F64 = "float32", "float16", "bfloat16", "float64"
DEVICES = ("cpu", "a100", "t4")
FAMILIES = ("var", "switti")
# dtype auto without flags (tests/integration/test_dtypes.py): (transformer, VQ-VAE)
PLAIN = {("cpu", "var"): (F32, F32), ("cpu", "switti"): (F32, F32), ("a100", "var"): (BF16, BF16),
         ("a100", "switti"): (BF16, BF16), ("t4", "var"): (F16, F32), ("t4", "switti"): (F32, F32)}
FP8_NOTE = ("--fp8_e4m3fn-unet asks for float8_e4m3fn weights, which the {family} transformer cannot compute in "
            "(its layers run in their weights' dtype; ComfyUI keeps only its own models in fp8 and casts them layer "
            "by layer): it runs in {dtype}, what auto picks on this device without the flag")


def unet(dtype):
    return {key: (dtype, PLAIN[key][1]) for key in PLAIN}


def vae(dtype):
    return {key: (PLAIN[key][0], dtype) for key in PLAIN}


# flags -> {(device, family): (transformer, VQ-VAE)} under dtype auto, from the rules in README "Precision"
AUTO = {
    "": PLAIN,
    "--fp32-unet --fp16-vae": {key: (F32, F16) for key in PLAIN},
    "--fp64-unet --bf16-vae": {key: (F64, BF16) for key in PLAIN},
    "--bf16-unet --fp32-vae": {key: (BF16, F32) for key in PLAIN},
    "--fp16-unet --cpu-vae": unet(F16),
    "--fp8_e4m3fn-unet": PLAIN,
    "--fp8_e5m2-unet --cpu-vae --bf16-vae": vae(BF16),
    "--fp8_e8m0fnu-unet": PLAIN,
    "--force-fp16": unet(F16),                       # ComfyUI: --force-fp16 turns on --fp16-unet; no VAE flag
    "--force-fp32": {key: (F32, F32) for key in PLAIN},
    "--force-fp32 --bf16-unet": {key: (BF16, F32) for key in PLAIN},
}


@pytest.fixture(scope="module")
def report():
    comfy_dir = os.environ.get("COMFY_DIR")
    if not comfy_dir:
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree")
    flag_sets = json.dumps([flags.split() for flags in AUTO])
    out = subprocess.run([sys.executable, str(HERE / "check_launch_flags.py"), comfy_dir, str(HERE.parents[1]),
                          flag_sets], check=True, capture_output=True, text=True, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("flags", list(AUTO))
def test_auto_follows_the_launch_flags(report, flags):
    got = {(d, f): tuple(report["dtypes"][f"{flags}|{d}|{f}|auto"][:2]) for d in DEVICES for f in FAMILIES}
    assert got == AUTO[flags]


def test_fp8_flags_fall_back_to_auto_with_a_note(report):
    for device in DEVICES:
        for family in FAMILIES:
            transformer, _, _, notes = report["dtypes"][f"--fp8_e4m3fn-unet|{device}|{family}|auto"]
            assert notes == [FP8_NOTE.format(family=family, dtype=transformer)]
            notes = report["dtypes"][f"--fp8_e5m2-unet --cpu-vae --bf16-vae|{device}|{family}|auto"][3]
            assert len(notes) == 1 and notes[0].startswith("--fp8_e5m2-unet asks for float8_e5m2 weights")
            assert report["dtypes"][f"--fp8_e8m0fnu-unet|{device}|{family}|auto"][3][0].startswith(
                "--fp8_e8m0fnu-unet asks for float8_e8m0fnu weights")
    honoured = [v[3] for k, v in report["dtypes"].items() if k.endswith("|auto") and "fp8" not in k]
    assert honoured and all(notes == [] for notes in honoured)


def test_an_explicit_dtype_wins_and_names_the_flags_it_overrides(report):
    names = {"bf16": BF16, "fp16": F16, "fp32": F32}
    for key, (transformer, vqvae, _, _) in report["dtypes"].items():
        choice = key.rsplit("|", 1)[1]
        if choice != "auto":
            assert transformer == vqvae == names[choice], key
    entry = report["dtypes"]
    assert entry["--fp32-unet --fp16-vae|a100|var|bf16"][3] == [
        "dtype bf16 (set on the node) overrides the launch flags --fp32-unet, --fp16-vae; choose dtype auto to "
        "follow them"]
    assert entry["--fp32-unet --fp16-vae|t4|switti|fp32"][3] == [  # --fp32-unet agrees: not named
        "dtype fp32 (set on the node) overrides the launch flag --fp16-vae; choose dtype auto to follow it"]
    assert entry["--force-fp16|cpu|var|fp32"][3] == [
        "dtype fp32 (set on the node) overrides the launch flag --force-fp16; choose dtype auto to follow it"]
    assert entry["--force-fp16|a100|var|fp16"][3] == []
    assert all(entry[f"|{d}|{f}|{c}"][3] == [] for d in DEVICES for f in FAMILIES for c in names)


def test_cpu_vae_puts_encoder_and_decoder_on_the_cpu(report):
    for key, (transformer, vqvae, image, notes) in report["dtypes"].items():
        flags, device, family, choice = key.split("|")
        if "--cpu-vae" not in flags:
            assert image is None, key
            continue
        # ComfyUI's vae_dtype for the CPU: fp32 unless a vae flag says otherwise, whatever the node's dtype
        assert image == ["cpu", BF16 if "--bf16-vae" in flags else F32], key
        if choice == "fp16":
            assert notes[-1] == ("--cpu-vae: the VQ-VAE's encoder and decoder run on the CPU in "
                                 f"{image[1]}, ComfyUI's VAE precision there; dtype fp16 sets the transformer "
                                 "and the VQ-VAE's quantiser"), key
    # the quantiser keeps the VQ-VAE's dtype of a run without --cpu-vae: the tokens do not change
    assert report["dtypes"]["--fp16-unet --cpu-vae|a100|var|auto"][:3] == [F16, BF16, ["cpu", F32]]


def test_names_from_another_system_against_a_windows_listing(report):
    names = report["names"]
    assert names["listed /"] == names["listed \\"] == "Switti\\model.safetensors"
    assert names["listed missing"] is None and names["listed builtin"] == "x (built in)"
    assert names["full_path asked"] == ["Switti-AR\\model.safetensors"]   # folder_paths gets the listed name
    assert names["check /"] is None                                         # the loader accepts it
    assert names["check missing"] == (
        "switti_name: 'Switti-1024/model.safetensors' is not in models/switti (keep each Hugging Face repo in its "
        "own folder, e.g. models/switti/Switti/model.safetensors, then refresh)")
    # on Linux a backslash is a legal character of a name: an exact entry wins
    assert names["exact wins /"] == "Switti/model.safetensors"
    assert names["exact wins \\"] == "Switti\\model.safetensors"


# --- the VQ-VAE's image side outside the module tree (what --cpu-vae uses) -------------------------------------

def test_detached_image_side_stays_put_and_changes_nothing():
    model = tiny_model(seed=11)
    reference = sample(model, None, Generation(ClassCondition((3,)), seed=5))
    detached = copy.deepcopy(model)
    detached.vae.detach_image_side("cpu", torch.float32)
    assert detached.vae.image_side_detached and not model.vae.image_side_detached
    in_tree = {n for n, _ in detached.named_parameters()}
    assert in_tree and not any(n.startswith(("vae.decoder", "vae.encoder", "vae.post_quant", "vae.quant_conv"))
                               for n in in_tree)
    assert any(n.startswith("vae.quantize.") for n in in_tree)
    out = sample(detached, None, Generation(ClassCondition((3,)), seed=5))
    assert torch.equal(out.images, reference.images)
    assert all(torch.equal(a, b) for a, b in zip(out.tokens, reference.tokens))
    encoded = detached.encode_image(reference.images)
    assert all(torch.equal(a, b) for a, b in zip(encoded, model.encode_image(reference.images)))
    moved = copy.deepcopy(detached).to("meta")          # what moving the model to the GPU does to it
    assert moved.transformer.head.weight.is_meta and moved.vae.quantize.embedding.weight.is_meta
    assert moved.vae.decoder.conv_in.weight.device.type == "cpu"
    assert moved.vae.encoder.conv_in.weight.device.type == "cpu"
    with torch.no_grad():
        detached.vae.decoder.conv_out.weight[0, 0, 0, 0] = float("nan")
    assert detached.vae.non_finite_weight() == "decoder.conv_out.weight"   # still checked


# --- real servers started with the flags ------------------------------------------------------------------------

def _workflow(name):
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def _id(prompt, class_type):
    return next(k for k, v in prompt.items() if v["class_type"] == class_type)


def _run(comfy, prompt, timeout=300):
    """(pixels of every saved image as one uint8 array, history entry, websocket collector)."""
    entry, ws = comfy.run(prompt, timeout=timeout)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    from PIL import Image
    saved = entry["outputs"][_id(prompt, "SaveImage")]["images"]
    pixels = np.stack([np.asarray(Image.open(comfy.output_dir / s["subfolder"] / s["filename"]).convert("RGB"))
                       for s in saved])
    return pixels, entry, ws


def _server(tmp_path_factory, name, flags):
    cs = sys.modules["scalewise_ci_comfy_server"]          # loaded by this folder's conftest
    if cs.comfy_dir() is None:
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree")
    server = cs.ComfyServer(tmp_path_factory.mktemp(name), extra_args=("--preview-method", "auto", *flags))
    client = server.start()
    client.assert_pack_imported()
    return server, client


@pytest.fixture(scope="module")
def cpu_vae_server(tmp_path_factory):
    """--cpu-vae with --fp8_e4m3fn-unet, which the transformer cannot follow (it falls back to auto's fp32 here)."""
    server, client = _server(tmp_path_factory, "comfy_cpu_vae", ("--cpu-vae", "--fp8_e4m3fn-unet"))
    yield client
    server.stop()


@pytest.fixture(scope="module")
def precision_server(tmp_path_factory):
    server, client = _server(tmp_path_factory, "comfy_precision", ("--bf16-unet", "--fp16-vae"))
    yield client
    server.stop()


@pytest.mark.parametrize("name", [START_HERE, IMG2IMG])
def test_cpu_vae_gives_the_image_of_a_normal_run(pack_loaded, cpu_vae_server, name):
    """Decoder (and, image to image, encoder) outside the model ComfyUI loads, the quantiser untouched. On this CPU
    machine both runs execute the same float32 kernels on the same device, so the pixels must be identical (no
    tolerance); on a GPU the decode would differ only by the decoder's precision (fp32 on the CPU against the
    VQ-VAE's dtype on the GPU), the tokens not at all."""
    prompt = _workflow(name)
    normal, _, _ = _run(pack_loaded, prompt)
    flagged, entry, ws = _run(cpu_vae_server, prompt)
    assert flagged.shape == normal.shape and np.array_equal(flagged, normal)
    assert ws.binary, "the previews, decoded on the CPU side, still arrive"
    if name != IMG2IMG:  # that example's loader has the inputs of START_HERE's: ComfyUI reuses its output
        loader = _id(prompt, "ScalewiseVARLoader")
        assert entry["outputs"][loader]["scalewise_info"] == [FP8_NOTE.format(family="var", dtype=F32)]
    assert ("Load VAR Model: weights: transformer float32, VQ-VAE float32 (its encoder and decoder float32 on cpu: "
            "--cpu-vae)") in cpu_vae_server.log()


def test_switti_loader_under_the_flags(cpu_vae_server):
    """The Switti loader follows the same rules. (Its model is wired to a class here, which the sampler refuses
    after the loader has run: no CLIP needs loading for this check.)"""
    g = cpu_vae_server.graph_builder()
    loader = g.node("ScalewiseSwittiLoader", switti_name=SWITTI, vae_name=SWITTI_VAE, dtype="auto")
    cond = g.node("ScalewiseImageNetClass", class_name="207: golden retriever", class_id=-1, batch_classes="")
    sampler = g.node("ScalewiseSampler", model=loader.out(0), conditioning=cond.out(0), seed=0, batch_size=1,
                     top_k=400, top_p=0.95, more_smooth=False, preview="off", smooth_start_scale=0,
                     last_scale_temperature=1.0)
    g.node("SaveImage", images=sampler.out(0), filename_prefix="flags")
    entry, _ = cpu_vae_server.run(g.finalize(), timeout=300)
    assert entry["status"]["status_str"] == "error" and "Switti Text Encode" in json.dumps(entry["status"])
    log = cpu_vae_server.log()
    assert f"Load Switti Model: {FP8_NOTE.format(family='switti', dtype=F32)}" in log
    assert ("Load Switti Model: weights: transformer float32, VQ-VAE float32 (its encoder and decoder float32 on "
            "cpu: --cpu-vae)") in log


def test_explicit_dtype_under_a_flag_it_overrides(cpu_vae_server):
    prompt = _workflow(START_HERE)
    prompt[_id(prompt, "ScalewiseVARLoader")]["inputs"]["dtype"] = "fp32"
    _, entry, _ = _run(cpu_vae_server, prompt)
    assert entry["outputs"][_id(prompt, "ScalewiseVARLoader")]["scalewise_info"] == [
        "dtype fp32 (set on the node) overrides the launch flag --fp8_e4m3fn-unet; choose dtype auto to follow it"]


def test_precision_flags_in_a_real_server(precision_server):
    """--bf16-unet --fp16-vae: auto loads the transformer in bf16 and the VQ-VAE in fp16 (read back from the loaded
    weights by the loader's log line); an explicit fp32 loads fp32 and says it overrode both flags."""
    prompt = _workflow(START_HERE)
    sampler = prompt[_id(prompt, "ScalewiseSampler")]["inputs"]
    sampler.update(batch_size=1, preview="off")  # CPU fp16 convolutions are slow
    loader = _id(prompt, "ScalewiseVARLoader")
    pixels, entry, _ = _run(precision_server, prompt)
    assert pixels.shape == (1, 64, 64, 3) and not entry["outputs"].get(loader, {}).get("scalewise_info")
    assert "Load VAR Model: weights: transformer bfloat16, VQ-VAE float16\n" in precision_server.log()
    prompt[loader]["inputs"]["dtype"] = "fp32"
    _, entry, _ = _run(precision_server, prompt)
    assert entry["outputs"][loader]["scalewise_info"] == [
        "dtype fp32 (set on the node) overrides the launch flags --bf16-unet, --fp16-vae; choose dtype auto to "
        "follow them"]
    assert "Load VAR Model: weights: transformer float32, VQ-VAE float32\n" in precision_server.log()


def test_switti_example_with_windows_separators_runs_on_linux(pack_loaded):
    """A Switti example saved on Windows names `Switti\\model.safetensors`: this Linux server lists
    `Switti/model.safetensors` and runs it, giving the image of the `/` names."""
    prompt = _workflow(SWITTI_512)
    loader = prompt[_id(prompt, "ScalewiseSwittiLoader")]["inputs"]
    assert (loader["switti_name"], loader["vae_name"]) == (SWITTI, SWITTI_VAE)
    reference, _, _ = _run(pack_loaded, prompt)
    windows = copy.deepcopy(prompt)
    windows[_id(prompt, "ScalewiseSwittiLoader")]["inputs"].update(
        switti_name=SWITTI.replace("/", "\\"), vae_name=SWITTI_VAE.replace("/", "\\"))
    assert "\\" in windows[_id(prompt, "ScalewiseSwittiLoader")]["inputs"]["switti_name"]
    pixels, _, _ = _run(pack_loaded, windows)
    assert np.array_equal(pixels, reference)
    missing = copy.deepcopy(windows)
    missing[_id(prompt, "ScalewiseSwittiLoader")]["inputs"]["switti_name"] = "Switti-2048\\model.safetensors"
    with pytest.raises(pack_loaded.PromptRejected) as refused:
        pack_loaded.queue(missing)
    assert "switti_name: 'Switti-2048\\\\model.safetensors' is not in models/switti" in json.dumps(refused.value.body)


def test_infinity_follows_the_fp8_flag(pack_loaded, cpu_vae_server):
    """Infinity's depth blocks are ComfyUI cast layers: under --fp8_e4m3fn-unet and dtype auto their weights are
    stored in float8_e4m3fn and computed in auto's fp32 here (a note says so); the image is finite and, the weights
    being rounded, need not be the normal server's."""
    from .test_infinity_text_nodes import text_graph
    prompt, _ = text_graph(cpu_vae_server, sink="infinity", dtype="auto")
    flagged, entry, _ = _run(cpu_vae_server, prompt)
    assert flagged.shape == (2, 256, 256, 3) and flagged.std() > 0
    loader = _id(prompt, "ScalewiseInfinityLoader")
    assert entry["outputs"][loader]["scalewise_info"][0] == (
        "--fp8_e4m3fn-unet: the depth blocks' linear weights are stored in float8_e4m3fn, computed in float32")
