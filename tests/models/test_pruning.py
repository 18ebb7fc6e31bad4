"""Cached token pruning (models/pruning.py) on tiny random models of every family: exactness at keep ratio 1, the
pruned pass against an independent reference of FastVAR's rule, every guider and editing under pruning, and
batch-size independence."""
import math

import pytest
import torch
import torch.nn.functional as F

from scalewise.guidance import CFG, IGG, SSG, Draw, Edit, Generation, SoftCFG, sample
from scalewise.models.pruning import PRESETS, PrunedModel, PruningRun, TokenPruning, pivotal_tokens, with_pruning
from scalewise.models.infinity import InfinityText
from scalewise.tools.tiny_weights import tiny_infinity
from tiny import LogitRecorder, random_text, text_vectors, tiny_model, tiny_switti, tiny_var_clip

PN = (1, 2, 3, 4, 6, 8)  # two large scales to prune (36 and 64 tokens), cache scale 4x4
DRAW = Draw(top_k=50, top_p=0.9)
FAMILIES = ["var", "var-clip", "switti", "switti-ar", "infinity"]


def family(name):
    """(model, conditioning of 3 images) of a family (Infinity: the 0.06M schedule, 12x12 and 16x16 pruned)."""
    if name == "var":
        return tiny_model(patch_nums=PN), [1, 2, 3]
    if name == "var-clip":
        return tiny_var_clip(patch_nums=PN), text_vectors(3)
    if name == "infinity":
        g = torch.Generator().manual_seed(3)
        return tiny_infinity(), InfinityText(tuple(torch.randn(n, 256, generator=g) for n in (4, 6, 9)))
    return tiny_switti(patch_nums=PN, autoregressive=name == "switti-ar"), random_text(3)


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens)) and torch.equal(a.images, b.images)


def test_policy_ratios_and_refusals():
    assert TokenPruning((0.5, 0.25)).ratios(6) == (1, 1, 1, 1, 0.5, 0.25)
    assert PRESETS["fastvar-infinity"].ratios(13)[-4:] == (0.6, 0.5, 0.0, 0.0)  # Infinity: 32, 40; 48, 64 skipped
    with pytest.raises(ValueError, match="keep ratio"):
        TokenPruning((0.0,))
    with pytest.raises(ValueError, match="skip_last"):
        TokenPruning(skip_last=-1)
    with pytest.raises(ValueError, match="no unpruned scale"):
        PrunedModel(tiny_model(patch_nums=(1, 2)), TokenPruning((0.5, 0.5)))
    model = tiny_model(patch_nums=PN)
    assert with_pruning(model, None) is model and with_pruning(model, TokenPruning()) is model


@pytest.mark.parametrize("name", FAMILIES)
def test_keep_ratio_one_is_bit_identical_to_exact(name):
    """Ratio 1 on the named scales runs every hook (cache scale stored, branches through `branch`) and changes
    nothing: tokens and images equal bit for bit."""
    model, cond = family(name)
    generation = Generation(cond, seed=5, draw=DRAW)
    exact = sample(model, CFG(2.0), generation)
    assert same(exact, sample(PrunedModel(model, TokenPruning((1.0, 1.0))), CFG(2.0), generation))


@pytest.mark.parametrize("name", FAMILIES)
def test_pruning_changes_only_the_pruned_scales(name):
    model, cond = family(name)
    generation = Generation(cond, seed=5, draw=DRAW)
    exact = sample(model, CFG(2.0), generation)
    pruned = sample(PrunedModel(model, PRESETS["fastvar"]), CFG(2.0), generation)
    assert all(torch.equal(a, b) for a, b in zip(exact.tokens[:4], pruned.tokens[:4]))
    assert not torch.equal(exact.tokens[-1], pruned.tokens[-1])
    assert torch.isfinite(pruned.images).all()


def test_pivotal_tokens_rule_and_preference():
    x = torch.randn(2, 10, 4, generator=torch.Generator().manual_seed(0))
    idx = pivotal_tokens(x, 3)
    score = ((x - x.mean(1, keepdim=True)) ** 2).sum(-1)
    for row in range(2):
        expected = torch.argsort(score[row], descending=True)[:3]  # FastVAR's argsort, descending, first m
        assert set(idx[row].tolist()) == set(expected.tolist())
    prefer = torch.zeros(2, 10, dtype=torch.bool)
    prefer[:, [0, 1]] = True
    assert all({0, 1} <= set(r.tolist()) for r in pivotal_tokens(x, 3, prefer))


# -- an independent reference of the pruned pass (VAR) -------------------------------------------------------------

def reference_logits(model, labels, inputs, ratios):
    """Logits of every scale of a tiny VAR under FastVAR's rule, written from the paper/code without the pack's
    KV cache or pruning module: per block and branch, keep the n - int(n (1 - r)) tokens farthest from the scale's
    mean stream vector (argsort, descending), fill the others with the same branch's output at the last unpruned
    scale, area-interpolated; keys/values of the kept tokens only (concatenated per layer)."""
    t = model.transformer
    cond = t.condition(labels)
    pns, offsets = model.patch_nums, t.config.schedule.offsets
    first = next(k for k, r in enumerate(ratios) if r < 1)
    keys, values, stored, out = [[] for _ in t.blocks], [[] for _ in t.blocks], {}, []
    for k, pn in enumerate(pns):
        if k == 0:
            x = t.embed_start(cond)
        else:
            start = offsets[k]
            x = t.word_embed(inputs[:, start - 1:start - 1 + pn * pn]) + t.position_embedding(start, start + pn * pn)
        for i, blk in enumerate(t.blocks):
            g1, g2, s1, s2, b1, b2 = cond.block_mods[i][:, :, None].unbind(1)
            a = blk.attn

            def attn(y, layer=i, blk=blk, a=a, s1=s1, b1=b1, g1=g1):
                y = F.layer_norm(y, y.shape[-1:], eps=1e-6) * (1 + s1) + b1
                bias = torch.cat((a.q_bias, torch.zeros_like(a.q_bias), a.v_bias))
                q, kk, v = F.linear(y, a.mat_qkv.weight, bias).view(y.shape[0], y.shape[1], 3, a.heads,
                                                                     a.head_dim).permute(2, 0, 3, 1, 4)
                keys[layer].append(F.normalize(kk, dim=-1))
                values[layer].append(v)
                q = F.normalize(q, dim=-1) * a.scale_mul_1H11.clamp(max=math.log(100)).exp()
                w = torch.softmax(q @ torch.cat(keys[layer], 2).transpose(-1, -2), -1)
                o = (w @ torch.cat(values[layer], 2)).transpose(1, 2).reshape(y.shape[0], y.shape[1], -1)
                return a.proj(o) * g1

            def ffn(y, blk=blk, s2=s2, b2=b2, g2=g2):
                return blk.ffn(F.layer_norm(y, y.shape[-1:], eps=1e-6) * (1 + s2) + b2) * g2

            for name, fn in (("attn", attn), ("ffn", ffn)):
                if ratios[k] == 1:
                    branch = fn(x)
                    if k == first - 1:
                        stored[i, name] = branch
                else:
                    n = pn * pn
                    m = n - int(n * (1 - ratios[k]))
                    score = ((x - x.mean(1, keepdim=True)) ** 2).sum(-1)
                    order = torch.argsort(score, dim=1, descending=True)[:, :m]
                    src = stored[i, name]
                    side = pns[first - 1]
                    branch = F.interpolate(src.transpose(1, 2).reshape(src.shape[0], -1, side, side),
                                           size=(pn, pn), mode="area").flatten(2).transpose(1, 2).clone()
                    gathered = torch.stack([x[r, order[r]] for r in range(x.shape[0])])
                    computed = fn(gathered)
                    for r in range(x.shape[0]):
                        branch[r, order[r]] = computed[r]
                x = x + branch
        out.append(t.logits(x, cond))
    return out


def test_the_pruned_pass_equals_a_reference_of_fastvars_rule():
    torch.manual_seed(0)
    model = tiny_model(patch_nums=PN)
    policy = TokenPruning((0.5, 0.25))
    labels = torch.tensor([1, 4])
    tokens = [torch.randint(0, model.vocab_size, (2, p, p), generator=torch.Generator().manual_seed(p)) for p in PN]
    inputs = model.teacher_forcing_inputs(tokens)
    with torch.no_grad():
        expected = reference_logits(model, labels, inputs, policy.ratios(len(PN)))
        pruned = PrunedModel(model, policy)
        state = pruned.start(model.prepare_condition(labels, None), with_uncond=False)
        offsets = model.config.schedule.offsets
        for k, pn in enumerate(PN):
            latent = None if k == 0 else inputs[:, offsets[k] - 1:offsets[k] - 1 + pn * pn]
            got = pruned.forward_scale(state, k, latent)
            assert got.shape == expected[k].shape
            torch.testing.assert_close(got, expected[k], rtol=1e-5, atol=1e-5)  # fp32, summation order only
        state.close()


# -- guiders, editing, batches ---------------------------------------------------------------------------------

GUIDERS = {"cfg": CFG(2.0), "igg": IGG(2.0), "softcfg": SoftCFG(1.0, base=CFG(2.0)), "ssg": SSG(0.4),
           "ssg+cfg": SSG(0.4, base=CFG(2.0))}


@pytest.mark.parametrize("guider", GUIDERS)
@pytest.mark.parametrize("name", ["var", "switti", "switti-ar"])
def test_every_guider_runs_under_pruning_and_sees_full_size_logits(name, guider):
    model, cond = family(name)
    g = GUIDERS[guider]
    if guider == "softcfg" and name == "switti":
        pytest.skip("SoftCFG refuses non-autoregressive Switti (no cached values to weight)")
    recorder = LogitRecorder()
    out = sample(PrunedModel(model, PRESETS["fastvar"]), g, Generation(cond, seed=2, draw=DRAW))
    sample(PrunedModel(model, PRESETS["fastvar"]), recorder, Generation(cond, seed=2, draw=DRAW))
    assert [r.shape[1] for r in recorder.logits] == [p * p for p in PN]
    assert torch.isfinite(out.images).all() and [t.shape[-1] for t in out.tokens] == list(PN)


@pytest.mark.parametrize("guider", GUIDERS)
def test_every_guider_runs_on_infinity_under_pruning(guider):
    """Infinity's blocks prune their three branches (self-attention, text cross-attention, FFN); the head still
    gives every position's bit logits."""
    model, cond = family("infinity")
    recorder = LogitRecorder()
    pruned = PrunedModel(model, PRESETS["fastvar"])
    out = sample(pruned, GUIDERS[guider], Generation(cond, seed=2, draw=DRAW))
    sample(pruned, recorder, Generation(cond, seed=2, draw=DRAW))
    assert [r.shape[1] for r in recorder.logits] == [h * w for h, w in model.config.scales]
    assert torch.isfinite(out.images).all() and out.tokens[-1].shape == (3, 16, 16, 8)


def test_softcfg_weights_follow_the_cached_positions():
    """Under pruning the attention cache holds the kept positions only; SoftCFG's full-position multipliers are
    gathered to them (layer by layer)."""
    model = tiny_model(patch_nums=PN)
    run = PruningRun.for_model(TokenPruning((0.5, 0.25)), model)
    offsets = model.config.schedule.offsets
    kept4 = torch.tensor([[0, 5, 7], [1, 2, 3]])
    run.kept[4] = {0: kept4}
    weights = torch.arange(2 * (offsets[5] + 64), dtype=torch.float32).view(2, -1)
    idx5 = torch.tensor([[3, 9], [0, 63]])
    got = run.scale(5).value_weights(0, weights, idx5)
    full = list(range(offsets[4]))
    for row in range(2):
        expected = full + [offsets[4] + i for i in kept4[row].tolist()] + [offsets[5] + i for i in idx5[row].tolist()]
        assert got[row].tolist() == weights[row, expected].tolist()


@pytest.mark.parametrize("name", ["var", "switti-ar"])
def test_editing_under_pruning_forwards_the_edit_region_first(name, monkeypatch):
    model, cond = family(name)
    side = model.image_size
    image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, side, side)
    mask[:, :side // 4, :side // 4] = 1  # a corner: 4 of the last scale's 64 tokens, fewer than the 16 kept
    states = []
    pruned = PrunedModel(model, PRESETS["fastvar"])
    start = pruned.start
    monkeypatch.setattr(pruned, "start", lambda *a, **kw: states.append(start(*a, **kw)) or states[-1])
    edit = Edit.from_inputs(image, mask, 1.0, "official", None)
    out = sample(pruned, CFG(2.0), Generation(cond, seed=3, draw=DRAW, edit=edit))
    exact = sample(model, CFG(2.0), Generation(cond, seed=3, draw=DRAW, edit=edit))
    run = states[0].pruning
    keep_last = ~run.preferred[5].view(-1, 8, 8)
    # outside the region the image's tokens, as in the exact edit
    assert torch.equal(out.tokens[-1][keep_last], exact.tokens[-1][keep_last])
    region = set(torch.nonzero(run.preferred[5][0]).flatten().tolist())
    assert region and all(region <= set(kept[0].tolist()) for kept in run.kept[5].values())


@pytest.mark.parametrize("name", FAMILIES)
def test_pruned_images_do_not_depend_on_the_batch_size(name):
    model, cond = family(name)
    policy = TokenPruning((0.6,), skip_last=1) if name == "var" else PRESETS["fastvar"]  # a skipped scale too
    pruned = PrunedModel(model, policy)
    batch = sample(pruned, CFG(2.0), Generation(cond, seed=9, draw=DRAW))
    for i in range(3):
        alone = sample(pruned, CFG(2.0), Generation(cond, seed=9, batch_size=1, batch_index=i, draw=DRAW))
        assert all(torch.equal(b[i], a[0]) for b, a in zip(batch.tokens, alone.tokens))


@pytest.mark.parametrize("name", FAMILIES)
def test_softcfg_on_an_unpruned_scale_after_a_pruned_one(name):
    """Keep ratio 1 after a pruned scale: that scale runs every position, but the attention cache holds only the
    earlier scale's kept positions, so SoftCFG's weights must be gathered to them there too."""
    model, cond = family(name)
    if name == "switti":
        pytest.skip("SoftCFG needs an autoregressive model")
    policy = TokenPruning((0.5, 1.0))
    out = sample(PrunedModel(model, policy), SoftCFG(1.0, base=CFG(2.0)), Generation(cond, seed=4, draw=DRAW))
    assert torch.isfinite(out.images).all()
    run = PruningRun.for_model(policy, model)
    k = len(run.grids) - 1
    assert run.ratios[-2:] == (0.5, 1.0)
    # the weights of the last scale: every position of the earlier scales but the pruned one's kept ones, all its own
    run.kept[k - 1] = {0: torch.tensor([[0, 2]])}
    n = run.offsets[k] + run.grids[k][0] * run.grids[k][1]
    got = run.scale(k).value_weights(0, torch.arange(n, dtype=torch.float32)[None], None)
    expected = list(range(run.offsets[k - 1])) + [run.offsets[k - 1], run.offsets[k - 1] + 2] + \
        list(range(run.offsets[k], n))
    assert got[0].tolist() == expected


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(skip_last=True), "skip_last must be a whole number >= 0 .*got True"),
    (dict(skip_last=float("nan")), "skip_last must be a whole number >= 0 .*got nan"),
    (dict(skip_last="0.5"), "skip_last must be a whole number >= 0 .*got '0.5'"),
    (dict(skip_last=1.5), "skip_last must be a whole number >= 0 .*got 1.5"),
    (dict(keep=("0.5",)), r"keep ratio '0.5' is not a number in \(0, 1\]"),
    (dict(keep=0.5), r"keep must be a sequence of ratios in \(0, 1\], got 0.5"),
    (dict(keep=(True,)), r"keep ratio True is not a number"),
])
def test_malformed_policies_are_named(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        TokenPruning(**kwargs)


def test_with_pruning_takes_a_preset_name_and_names_the_presets_otherwise():
    model = tiny_model(patch_nums=PN)
    pruned = with_pruning(model, "fastvar")
    assert isinstance(pruned, PrunedModel) and pruned.policy == PRESETS["fastvar"]
    with pytest.raises(ValueError, match="no preset named 'fast'; the presets are 'fastvar', 'fastvar-infinity'"):
        with_pruning(model, "fast")
    with pytest.raises(TypeError, match="must be a TokenPruning, a preset name or None, got float"):
        with_pruning(model, 0.5)
