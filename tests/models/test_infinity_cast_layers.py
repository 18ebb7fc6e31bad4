"""Infinity's depth blocks built by other `operations` (models/infinity.py `layer_parameters`, `cast_layers`;
models/infinity_loader.py `weight_dtype`): what ComfyUI's cast layers do for partial loading and fp8 weight storage,
with a plain torch stand-in here (the ComfyUI layers themselves: tests/integration/test_infinity_offload.py).

The reference for fp8 storage is computed independently: the plain model with each block weight rounded through
fp8 and back (exact in float32), so storing in fp8 and casting per use must give the same bits."""
import copy
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from scalewise.guidance import CFG, Draw, Generation, sample
from scalewise.models.infinity import CastLinear, InfinityModel, InfinityText
from scalewise.models.infinity_loader import (CAST_WEIGHT, infinity_transformer_from, load_infinity_transformer,
                                              read_infinity_state_dict)
from scalewise.tools.tiny_weights import tiny_infinity


class CountingLinear(CastLinear):
    """The library's plain cast layer, counting its uses."""

    uses = 0

    def cast_parameters(self, x):
        CountingLinear.uses += 1
        return super().cast_parameters(x)


CAST = types.SimpleNamespace(Linear=CountingLinear)
GENERATION = Generation(InfinityText(tuple(torch.randn(n, 256, generator=torch.Generator().manual_seed(4))
                                           for n in (5, 9))), seed=2, draw=Draw(top_k=1))


@pytest.fixture(scope="module")
def model():
    return tiny_infinity(seed=5)


def rebuilt(model, **kwargs) -> InfinityModel:
    sd = {k: v.clone() for k, v in model.transformer.state_dict().items()}
    pn = "0.06M"
    return InfinityModel(infinity_transformer_from("tiny.pth", sd, pn=pn, **kwargs), copy.deepcopy(model.vae))


def test_cast_layers_are_the_block_linears_and_carry_nearly_all_weights(model):
    t = model.transformer
    layers = t.cast_layers()
    assert len(layers) == 7 * len(t.blocks) and all(isinstance(m, nn.Linear) for m in layers)
    cast = sum(m.weight.numel() for m in layers)
    others = sum(p.numel() for p in t.parameters()) - cast
    assert cast > others  # tiny widths; at the 2B/8B widths the blocks' share is 93 % (2B) and 97 % (8B): tools/infinity_memory.py


def test_every_use_of_a_block_weight_goes_through_the_cast(model):
    CountingLinear.uses = 0
    built = rebuilt(model, operations=CAST)
    assert all(type(m) is CountingLinear for m in built.transformer.cast_layers())
    plain, cast = sample(model, CFG(3.0), GENERATION), sample(built, CFG(3.0), GENERATION)
    assert all(torch.equal(a, b) for a, b in zip(plain.tokens, cast.tokens))
    assert torch.equal(plain.images, cast.images)
    # the text pool's and each scale's forward use every cast layer at least once
    assert CountingLinear.uses >= len(built.transformer.cast_layers()) * len(model.config.scales)


@pytest.mark.parametrize("fp8", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_fp8_storage_gives_the_bits_of_fp8_rounded_weights(model, fp8):
    stored = rebuilt(model, operations=CAST, weight_dtype=fp8)
    t = stored.transformer
    cast = {id(m.weight) for m in t.cast_layers()}
    assert all(m.weight.dtype == fp8 for m in t.cast_layers())
    assert all(p.dtype == torch.float32 for p in t.parameters() if id(p) not in cast)  # biases, norms, head: fp32
    assert stored.dtype == torch.float32  # the compute dtype
    reference = copy.deepcopy(model)
    for layer in reference.transformer.cast_layers():
        layer.weight.data = layer.weight.data.to(fp8).float()
    want, got = sample(reference, CFG(3.0), GENERATION), sample(stored, CFG(3.0), GENERATION)
    assert all(torch.equal(a, b) for a, b in zip(want.tokens, got.tokens))
    assert torch.equal(want.images, got.images) and bool(torch.isfinite(got.images).all())
    # the rounding is real: the stored weights differ from the fp32 ones
    assert not all(torch.equal(a.weight, b.weight.float())
                   for a, b in zip(model.transformer.cast_layers(), t.cast_layers()))


def test_fp8_storage_without_operations_uses_the_plain_cast_layers(model):
    stored = rebuilt(model, weight_dtype=torch.float8_e4m3fn)
    assert all(type(m) is CastLinear and m.weight.dtype == torch.float8_e4m3fn
               for m in stored.transformer.cast_layers())
    with_counting = rebuilt(model, operations=CAST, weight_dtype=torch.float8_e4m3fn)
    a, b = sample(stored, CFG(3.0), GENERATION), sample(with_counting, CFG(3.0), GENERATION)
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens)) and torch.equal(a.images, b.images)


def test_fp8_storage_under_bf16_compute(model):
    stored = rebuilt(model, dtype=torch.bfloat16, weight_dtype=torch.float8_e4m3fn)
    assert stored.dtype == torch.bfloat16 and stored.transformer.cast_layers()[0].weight.dtype == torch.float8_e4m3fn
    out = sample(stored, CFG(3.0), GENERATION)
    assert out.images.dtype == torch.float32 and bool(torch.isfinite(out.images).all())


def test_the_fp8_read_picks_exactly_the_cast_layers_weights(model):
    t = model.transformer
    cast = {id(m) for m in t.cast_layers()}
    names = {f"{n}.weight" for n, m in t.named_modules() if id(m) in cast}
    assert {k for k in t.state_dict() if CAST_WEIGHT.match(k)} == names


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_a_file_loads_with_fp8_blocks_read_as_fp8(tmp_path, model, fmt):
    sd = {k: v.clone().contiguous() for k, v in model.transformer.state_dict().items()}
    path = tmp_path / f"infinity.{fmt}"
    save_file(sd, str(path)) if fmt == "safetensors" else torch.save(sd, path)
    read = read_infinity_state_dict(path, torch.float32, weight_dtype=torch.float8_e4m3fn)
    assert {k for k, v in read.items() if v.dtype == torch.float8_e4m3fn} == {k for k in sd if CAST_WEIGHT.match(k)}
    assert all(torch.equal(read[k].float(), sd[k].to(read[k].dtype).float()) for k in read)  # cast once, as read
    loaded = load_infinity_transformer(path, pn="0.06M", weight_dtype=torch.float8_e4m3fn)
    want = rebuilt(model, weight_dtype=torch.float8_e4m3fn).transformer.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(want) and all(got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("kwargs,match", [
    (dict(weight_dtype=torch.float8_e8m0fnu), r"weight_dtype torch.float8_e8m0fnu: the block weights can be stored in"),
    (dict(weight_dtype=torch.int8), r"weight_dtype torch.int8: the block weights"),
    (dict(weight_dtype=torch.complex64), r"weight_dtype torch.complex64: the block weights"),
    (dict(weight_dtype="fp8_e4m3fn"), r"weight_dtype 'fp8_e4m3fn': the block weights"),
    (dict(dtype=torch.float8_e4m3fn), r"dtype torch.float8_e4m3fn: Infinity computes in"),
])
def test_dtypes_it_cannot_use_are_refused_by_name(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        rebuilt(model, **kwargs)


def test_any_operations_namespace_works_where_its_layers_cast_nothing_themselves(model):
    """A namespace whose Linear has no `cast_parameters` (e.g. one holding fp8 weights and casting only in forward):
    the two layers the blocks read directly (mat_qkv, mat_kv) are cast by `layer_parameters`."""
    class ForwardCast(nn.Linear):
        def forward(self, x):
            return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    stored = rebuilt(model, operations=types.SimpleNamespace(Linear=ForwardCast), weight_dtype=torch.float8_e4m3fn)
    reference = rebuilt(model, weight_dtype=torch.float8_e4m3fn)
    a, b = sample(stored, CFG(3.0), GENERATION), sample(reference, CFG(3.0), GENERATION)
    assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens)) and torch.equal(a.images, b.images)


def test_the_callers_state_dict_is_left_as_it_was(model):
    sd = {k: v.clone() for k, v in model.transformer.state_dict().items()}
    infinity_transformer_from("tiny.pth", sd, pn="0.06M", weight_dtype=torch.float8_e4m3fn)
    assert {v.dtype for v in sd.values()} == {torch.float32}
