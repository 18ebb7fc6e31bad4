"""VAR-CLIP (models/var_clip.py, models/var_clip_loader.py): the official layout, the released training dump and
the model-alone files, memory-mapped reading, refusals of the other family's files, the text condition's rules, and
the cached path against teacher forcing."""
import pathlib
import subprocess
import sys

import pytest
import torch

from scalewise.guidance import CFG, IGG, SSG, Draw, Generation, SoftCFG, sample
from scalewise.models import (CheckpointError, ClassCondition, PooledTextCondition, SCHEDULES, VARCLIPConfig,
                              VARCLIPModel, VARModel, load_var, load_var_clip,
                              load_var_or_var_clip, var_clip_official_state_dict, var_official_state_dict,
                              vqvae_official_state_dict)
from scalewise.models.var_clip_loader import build_var_clip_transformer
from rounding import transformer_bound
from tiny import LogitRecorder, save, text_vectors, tiny_model, tiny_var_clip

KEYS = pathlib.Path(__file__).parent.parent / "data" / "keys"


def read_keys(name):
    out = {}
    for line in (KEYS / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = line.split()
        out[key] = (tuple(int(s) for s in shape.strip("[]").split(",") if s), dtype)
    return out


def test_d16_layout_is_var_d16_without_class_emb_with_noise_and_cond_proj():
    cfg = VARCLIPConfig(depth=16, width=1024, heads=16, patch_nums=SCHEDULES[256])
    sd = var_clip_official_state_dict(build_var_clip_transformer(cfg, "meta"))
    expected = read_keys("var_clip_d16_keys.txt")
    assert list(sd) == list(expected)  # the official native order (checked against VAR-CLIP's code, see README)
    for k, t in sd.items():
        assert tuple(t.shape) == expected[k][0], k
        assert str(t.dtype).replace("torch.", "") == expected[k][1], k
    # derived independently from VAR's own list: the same keys but the class table, the same shapes
    var = read_keys("var_d16_keys.txt")
    assert set(expected) == (set(var) - {"class_emb.weight"}) | {"noise.weight", "cond_proj.weight", "cond_proj.bias"}
    assert all(expected[k] == var[k] for k in var if k != "class_emb.weight")
    assert expected["noise.weight"][0] == (1, 768) and expected["cond_proj.weight"][0] == (1024, 768)


@pytest.mark.parametrize("patch_nums", [(1, 2, 3, 4), SCHEDULES[256]])
def test_cached_logits_equal_teacher_forcing(patch_nums):
    model = tiny_var_clip(patch_nums=patch_nums, seed=3)
    text = text_vectors(2, seed=4)
    rec = LogitRecorder()
    out = sample(model, rec, Generation(PooledTextCondition(text), seed=1, draw=Draw(top_k=50, top_p=0.9)))
    inputs = model.vae.quantize.teacher_forcing_inputs(out.tokens, patch_nums)
    full = model.transformer.forward_teacher(text, inputs)
    cached = torch.cat(rec.logits, dim=1)
    assert full.shape == cached.shape
    assert (full - cached).abs().max() <= 2 * transformer_bound(model.transformer) * full.abs().max()


def test_the_condition_is_cond_proj_of_the_text_and_the_uncond_rows_cond_proj_of_noise():
    model = tiny_var_clip(seed=5)
    t = model.transformer
    text = text_vectors(3, seed=6)
    state = model.start(model.prepare_condition(PooledTextCondition(text), None), with_uncond=True)
    emb = state.cond.embedding
    assert emb.shape == (6, t.config.width)
    w, b = t.cond_proj.weight.double(), t.cond_proj.bias.double()
    torch.testing.assert_close(emb[:3].double(), text.double() @ w.T + b, rtol=0, atol=1e-5)
    null = t.noise.weight.double() @ w.T + b   # the learned row through the same map, not normalised
    torch.testing.assert_close(emb[3:].double(), null.expand(3, -1), rtol=0, atol=1e-5)
    # the first-scale token stands where VAR's class embedding does: condition + pos_start + position
    x0 = t.embed_start(state.cond)
    torch.testing.assert_close(x0[:, 0], emb + t.pos_start[0, 0] + t.pos_1LC[0, 0] + t.lvl_embed.weight[0])
    state.close()


def test_prepare_condition_rotates_by_first_and_refuses_other_conditioning():
    model = tiny_var_clip(seed=1)
    text = text_vectors(3, seed=2)
    got = model.prepare_condition(PooledTextCondition(text), 4, first=2)
    assert torch.equal(got, text[[2, 0, 1, 2]])
    assert torch.equal(model.prepare_condition(text[1], None), text[1:2])
    with pytest.raises(TypeError, match="VAR-CLIP Text Encode"):
        model.prepare_condition(ClassCondition((5,)), 1)
    with pytest.raises(TypeError, match="VAR-CLIP Text Encode"):
        model.prepare_condition(torch.tensor([5]), 1)
    with pytest.raises(ValueError, match=r"\[N, 768\]"):
        model.prepare_condition(torch.zeros(2, 512), 1)
    with pytest.raises(ValueError, match="NaN"):
        model.prepare_condition(torch.full((1, 768), float("nan")), 1)
    with pytest.raises(TypeError, match="VAR-CLIP"):  # and VAR refuses text vectors
        tiny_model(seed=1).prepare_condition(PooledTextCondition(text), 1)


def trainer_dump(model: VARCLIPModel, optimizer_mb: float = 0.0) -> dict:
    """A dump shaped like VAR-CLIP's train.py one: the model under ['trainer']['var_wo_ddp'], a whole VQ-VAE copy,
    AdamW state (exp_avg/exp_avg_sq per parameter, plus `optimizer_mb` MB of extra state), config and args."""
    sd = var_clip_official_state_dict(model.transformer)
    params = [torch.nn.Parameter(v.clone()) for v in sd.values() if v.is_floating_point()]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95))
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    opt_sd = opt.state_dict()
    if optimizer_mb:
        opt_sd["state"][len(params)] = {"exp_avg": torch.ones(int(optimizer_mb * 2 ** 18))}
    return {"epoch": 350, "iter": 0,
            "trainer": {"config": {"patch_nums": (1, 2, 3, 4), "resos": (16, 32, 48, 64), "label_smooth": 0.0,
                                   "prog_it": 0, "last_prog_si": -1, "first_prog": True},
                        "var_wo_ddp": sd, "vae_local": vqvae_official_state_dict(model.vae),
                        "var_opt": {"scaler": {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                               "growth_interval": 2000, "_growth_tracker": 7},
                                    "optimizer": opt_sd}},
            "args": {"data_path": "/data/imagenet", "depth": 16, "patch_nums": "1_2_3_4", "tlr": 1e-4,
                     "fp16": 1, "saln": False, "anorm": True, "resos": (16, 32), "cmd": None, "acc_all": [1.5]}}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same tiny model as the released dump, as its state dict (.pth) and as .safetensors; VAR's VQ-VAE."""
    folder = tmp_path_factory.mktemp("varclip")
    model = tiny_var_clip(seed=7)
    torch.save(trainer_dump(model), folder / "ar-ckpt-last.pth")
    save(var_clip_official_state_dict(model.transformer), folder / "var_clip.pth")
    save(var_clip_official_state_dict(model.transformer), folder / "var_clip.safetensors")
    save(vqvae_official_state_dict(model.vae), folder / "vae.safetensors")
    var = tiny_model(seed=7)
    save(var_official_state_dict(var.transformer), folder / "var.pth")
    return folder, model


@pytest.mark.parametrize("name", ["ar-ckpt-last.pth", "var_clip.pth", "var_clip.safetensors"])
@pytest.mark.parametrize("mmap", [True, False])
def test_the_dump_the_state_dict_and_safetensors_load_the_same_model(files, name, mmap):
    folder, model = files
    loaded = load_var_clip(folder / name, folder / "vae.safetensors", mmap=mmap)
    assert isinstance(loaded, VARCLIPModel) and loaded.family == "var-clip"
    assert loaded.config == model.config
    want = model.transformer.state_dict()
    got = loaded.transformer.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    text = text_vectors(2, seed=9)
    a = sample(model, CFG(4.0), Generation(PooledTextCondition(text), seed=3, draw=Draw(top_k=900, top_p=0.95)))
    b = sample(loaded, CFG(4.0), Generation(PooledTextCondition(text), seed=3, draw=Draw(top_k=900, top_p=0.95)))
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens))


def test_the_dump_loads_in_half_precision(files):
    folder, model = files
    loaded = load_var_clip(folder / "ar-ckpt-last.pth", folder / "vae.safetensors", dtype=torch.bfloat16)
    assert loaded.transformer.cond_proj.weight.dtype == torch.bfloat16
    torch.testing.assert_close(loaded.transformer.cond_proj.weight.float(),
                               model.transformer.cond_proj.weight.bfloat16().float(), rtol=0, atol=0)


# Measured in a fresh process: in a long test run the allocator keeps pages freed by earlier tests resident and
# hands them out again, so the control's 64 MB could arrive without the resident size growing (seen on CI).
_RESIDENT_GROWTH = """
import importlib.util, os, sys, torch
root = sys.argv[1]
spec = importlib.util.spec_from_file_location("scalewise", os.path.join(root, "__init__.py"),
                                              submodule_search_locations=[root])
module = importlib.util.module_from_spec(spec); sys.modules["scalewise"] = module; spec.loader.exec_module(module)
from scalewise.models import checkpoint_kind
from scalewise.models.var_clip_loader import read_var_clip_state_dict

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

path, dtype, mmap = sys.argv[2], getattr(torch, sys.argv[3]) if sys.argv[3] != "None" else None, sys.argv[4] == "1"
before = rss()
sd = read_var_clip_state_dict(path, dtype, mmap=mmap)
model = rss() - before
assert checkpoint_kind(sd) == "var-clip" and "cond_proj.weight" in sd
before = rss()
whole = torch.load(path, weights_only=True)
print(model, rss() - before)
"""


@pytest.mark.skipif(not pathlib.Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("mmap,dtype", [(True, None), (True, torch.bfloat16), (False, None)])
def test_the_dumps_other_entries_are_never_read_into_memory(tmp_path, mmap, dtype):
    """64 MB of optimizer state beside a tiny model: reading the model leaves the process's resident memory
    (mapped pages that were touched count) far below that; torch.load without mmap reads it all (the test's
    control). Both are measured in a fresh Python process."""
    path = tmp_path / "ar-ckpt-last.pth"
    torch.save(trainer_dump(tiny_var_clip(seed=1), optimizer_mb=64), path)
    root = pathlib.Path(__file__).resolve().parents[2]
    dtype_name = str(dtype).replace("torch.", "")
    out = subprocess.run([sys.executable, "-c", _RESIDENT_GROWTH, str(root), str(path), dtype_name,
                          "1" if mmap else "0"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    model_growth, control_growth = (int(x) for x in out.stdout.split())
    assert model_growth < 24 * 2 ** 20, f"{model_growth / 2 ** 20:.1f} MB resident after reading the model"
    assert control_growth > 48 * 2 ** 20, f"control: torch.load made {control_growth / 2 ** 20:.1f} MB resident"


def test_a_var_file_given_as_var_clip_and_the_reverse_are_named(files):
    folder, _ = files
    with pytest.raises(CheckpointError, match="class-conditional VAR transformer .* not VAR-CLIP"):
        load_var_clip(folder / "var.pth", folder / "vae.safetensors")
    for name in ("ar-ckpt-last.pth", "var_clip.safetensors"):
        with pytest.raises(CheckpointError, match=f"{name}: this is a VAR-CLIP text-to-image transformer"):
            load_var(folder / name, folder / "vae.safetensors")
    with pytest.raises(CheckpointError, match="expected a VAR-CLIP text-to-image transformer .* looks like a "
                                              "multi-scale VQ-VAE"):
        load_var_clip(folder / "vae.safetensors", folder / "vae.safetensors")


def test_one_loader_for_both_families(files):
    folder, _ = files
    var = load_var_or_var_clip(folder / "var.pth", folder / "vae.safetensors")
    clip = load_var_or_var_clip(folder / "ar-ckpt-last.pth", folder / "vae.safetensors")
    assert type(var) is VARModel and type(clip) is VARCLIPModel
    with pytest.raises(CheckpointError, match="expected a VAR transformer"):
        load_var_or_var_clip(folder / "vae.safetensors", folder / "vae.safetensors")


def test_the_text_width_comes_from_the_weights(tmp_path):
    """The official builder's default n_cond_embed is 512, the released model's 768: neither is assumed."""
    model = tiny_var_clip(text_width=512, seed=2)
    path = save(var_clip_official_state_dict(model.transformer), tmp_path / "v.safetensors")
    vae = save(vqvae_official_state_dict(model.vae), tmp_path / "vae.safetensors")
    loaded = load_var_clip(path, vae)
    assert loaded.text_width == 512 and loaded.transformer.noise.weight.shape == (1, 512)
    with pytest.raises(ValueError, match=r"\[N, 512\]"):
        loaded.prepare_condition(text_vectors(1), 1)


def test_a_damaged_noise_row_is_refused(tmp_path):
    model = tiny_var_clip(seed=2)
    sd = var_clip_official_state_dict(model.transformer)
    sd["noise.weight"] = torch.zeros(1, 512)
    path = save(sd, tmp_path / "v.safetensors")
    with pytest.raises(CheckpointError, match=r"noise.weight is \(1, 512\)"):
        load_var_clip(path, path)


@pytest.mark.parametrize("guider", [CFG(4.0), IGG(4.0), SoftCFG(base=CFG(3.0)), SSG(beta=0.3, base=CFG(2.0))],
                         ids=["cfg", "igg", "softcfg", "ssg"])
def test_every_guider_runs_on_var_clip_by_the_contract(guider):
    model = tiny_var_clip(seed=8)
    text = PooledTextCondition(text_vectors(2, seed=1))
    out = sample(model, guider, Generation(text, seed=0, draw=Draw(top_k=1)))
    plain = sample(model, None, Generation(text, seed=0, draw=Draw(top_k=1)))
    assert out.images.shape == (2, 3, 64, 64) and bool(torch.isfinite(out.images).all())
    assert any(not torch.equal(a, b) for a, b in zip(out.tokens, plain.tokens))  # guidance changed something


def test_zero_shot_editing_keeps_the_images_tokens_outside_the_mask():
    """In-painting on VAR-CLIP by the contract alone: outside the mask every scale keeps the image's own tokens."""
    from scalewise.guidance import Edit
    model = tiny_var_clip(seed=6)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 64, 64)
    mask[:, :32] = 1  # regenerate the top half
    out = sample(model, CFG(4.0), Generation(PooledTextCondition(text_vectors(1, seed=3)), seed=0,
                                             draw=Draw(top_k=1), edit=Edit(image, mask)))
    own = model.encode_image(image)
    last = out.tokens[-1][0]
    assert torch.equal(last[2:], own[-1][0][2:])  # the bottom half of the finest 4x4 map: the image's tokens
    assert not torch.equal(last[:2], own[-1][0][:2])


def test_heat_map_compare_and_sweep_run_on_var_clip():
    from scalewise.guidance.heatmap import render_heatmap
    from scalewise.guidance.runs import compare, sweep
    model = tiny_var_clip(seed=9)
    gen = Generation(PooledTextCondition(text_vectors(2, seed=5)), seed=1, draw=Draw(top_k=900, top_p=0.95))
    out = sample(model, IGG(4.0), gen, trace=True)
    grid = render_heatmap(out.trace, out.images.permute(0, 2, 3, 1))
    assert grid.dim() == 4 and grid.shape[0] == 2 and bool(torch.isfinite(grid).all())
    rows = compare(model, [None, CFG(4.0), IGG(4.0)], gen)
    assert rows.images.shape == (6, 3, 64, 64) and len(rows.evenness) == 3
    mask = torch.zeros(64, 64)
    mask[16:48, 16:48] = 1
    swept = sweep(model, CFG(1.0), [1.0, 3.0], gen, masks=mask)
    assert len(swept.rows) == 2 and swept.divergence is not None
