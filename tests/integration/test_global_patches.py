"""Issue 25 §2 in the real server: the pack's nodes beside packs that patch torch process-wide. The test-only pack
tests/test_packs/scalewise_global_patches installs, at import, an RMBG-style torch.load wrapper forcing
weights_only=False and a comfyui-faster-loading-style safetensors.torch.load_file, and on demand (its node
ScalewiseTestPatchTorch) a sageattn-like F.scaled_dot_product_attention, a bfloat16 default dtype, a meta default
device and KJNodes' fp16 accumulation. Each test asserts the image (against the same workflow without the
patch, or the .safetensors twin) or the exact message, and the log line that names the patch."""
from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from .fixtures_models import SWITTI, VAR_TINY
from .test_reliability import Payload, output_images, outcome, switti_graph, var_graph

SUB = "global_patches"                      # sub-folder of models/var holding this file's checkpoints
MARKER = "global_patches_payload_ran"       # in the server's work dir: must never appear
STATE_FILE = "scalewise_torch_state.json"   # written by the test pack's "report"
CALLS_FILE = "scalewise_load_file_calls.txt"
RECOMPUTED = {"ScalewiseVARLoader", "ScalewiseSwittiLoader", "ScalewiseSwittiTextEncode", "ScalewiseSampler"}


@pytest.fixture(scope="module")
def files(comfy):
    folder = comfy.models_dir / "var" / SUB
    folder.mkdir(parents=True, exist_ok=True)
    sd = torch.load(comfy.models_dir / "var" / VAR_TINY, weights_only=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "var_tiny.safetensors"))
    torch.save(sd, folder / "var_tiny_legacy.pth", _use_new_zipfile_serialization=False)
    marker = comfy.work / MARKER
    torch.save({"pos_start": torch.zeros(1, 1, 128), "evil": Payload(marker)}, folder / "payload.pth")
    yield {"marker": marker, "folder": folder}
    shutil.rmtree(folder, ignore_errors=True)


def patch(comfy, name: str):
    g = comfy.graph_builder()
    g.node("ScalewiseTestPatchTorch", patch=name)
    got = outcome(comfy, g.finalize())
    assert got.kind == "success", got.message


def report(comfy) -> dict:
    patch(comfy, "report")
    return json.loads((comfy.work / "user" / STATE_FILE).read_text())


def image(comfy, prompt) -> list[bytes]:
    """The images of a run in which the pack's loader, text encoder and sampler did not come from ComfyUI's cache
    (their inputs changed, or a prompt of other nodes ran in between)."""
    got = outcome(comfy, prompt)
    assert got.kind == "success", got.message
    ours = {i for i, n in prompt.items() if n["class_type"] in RECOMPUTED}
    cached = [set(m[1].get("nodes", [])) for m in got.entry["status"]["messages"] if m[0] == "execution_cached"]
    assert not (set().union(*cached) & ours), "a node of the pack came from the cache: the test would prove nothing"
    return output_images(comfy, got.entry)


def test_the_patches_are_installed(pack_loaded):
    comfy = pack_loaded
    assert "scalewise_global_patches: torch.load now forces weights_only=False" in comfy.log()
    assert "scalewise_global_patches: the Scale-wise Sampler module is not loaded" not in comfy.log()
    state = report(comfy)["now"]
    assert state["default_dtype"] == "torch.float32" and state["sdpa_is_torchs"] is True


def test_a_payload_is_refused_and_never_runs(pack_loaded, files):
    comfy = pack_loaded
    path = files["folder"] / "payload.pth"
    with zipfile.ZipFile(path) as z:   # the GLOBAL opcode's offset in data.pkl, from the bytes themselves
        data = z.read(f"{path.stem}/data.pkl")
    at = data.index(b"c__builtin__\nexec\n")
    got = outcome(comfy, var_graph(comfy, var=f"{SUB}/payload.pth", seed=3))
    assert got.kind == "error" and got.node == "ScalewiseVARLoader", got.message
    assert got.message.rstrip("\n") == (f"{path}: refused to load: the pickle contains objects other than tensors (it refers to "
                           f"exec from module builtins, opcode GLOBAL at byte {at}). Only plain state dicts are "
                           "accepted, because a pickle can run code; convert the file to .safetensors with a tool "
                           "you trust")
    assert not files["marker"].exists()


def test_a_plain_pth_loads_through_torchs_own_load_and_matches_its_safetensors_twin(pack_loaded, files):
    comfy = pack_loaded
    twin = image(comfy, var_graph(comfy, var=f"{SUB}/var_tiny.safetensors", seed=5))
    assert image(comfy, var_graph(comfy, var=VAR_TINY, seed=5)) == twin
    assert image(comfy, var_graph(comfy, var=f"{SUB}/var_tiny_legacy.pth", seed=5)) == twin
    log = comfy.log()
    assert "[scalewise] torch.load is replaced by " in log
    line = next(ln for ln in log.splitlines() if "[scalewise] torch.load is replaced by " in ln)
    assert "scalewise_global_patches" in line and line.endswith(
        "the pack reads checkpoints with torch's own load function (weights_only=True) after its own pickle check, "
        "whatever the replacement does")
    assert not files["marker"].exists()


def test_a_replaced_safetensors_load_file_is_not_called(pack_loaded, files):
    comfy = pack_loaded
    image(comfy, var_graph(comfy, var=f"{SUB}/var_tiny.safetensors", seed=6))
    calls = comfy.work / "user" / CALLS_FILE
    called = calls.read_text().splitlines() if calls.exists() else []
    assert not [c for c in called if str(comfy.models_dir) in c], called


GRAPHS = {"var": lambda c: var_graph(c, seed=7), "switti": lambda c: switti_graph(c, model=SWITTI, seed=7)}
LOGGED = {"sdpa": "[scalewise] torch.nn.functional.scaled_dot_product_attention is replaced by ",
          "bfloat16": "another pack changed torch's process-wide settings (default dtype bfloat16)",
          "meta": "another pack changed torch's process-wide settings (default device meta)"}


@pytest.mark.parametrize("name, family", [("sdpa", "var"), ("sdpa", "switti"), ("bfloat16", "var"),
                                          ("meta", "var")])
def test_the_same_image_with_the_patch_in_place(pack_loaded, name, family):
    """sdpa: the sageattn-like replacement ignores VAR's mask and scale of 1 (and ComfyUI's CLIP masks in the
    Switti text encoder); bfloat16: every tensor created without a dtype would be bf16; meta: every tensor created
    without a device would have no data. The image equals the one without the patch, and the patch is the other
    pack's again after the run."""
    comfy = pack_loaded
    build = GRAPHS[family]
    before = image(comfy, build(comfy))
    patch(comfy, name)
    try:
        after = image(comfy, build(comfy))
        state = report(comfy)
    finally:
        patch(comfy, "restore")
    assert after == before
    assert LOGGED[name] in comfy.log()
    if name == "sdpa":
        assert state["now"]["sdpa_is_torchs"] is False and state["sampler"]["sdpa_is_torchs"] is True
        line = next(ln for ln in comfy.log().splitlines() if LOGGED[name] in ln)
        assert "scalewise_global_patches" in line
    elif name == "bfloat16":
        assert state["now"]["default_dtype"] == "torch.bfloat16"
        assert state["sampler"]["default_dtype"] == "torch.float32"
    else:
        assert state["now"]["default_device"] == "meta" and state["sampler"]["default_device"] == "cpu"
    restored = report(comfy)["now"]
    assert (restored["default_dtype"], restored["default_device"], restored["sdpa_is_torchs"]) == \
        ("torch.float32", "cpu", True)


def test_fp16_accumulation_is_off_inside_the_nodes(pack_loaded):
    """KJNodes' loaders switch cuBLAS fp16 accumulation on process-wide (torch >= 2.7.1). It changes no CPU result,
    so the test reads the setting as the sampler saw it: off, and on again for the other pack afterwards."""
    comfy = pack_loaded
    if report(comfy)["now"]["allow_fp16_accumulation"] is None:
        pytest.skip("the server's torch has no allow_fp16_accumulation (torch < 2.7.1)")
    patch(comfy, "fp16 accumulation")
    try:
        before = image(comfy, var_graph(comfy, seed=8))
        state = report(comfy)
    finally:
        patch(comfy, "restore")
    assert before
    assert state["now"]["allow_fp16_accumulation"] is True
    assert state["sampler"]["allow_fp16_accumulation"] is False
    assert "another pack changed torch's process-wide settings (allow_fp16_accumulation on)" in comfy.log()
