"""Infinity (models/infinity.py, models/bsq_vae.py, models/infinity_loader.py) on tiny random weights: the official
key layout, cached vs teacher-forced logits, RoPE positions, the bitwise quantiser, loader refusals. Independent of
the official code (its key lists are data: tests/data/keys/infinity_*.txt)."""
import math

import pytest
import torch
from safetensors.torch import save_file

from official_keys import read_keys
from scalewise.tools.tiny_weights import infinity_config, tiny_infinity
from scalewise.models.bsq_vae import BSQVAE, BSQVAEConfig
from scalewise.models.checkpoint import CheckpointError
from scalewise.models.infinity import (InfinityText, InfinityTransformer, rope_tables)
from scalewise.models.infinity_loader import (infer_bsq_vae_config, infer_infinity_config, load_bsq_vae,
                                              load_infinity_transformer)

def tiny_config(pn="0.06M", **kw):
    return infinity_config(pn, **kw)


def tiny_model(seed=0):
    return tiny_infinity(seed)


def prompts(lens=(5, 9), seed=3):
    g = torch.Generator().manual_seed(seed)
    return InfinityText(tuple(torch.randn(n, 256, generator=g) for n in lens))


def test_transformer_layout_matches_official_keys():
    sd = InfinityTransformer(tiny_config()).state_dict()
    expected = read_keys("infinity_tiny_keys.txt")
    assert set(sd) == set(expected)
    for k, t in sd.items():
        assert (tuple(t.shape), str(t.dtype).replace("torch.", "")) == expected[k], k


def test_bsq_vae_layout_matches_official_keys():
    sd = BSQVAE(BSQVAEConfig(bits=8)).state_dict()
    expected = read_keys("infinity_bsq_vae_d8_keys.txt")
    assert set(sd) == set(expected) and len(expected) == 270
    for k, t in sd.items():
        assert (tuple(t.shape), str(t.dtype).replace("torch.", "")) == expected[k], k


def test_rope_positions_are_normalised_to_the_1m_grid_and_offset_per_scale():
    cfg = tiny_config()
    cos, sin = rope_tables(cfg)
    half = cfg.head_dim // 2  # 32 pairs: 16 row angles, then 16 column angles
    assert cos.shape == (cfg.seq_len, half)
    # scale 2 is 4x4 at offset 1 + 4 = 5; its positions map to rows/cols 0, 16, 32, 48 of the 64 grid
    r, c = 2, 3
    pos = 5 + r * 4 + c
    theta = [1 / 10000 ** (2 * i / half) for i in range(half // 2)]
    want = [16 * r * t for t in theta] + [16 * c * t for t in theta]
    torch.testing.assert_close(cos[pos], torch.tensor([math.cos(a) for a in want]), atol=1e-5, rtol=0)
    torch.testing.assert_close(sin[pos], torch.tensor([math.sin(a) for a in want]), atol=1e-5, rtol=0)
    # scale 3 (6x6): 64 / 6 = 10.67, so row 5 -> round(53.3) = 53
    pos = 21 + 5 * 6
    torch.testing.assert_close(cos[pos, 0], torch.tensor(math.cos(53.0)), atol=1e-5, rtol=0)


def test_bits_to_codes_and_last_scale_update():
    model = tiny_model()
    bits = torch.tensor([[[0, 1, 1, 0, 0, 0, 1, 1]]])
    codes = model.embed_tokens(bits)
    torch.testing.assert_close(codes, (bits.float() * 2 - 1) / math.sqrt(8))
    canvas = model.new_canvas(1)
    assert canvas.shape == (1, 8, 16, 16)
    h = torch.randn(1, 256, 8)
    assert model.next_autoregressive_input(6, canvas, h) is None  # last scale: added without resizing
    torch.testing.assert_close(canvas, h.transpose(1, 2).reshape(1, 8, 16, 16))
    # a constant code map stays constant through the trilinear up/down
    canvas = model.new_canvas(1)
    nxt = model.next_autoregressive_input(0, canvas, torch.full((1, 1, 8), 0.5))
    torch.testing.assert_close(nxt, torch.full((1, 4, 8), 0.5))


@pytest.mark.parametrize("with_uncond", [False, True])
def test_cached_scale_logits_equal_the_teacher_forced_pass(with_uncond):
    model = tiny_model()
    prepared = model.prepare_condition(prompts(), None)
    B, K, d = 2, len(model.config.scales), 8
    g = torch.Generator().manual_seed(7)
    tokens = [torch.randint(0, 2, (B, n, d), generator=g) for n in model.config.lengths]
    state = model.start(prepared, with_uncond)
    cached, latent = [], None
    inputs = model.teacher_forcing_inputs(tokens)
    canvas = model.new_canvas(B)
    for k in range(K):
        cached.append(model.forward_scale(state, k, latent))
        latent = model.next_autoregressive_input(k, canvas, model.embed_tokens(tokens[k]))
    state.close()
    rows = 2 * B if with_uncond else B
    texts = list(prepared.features) + ([model.transformer.cfg_uncond[:f.shape[0]] for f in prepared.features]
                                       if with_uncond else [])
    teacher = model.transformer.forward_teacher(model.transformer.text_rows(texts), inputs.repeat(rows // B, 1, 1))
    got = torch.cat(cached, 1)
    assert got.shape == (rows, model.config.seq_len, 16)
    torch.testing.assert_close(got, teacher, atol=2e-4, rtol=1e-4)
    assert got.std() > 0.1  # not a degenerate model


def test_uncond_rows_can_be_dropped_not_restarted():
    model = tiny_model()
    prepared = model.prepare_condition(prompts(), None)
    s2 = model.start(prepared, True)
    model.forward_scale(s2, 0, None)
    s2.set_uncond(False)
    assert s2.rows == 2
    with pytest.raises(RuntimeError, match="dropped"):
        s2.set_uncond(True)


def test_prepare_condition_checks():
    model = tiny_model()
    with pytest.raises(TypeError):
        model.prepare_condition(object(), 1)
    with pytest.raises(ValueError, match="conditioning"):
        model.prepare_condition(InfinityText((torch.zeros(3, 100),)), 1)
    p = model.prepare_condition(prompts(), 3, first=1)
    assert [f.shape[0] for f in p.features] == [9, 5, 9]


def test_prepare_condition_names_an_over_long_prompt():
    model = tiny_model()
    maxlen, channels = model.config.text_maxlen, model.config.text_channels
    model.prepare_condition(InfinityText((torch.zeros(maxlen, channels),)), 1)   # exactly the text length: fine
    too_long = InfinityText((torch.zeros(1, channels), torch.zeros(maxlen + 1, channels)))
    with pytest.raises(ValueError, match=rf"conditioning: prompt 2 has {maxlen + 1} tokens, more than this model's "
                                         rf"text length of {maxlen}: shorten the prompt"):
        model.prepare_condition(too_long, 2)


def test_loader_round_trip_and_refusals(tmp_path):
    model = tiny_model()
    sd = {k: v.contiguous() for k, v in model.transformer.state_dict().items()}
    path = tmp_path / "infinity.safetensors"
    save_file(sd, str(path))
    cfg = infer_infinity_config(sd, "0.06M")
    assert (cfg.width, cfg.depth, cfg.heads, cfg.block_chunks, cfg.ffn_hidden, cfg.bits) == (128, 4, 2, 2, 512, 8)
    loaded = load_infinity_transformer(path, pn="0.06M")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in sd.items())
    pth = tmp_path / "infinity.pth"
    torch.save(sd, pth)
    load_infinity_transformer(pth, pn="0.06M")

    missing = dict(sd)
    missing.pop("block_chunks.1.module.1.ca.mat_q.bias")
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError, match="missing"):
        load_infinity_transformer(tmp_path / "missing.safetensors", pn="0.06M")
    extra = {**sd, "blocks.0.sa.proj.weight": torch.zeros(128, 128)}
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected"):
        load_infinity_transformer(tmp_path / "extra.safetensors", pn="0.06M")
    # the derived constants the official load_state_dict drops are dropped here too (not weights)
    derived = {**sd, "lvl_1L": torch.zeros(1, 3), "attn_bias_for_masking": torch.zeros(1, 1, 3, 3),
               "Infinity_visible_kvlen": torch.zeros(3), "Infinity_invisible_qlen": torch.zeros(3)}
    save_file(derived, str(tmp_path / "derived.safetensors"))
    loaded = load_infinity_transformer(tmp_path / "derived.safetensors", pn="0.06M")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in sd.items())
    bad = {**sd, "block_chunks.0.module.0.sa.zero_k_bias": torch.ones(128)}
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="zero"):
        load_infinity_transformer(tmp_path / "bad.safetensors", pn="0.06M")
    with pytest.raises(CheckpointError, match="Infinity"):
        load_infinity_transformer(_vae_file(tmp_path, model), pn="0.06M")  # a VAE given to the transformer loader


def _vae_file(tmp_path, model):
    path = tmp_path / "vae.safetensors"
    save_file({k: v.contiguous() for k, v in model.vae.state_dict().items()
               if not k.startswith("quantize.")} | {"quantize.lfq.mask": model.vae.quantize.lfq.mask.clone()},
              str(path))
    return path


def test_vae_loader_infers_sizes_and_checks_mask(tmp_path):
    model = tiny_model()
    path = _vae_file(tmp_path, model)
    cfg = infer_bsq_vae_config(model.vae.state_dict())
    assert cfg == BSQVAEConfig(ch=32, ch_mult=(1, 2, 2, 2, 2), num_res_blocks=2, bits=8, downsample=16)
    vae = load_bsq_vae(path)
    x = torch.randn(1, 8, 2, 2)
    torch.testing.assert_close(vae.decode(x), model.vae.decode(x))
    sd = {k: v.contiguous() for k, v in model.vae.state_dict().items() if "lfq.mask" not in k}
    sd |= {"quantizer.lfq.mask": torch.arange(8), "quantize.lfq.mask": torch.arange(8)}
    save_file(sd, str(tmp_path / "badmask.safetensors"))
    with pytest.raises(CheckpointError, match="mask"):
        load_bsq_vae(tmp_path / "badmask.safetensors")


def test_encode_then_teacher_inputs_shapes():
    model = tiny_model()
    bits = model.encode_image(torch.rand(1, 3, 256, 256))
    assert [tuple(b.shape) for b in bits] == [(1, s, s, 8) for s in (1, 2, 4, 6, 8, 12, 16)]
    assert model.teacher_forcing_inputs(bits).shape == (1, model.config.seq_len - 1, 8)


def patchify_model():
    """The 8B's layout in small: 8 bits per token over a 2-bit stride-8 VAE (each token a 2 x 2 patch)."""
    from scalewise.models.infinity import InfinityModel
    from scalewise.tools.tiny_weights import randomise_infinity
    vae = randomise_infinity(BSQVAE(BSQVAEConfig(ch=32, ch_mult=(1, 2, 2, 2), bits=2, downsample=8)), 1)
    return InfinityModel(tiny_model().transformer, vae)


def test_patchify_bit_order_is_pixel_shuffle():
    """Token channel 4 c + 2 dy + dx is bit c of VAE position (2 y + dy, 2 x + dx) (official pixel_shuffle(2))."""
    model = patchify_model()
    assert model.patchify and model.new_canvas(1).shape == (1, 2, 32, 32) and model.image_size == 256
    K = len(model.config.scales)
    y, x, c, dy, dx = 3, 5, 1, 1, 0
    bits = torch.zeros(1, 16 * 16, 8, dtype=torch.long)
    bits[0, y * 16 + x, 4 * c + 2 * dy + dx] = 1
    codes = model.embed_tokens(bits)
    torch.testing.assert_close(codes.abs(), torch.full_like(codes, 1 / math.sqrt(2)))  # d = 2: 1/sqrt(2)
    canvas = model.new_canvas(1)
    assert model.next_autoregressive_input(K - 1, canvas, codes) is None
    ones = (canvas > 0).nonzero().tolist()
    assert ones == [[0, c, 2 * y + dy, 2 * x + dx]]
    # and back: pixel_unshuffle of the canvas's next input at a coarser scale gives 4 d channels
    nxt = model.next_autoregressive_input(0, model.new_canvas(1), model.embed_tokens(torch.ones(1, 1, 8).long()))
    assert nxt.shape == (1, 4, 8)
    torch.testing.assert_close(nxt, torch.full((1, 4, 8), 1 / math.sqrt(2)))


def test_patchify_cached_logits_equal_the_teacher_forced_pass_and_encode_round_trips():
    model = patchify_model()
    prepared = model.prepare_condition(prompts((6,)), None)
    bits = model.encode_image(torch.rand(1, 3, 256, 256))
    assert [tuple(b.shape) for b in bits] == [(1, s, s, 8) for s in (1, 2, 4, 6, 8, 12, 16)]
    state, cached, latent, canvas = model.start(prepared, False), [], None, model.new_canvas(1)
    for k, t in enumerate(bits):
        cached.append(model.forward_scale(state, k, latent))
        latent = model.next_autoregressive_input(k, canvas, model.embed_tokens(t.reshape(1, -1, 8)))
    teacher = model.transformer.forward_teacher(model.transformer.text_rows(list(prepared.features)),
                                                model.teacher_forcing_inputs(bits))
    torch.testing.assert_close(torch.cat(cached, 1), teacher, atol=2e-4, rtol=1e-4)
    # the last scale of the encoding is the sign of the final residual: decoding the bits' canvas gives an image
    assert model.decode(canvas).shape == (1, 3, 256, 256)


@pytest.mark.parametrize("batch_size,fragment", [
    (0, "batch_size must be at least 1, got 0"), (-1, "batch_size must be at least 1, got -1"),
    (1.5, "batch_size must be an integer, got 1.5"), ("2", "batch_size must be an integer, got '2'"),
    (True, "batch_size must be an integer, got True"),
])
def test_prepare_condition_refuses_a_bad_batch_size(batch_size, fragment):
    with pytest.raises(ValueError, match=fragment):
        tiny_model().prepare_condition(prompts(), batch_size)


@pytest.mark.parametrize("where", ["features", "negative"])
def test_prepare_condition_refuses_non_finite_text_features_naming_the_prompt(where):
    good, bad = torch.randn(4, 256), torch.randn(4, 256)
    bad[1, 7] = float("inf") if where == "negative" else float("nan")
    text = InfinityText((good, bad)) if where == "features" else InfinityText((good, good), negative=(good, bad))
    name = "prompt 2" if where == "features" else "negative prompt 2"
    with pytest.raises(ValueError, match=f"conditioning: {name}'s text features hold NaN/inf"):
        tiny_model().prepare_condition(text, None)


def test_infinity_text_takes_lists_as_tuples():
    feats = [torch.randn(3, 256), torch.randn(5, 256)]
    text = InfinityText(feats, negative=[torch.randn(2, 256)])
    assert isinstance(text.features, tuple) and isinstance(text.negative, tuple)
    prepared = tiny_model().prepare_condition(text, 3)
    assert [f.shape[0] for f in prepared.features] == [3, 5, 3] and len(prepared.negative) == 3
    with pytest.raises(TypeError, match="InfinityText.features must be a tuple or list"):
        InfinityText(torch.randn(3, 256))
