"""The built-in tiny-shapes model (issue #7) through a real ComfyUI server: offered by the loader, its classes in the
picker, the first example workflow runs with it (also on a fresh install with an empty models/var) and draws the
chosen class (judged by the shipped classifier), and class sets that do not match the model are refused."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scalewise.models.scenes import BUILTIN_NAME as SCENES_NAME
from scalewise.models.shapes import BUILTIN_NAME, CLASS_NAMES
from scalewise.models.shapes import JUDGE_FILE
from scalewise.models.shapes.judge import Judge, judge_images

from .fixtures_models import OFFICIAL_VAE, OFFICIAL_VAR

REPO = Path(__file__).resolve().parents[2]
START_HERE = "Start here (tiny shapes model, no download)"
WORKFLOW = REPO / "tests" / "workflows" / f"{START_HERE}.json"
STAR = CLASS_NAMES.index("star")
STAR_LABEL = f"tiny-shapes {STAR}: star"
MIN_CFG_ACCURACY = 0.9


def load_workflow() -> dict:
    return json.loads(WORKFLOW.read_text())


def _id(prompt, class_type):
    return next(k for k, v in prompt.items() if v["class_type"] == class_type)


def _set(prompt, class_type, **inputs):
    prompt[_id(prompt, class_type)]["inputs"].update(inputs)
    return prompt


def _options(comfy, node_id, name):
    spec = comfy.object_info(node_id)[node_id]["input"]["required"][name]
    return spec[1]["options"] if isinstance(spec[0], str) else spec[0]


def run_images(comfy, prompt, timeout=300) -> list[Image.Image]:
    """Run the prompt; the images its SaveImage node wrote, read from the server's output folder."""
    entry, _ = comfy.run(prompt, timeout=timeout)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    saved = entry["outputs"][_id(prompt, "SaveImage")]["images"]
    assert all(img["type"] == "output" for img in saved)
    return [Image.open(comfy.output_dir / img["subfolder"] / img["filename"]).convert("RGB") for img in saved]


def run_error(comfy, prompt) -> str:
    """Run a prompt that must fail while executing; its error messages as one string."""
    entry, _ = comfy.run(prompt)
    assert entry["status"]["status_str"] == "error", entry["status"]
    return json.dumps(entry["status"]["messages"])


@pytest.fixture(scope="module")
def judge():
    from safetensors.torch import load_file

    net = Judge(num_classes=len(CLASS_NAMES))
    net.load_state_dict({k: v.float() for k, v in load_file(JUDGE_FILE).items()})
    return net.eval()


def accuracy(judge, images: list[Image.Image], label: int) -> float:
    batch = torch.from_numpy(np.stack([np.asarray(im, dtype=np.float32) / 255 for im in images])).permute(0, 3, 1, 2)
    predicted = judge_images(judge, batch)["labels"]
    return (predicted == label).float().mean().item()


# --- (a) the options --------------------------------------------------------------------------------------------

def test_loader_offers_the_builtin_model(pack_loaded):
    """The built-in entries come last, tiny-shapes first of them (then scenes-128, issue #17), each once."""
    var_options = _options(pack_loaded, "ScalewiseVARLoader", "var_name")
    vae_options = _options(pack_loaded, "ScalewiseVARLoader", "vae_name")
    assert var_options[-2:] == [BUILTIN_NAME, SCENES_NAME] and var_options.count(BUILTIN_NAME) == 1, var_options
    assert vae_options[-2:] == [BUILTIN_NAME, SCENES_NAME] and vae_options.count(BUILTIN_NAME) == 1, vae_options
    assert OFFICIAL_VAR in var_options and OFFICIAL_VAE in vae_options      # the files of models/var come first


def test_class_picker_lists_the_shapes_classes(pack_loaded):
    options = _options(pack_loaded, "ScalewiseImageNetClass", "class_name")
    shapes = [f"tiny-shapes {i}: {name}" for i, name in enumerate(CLASS_NAMES)]
    assert options[1001:1011] == shapes and options[1011] == "tiny-shapes 10: (null / unconditional)"
    assert STAR_LABEL in options and options[207] == "207: golden retriever"


# --- (b) the first example workflow -----------------------------------------------------------------------------

def test_first_example_uses_the_builtin_model():
    prompt = load_workflow()
    loader = prompt[_id(prompt, "ScalewiseVARLoader")]["inputs"]
    assert loader["var_name"] == loader["vae_name"] == BUILTIN_NAME and loader["dtype"] == "auto"
    assert prompt[_id(prompt, "ScalewiseImageNetClass")]["inputs"]["class_name"] == STAR_LABEL
    sampler = prompt[_id(prompt, "ScalewiseSampler")]["inputs"]
    assert sampler["batch_size"] == 8 and isinstance(sampler["guider"], list)
    assert prompt[_id(prompt, "SaveImage")]["inputs"]["filename_prefix"] == "scalewise_tiny_shapes"


def test_first_example_runs(pack_loaded):
    images = run_images(pack_loaded, load_workflow())
    assert len(images) == 8 and all(im.size == (64, 64) for im in images)
    assert len({im.tobytes() for im in images}) == 8           # one stream per image: eight different samples


def test_increment_gives_new_images_and_batch_index_remakes_one(pack_loaded):
    """Issue 13.7, through the node: the start-here workflow at batch 4 with the seed incremented shares no image
    with the previous run (it shared three with seed + i); batch_size 1 with batch_index 2 re-makes image 2,
    class included (batch_classes cycles from batch_index)."""
    def prompt(seed, batch, index=None):
        p = _set(load_workflow(), "ScalewiseSampler", seed=seed, batch_size=batch)
        _set(p, "ScalewiseImageNetClass", batch_classes="0, 3, 5, 7")
        return _set(p, "ScalewiseSampler", batch_index=index) if index is not None else p
    def pixels(images):
        return [np.asarray(im, dtype=np.int16) for im in images]

    def same(a, b):  # equal up to one 8-bit level: batched and single decodes round differently (about 2e-3)
        return int(np.abs(a - b).max()) <= 1

    first = pixels(run_images(pack_loaded, prompt(7, 4)))
    second = pixels(run_images(pack_loaded, prompt(8, 4)))
    assert not any(same(a, b) for a in first for b in second)
    alone = pixels(run_images(pack_loaded, prompt(7, 1, index=2)))
    assert len(alone) == 1 and same(alone[0], first[2])
    assert not any(same(alone[0], first[i]) for i in (0, 1, 3))


# --- (c) the chosen class, judged by the shipped classifier -----------------------------------------------------

def test_cfg_samples_are_the_chosen_class(pack_loaded, judge, record_property):
    """The workflow at batch 16 (seeds seed..seed+15): >= 90 % stars with its CFG; unguided (cfg 0) recorded."""
    guided = run_images(pack_loaded, _set(load_workflow(), "ScalewiseSampler", batch_size=16))
    unguided_prompt = _set(_set(load_workflow(), "ScalewiseSampler", batch_size=16), "ScalewiseCFGGuider", cfg=0.0)
    unguided = run_images(pack_loaded, unguided_prompt)
    assert len(guided) == len(unguided) == 16
    acc_cfg, acc_none = accuracy(judge, guided, STAR), accuracy(judge, unguided, STAR)
    cfg = load_workflow()[_id(load_workflow(), "ScalewiseCFGGuider")]["inputs"]["cfg"]
    print(f"\nclass accuracy ({CLASS_NAMES[STAR]}, 16 samples): CFG {cfg}: {acc_cfg:.3f}, unguided: {acc_none:.3f}")
    record_property("accuracy_cfg", acc_cfg)
    record_property("accuracy_unguided", acc_none)
    assert acc_cfg >= MIN_CFG_ACCURACY, f"CFG {cfg}: {acc_cfg:.3f} of the samples judged '{CLASS_NAMES[STAR]}'"


# --- (d) class sets and files that do not match -----------------------------------------------------------------

def test_imagenet_class_into_the_builtin_model_is_refused(pack_loaded):
    prompt = _set(load_workflow(), "ScalewiseImageNetClass", class_name="207: golden retriever")
    message = run_error(pack_loaded, prompt)
    for fragment in ("ScalewiseSampler", "conditioning", "207: golden retriever", "an ImageNet class",
                     "built-in tiny-shapes model", "tiny-shapes N: name"):
        assert fragment in message, (fragment, message)


def test_shapes_class_into_an_imagenet_model_is_refused(pack_loaded):
    prompt = _set(load_workflow(), "ScalewiseVARLoader", var_name=OFFICIAL_VAR, vae_name=OFFICIAL_VAE, dtype="fp32")
    message = run_error(pack_loaded, prompt)
    for fragment in ("ScalewiseSampler", "conditioning", STAR_LABEL, "ImageNet VAR model", OFFICIAL_VAR,
                     "ImageNet entries"):
        assert fragment in message, (fragment, message)


def test_raw_class_id_out_of_the_builtin_range_is_refused(pack_loaded):
    prompt = _set(load_workflow(), "ScalewiseImageNetClass", class_id=207)
    message = run_error(pack_loaded, prompt)
    for fragment in ("conditioning", "class id 207", "0..9", "10 for its null"):
        assert fragment in message, (fragment, message)


def test_raw_class_id_in_range_runs_on_the_builtin_model(pack_loaded):
    prompt = _set(_set(load_workflow(), "ScalewiseImageNetClass", class_id=STAR), "ScalewiseSampler", batch_size=1)
    assert len(run_images(pack_loaded, prompt)) == 1


@pytest.mark.parametrize("var_name,vae_name", [(BUILTIN_NAME, OFFICIAL_VAE), (OFFICIAL_VAR, BUILTIN_NAME)])
def test_builtin_and_file_do_not_mix(pack_loaded, var_name, vae_name):
    prompt = _set(load_workflow(), "ScalewiseVARLoader", var_name=var_name, vae_name=vae_name)
    with pytest.raises(pack_loaded.PromptRejected) as info:
        pack_loaded.queue(prompt)
    body = json.dumps(info.value.body)
    assert info.value.status == 400
    for fragment in ("vae_name", vae_name, var_name, "ScalewiseVARLoader"):
        assert fragment in body, (fragment, body)


# --- (e) a fresh install: nothing in models/var -----------------------------------------------------------------

@pytest.fixture(scope="module")
def fresh_comfy(tmp_path_factory):
    """A second server whose models folders stay empty (the stand-ins are not written), as on a fresh install."""
    cs = sys.modules["scalewise_ci_comfy_server"]          # loaded by this folder's conftest
    if cs.comfy_dir() is None:
        pytest.skip("COMFY_DIR does not point at a ComfyUI tree")
    own = cs.comfy_dir() / "models" / "var"
    if own.is_dir() and any(own.iterdir()):
        pytest.skip(f"{own} holds files: not a fresh install")
    server = cs.ComfyServer(tmp_path_factory.mktemp("comfy_fresh"), extra_args=())  # ComfyUI's own defaults
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cs, "_models_hook", lambda: None)
        client = server.start()
    try:
        client.assert_pack_imported()
        yield client
    finally:
        server.stop()


def test_fresh_install_offers_only_the_builtin_model_and_runs_the_first_example(fresh_comfy):
    assert not any((fresh_comfy.models_dir / "var").iterdir())
    assert _options(fresh_comfy, "ScalewiseVARLoader", "var_name") == [BUILTIN_NAME, SCENES_NAME]
    assert _options(fresh_comfy, "ScalewiseVARLoader", "vae_name") == [BUILTIN_NAME, SCENES_NAME]
    images = run_images(fresh_comfy, load_workflow())
    assert len(images) == 8 and all(im.size == (64, 64) for im in images)


def test_fresh_install_defaults_show_progress_at_every_scale_and_no_previews(fresh_comfy):
    """ComfyUI's default live preview method is none: the user sees no previews (as with KSampler), the bar
    still moves at every scale; the example's sampler asks for previews at every scale."""
    import struct
    prompt = load_workflow()
    sampler = _id(prompt, "ScalewiseSampler")
    assert prompt[sampler]["inputs"]["preview"] == "every scale"
    _set(prompt, "ScalewiseSampler", seed=prompt[sampler]["inputs"]["seed"] + 101)  # not served from the cache
    entry, ws = fresh_comfy.run(prompt, timeout=300)
    assert entry["status"]["status_str"] == "success"
    progress = [(m["data"]["value"], m["data"]["max"]) for m in ws.messages
                if m["type"] == "progress" and m["data"].get("node") == sampler]
    assert progress == [(k, 4) for k in (1, 2, 3, 4)]
    assert not [f for f in ws.binary if struct.unpack(">I", f[:4])[0] in (1, 4)]
