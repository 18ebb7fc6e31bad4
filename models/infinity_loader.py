"""Loading Infinity transformers and BSQ VAEs from the released files, sizes inferred from the tensors, keys compared
strictly (a missing or unexpected key is refused, never left at its initial value as the official non-strict
`Infinity.load_state_dict` does).

Files: a flat state dict (.pth, checked by the pack's pickle scan, read with weights_only=True; or .safetensors), the
8B's Hugging Face sharded folder (`*.index.json` + shards, `.bin` or `.safetensors`, read one shard at a time), and
the BSQ VAE's official .pth, which nests the weights under "vae" (`torch.load(...)["vae"]`, official
infinity/models/bsq_vae/vae.py `vae_model`), in either key spelling the official `load_cnn` accepts (`x.conv.weight`
or `x.weight` for the wrapped convs, `x.norm.weight` or `x.weight` for the GroupNorms). The variant is told from the
shapes only: bits per token of the transformer (`word_embed` columns) against the VAE's codebook dimension (its
`encoder.conv_out` rows): equal (2B, d = 32), or 4 d with a stride-8 VAE (8B, spatial patchify, d = 14:
models/infinity.py `InfinityModel.patchify`).

Layout: official FoundationVision/Infinity infinity/models/infinity.py and bsq_vae/flux_vqgan.py (see
models/infinity.py, models/bsq_vae.py)."""
from __future__ import annotations

import os
import re

import torch
import torch.nn as nn

from .bsq_vae import BSQVAE, BSQVAEConfig
from .checkpoint import (DESCRIPTIONS, CheckpointError, check_keys, checkpoint_kind, is_sharded, materialise,
                         read_sharded_state_dict, read_state_dict)
from .infinity import (CAST_OPERATIONS, SQUARE_PN, InfinityConfig, InfinityModel, InfinityTransformer,
                       template_rope_grid, template_scales)

_BLOCK = re.compile(r"^block_chunks\.(\d+)\.module\.(\d+)\.")
_ZERO_BUFFERS = ("zero_k_bias",)
# Constants the official Infinity.load_state_dict drops from a file before loading (masks and lengths rebuilt from
# the schedule; infinity/models/infinity.py): derived values, not weights, so a file holding them loads as there.
DERIVED_BUFFERS = ("lvl_1L", "attn_bias_for_masking", "Infinity_visible_kvlen", "Infinity_invisible_qlen")
VAE_ENTRY = ("vae",)  # where the official BSQ VAE .pth holds its weights
_MASKS = ("quantizer.lfq.mask", "quantize.lfq.mask")  # the official quantiser is registered under both names


def check_pn(pn) -> None:
    """Refuse a `pn` (the official pixel-count name of a schedule) that has no schedule: ValueError naming it and
    the legal values."""
    if not isinstance(pn, str) or pn not in SQUARE_PN:
        raise ValueError(f"pn must be one of {', '.join(repr(p) for p in SQUARE_PN)} (the official schedules), got "
                         f"{pn!r}")


def infer_infinity_config(sd: dict, pn: str = "1M", h_div_w: float = 1.0) -> InfinityConfig:
    """InfinityConfig of an official state dict (the schedule of the aspect-ratio template `h_div_w` at `pn`,
    models/infinity.py `template_scales`: 1:1 by default). Raises CheckpointError (no path) when the tensors do
    not describe an Infinity transformer in the block-chunk layout, ValueError for a template or pn that is not
    official."""
    check_pn(pn)
    scales, rope_grid = template_scales(h_div_w, pn), template_rope_grid(h_div_w)
    try:
        C = sd["pos_start"].shape[-1]
        chunks = {}
        for k in sd:
            m = _BLOCK.match(k)
            if m:
                chunks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
        if not chunks:
            raise KeyError("block_chunks.0.module.0.*")
        per = {len(v) for v in chunks.values()}
        if len(per) != 1 or sorted(chunks) != list(range(len(chunks))):
            raise KeyError("block_chunks.{c}.module.{j}: unequal chunks")
        b0 = "block_chunks.0.module.0."
        bits = sd["word_embed.weight"].shape[1]
        head = tuple(sd["head.weight"].shape)
        if head != (2 * bits, C):
            raise CheckpointError(f"head.weight is {list(head)}, expected [{2 * bits}, {C}] (2 logits per bit of the "
                                  f"{bits}-bit tokens, width {C}: word_embed.weight is "
                                  f"{list(sd['word_embed.weight'].shape)})")
        return InfinityConfig(
            width=C, depth=len(chunks) * per.pop(), heads=sd[b0 + "sa.scale_mul_1H11"].shape[1],
            block_chunks=len(chunks), ffn_hidden=sd[b0 + "ffn.fc1.weight"].shape[0],
            text_channels=sd["text_norm.weight"].shape[0], text_maxlen=sd["cfg_uncond"].shape[0], bits=bits,
            scales=scales, rope_grid=rope_grid, levels=sd["lvl_embed.weight"].shape[0])
    except KeyError as e:
        raise CheckpointError(f"not an Infinity transformer state dict (block_chunks layout): missing {e}") from None


def infer_bsq_vae_config(sd: dict) -> BSQVAEConfig:
    """BSQVAEConfig of an official BSQ VAE state dict (either key spelling: `x.conv.weight` or `x.weight`). Raises
    CheckpointError when it is not one."""
    def conv(name):
        return sd[f"{name}.conv.weight"] if f"{name}.conv.weight" in sd else sd[f"{name}.weight"]

    try:
        ch = conv("encoder.conv_in").shape[0]
        levels = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.down.")})
        mult = tuple(conv(f"encoder.down.{lv}.block.0.conv1").shape[0] // ch for lv in levels)
        blocks = {int(k.split(".")[4]) for k in sd if k.startswith("encoder.down.0.block.")}
        downs = sum(any(k.startswith(f"encoder.down.{lv}.downsample.") for k in sd) for lv in levels)
        return BSQVAEConfig(ch=ch, ch_mult=mult, num_res_blocks=len(blocks),
                            bits=conv("encoder.conv_out").shape[0], downsample=2 ** downs)
    except (KeyError, IndexError, ValueError) as e:
        raise CheckpointError(f"not a BSQ VAE state dict: missing {e}") from None


def _check_zero_buffers(path, sd):
    for k, v in sd.items():
        if k.endswith(_ZERO_BUFFERS) and bool(v.float().abs().max() > 0):
            raise CheckpointError(f"{path}: buffer {k} must be zero (the official constant), the file holds other values")


def _expect(path, sd: dict, wanted: str) -> None:
    found = checkpoint_kind(sd)
    if found != wanted:
        raise CheckpointError(f"{path}: expected {DESCRIPTIONS[wanted]}, but this file looks like "
                              f"{DESCRIPTIONS[found]} ({len(sd)} tensors, e.g. {list(sd)[:3]})")


# The depth blocks' linear weights (`InfinityTransformer.cast_layers`) by key: what fp8 storage stores in fp8.
CAST_WEIGHT = re.compile(r"^block_chunks\.\d+\.module\.\d+\.(sa\.(mat_qkv|proj)|ca\.(mat_q|mat_kv|proj)|ffn\.(fc1|fc2))"
                         r"\.weight$")


def read_infinity_state_dict(path, dtype: torch.dtype | None = None, *, mmap: bool = True,
                             weight_dtype: torch.dtype | None = None) -> dict:
    """The transformer's tensors of `path`: a flat file (.pth / .safetensors) or a Hugging Face sharded checkpoint
    (its `*.index.json` or the folder holding it; see `checkpoint.read_sharded_state_dict`), floating tensors in
    `dtype` (None: as stored), the depth blocks' linear weights (`CAST_WEIGHT`) in `weight_dtype` where given (each
    cast as it is read, so the peak stays the loaded tensors plus one). Raises CheckpointError naming the file for an
    unreadable or unsafe file and for one holding another model (named, e.g. a BSQ VAE or a VAR transformer)."""
    read = read_sharded_state_dict if is_sharded(path) else read_state_dict
    if weight_dtype is None or weight_dtype == dtype:
        sd = read(path, dtype, mmap=mmap)
    else:
        sd = read(path, dtype, mmap=mmap, keep=lambda k: not CAST_WEIGHT.match(k))
        sd.update(read(path, weight_dtype, mmap=mmap, keep=lambda k: bool(CAST_WEIGHT.match(k))))
    for name in DERIVED_BUFFERS:
        sd.pop(name, None)
    _expect(path, sd, "infinity")
    return sd


COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
WEIGHT_DTYPES = (*COMPUTE_DTYPES, torch.float8_e4m3fn, torch.float8_e5m2)


def check_dtypes(dtype, weight_dtype) -> None:
    """Refuse (ValueError naming the argument and the allowed dtypes) a compute `dtype` the transformer cannot run
    in, and a `weight_dtype` it cannot store its block weights in (float8_e8m0fnu has no sign bit, integers and
    complex numbers are not weights)."""
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"dtype {dtype!r}: Infinity computes in {', '.join(map(str, COMPUTE_DTYPES))} (store the "
                         "block weights in fp8 with weight_dtype=torch.float8_e4m3fn instead)")
    if weight_dtype is not None and weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weight_dtype {weight_dtype!r}: the block weights can be stored in "
                         f"{', '.join(map(str, WEIGHT_DTYPES))}")


def load_infinity_transformer(path, *, pn: str = "1M", h_div_w: float = 1.0, device="cpu", dtype=torch.float32,
                              mmap: bool = True, operations=nn, weight_dtype: torch.dtype | None = None
                              ) -> InfinityTransformer:
    """An Infinity transformer from `path` (see `read_infinity_state_dict`) at the schedule of template `h_div_w`
    and size `pn` (`infer_infinity_config`), built with `operations` and stored as `infinity_transformer_from`
    says. Raises CheckpointError naming `path` for a file that is not one, or whose keys or shapes differ from the
    inferred model (counts and first keys named); ValueError for a template or pn that is not official
    (`check_pn`) and for dtypes `check_dtypes` refuses."""
    check_pn(pn)
    check_dtypes(dtype, weight_dtype)
    sd = read_infinity_state_dict(path, dtype, mmap=mmap, weight_dtype=weight_dtype)
    return infinity_transformer_from(path, sd, pn=pn, h_div_w=h_div_w, device=device, dtype=dtype,
                                     operations=operations, weight_dtype=weight_dtype)


def infinity_transformer_from(path, sd: dict, *, pn: str = "1M", h_div_w: float = 1.0, device="cpu",
                              dtype=torch.float32, operations=nn, weight_dtype: torch.dtype | None = None):
    """An InfinityTransformer from the tensors `sd` read from `path` (named in errors), checked as in
    `load_infinity_transformer`; a tensor that is not floating point is refused by key and dtype. Computes in
    `dtype`; with `weight_dtype` (e.g. torch.float8_e4m3fn) the depth blocks' linear weights (`cast_layers`) are
    stored in it, which needs `operations` whose Linear casts them per use (`layer_parameters`): torch.nn then
    becomes models/infinity.py `CAST_OPERATIONS`. `sd` itself is not changed. ValueError for dtypes `check_dtypes`
    refuses."""
    check_dtypes(dtype, weight_dtype)
    if weight_dtype is not None and weight_dtype != dtype and operations is nn:
        operations = CAST_OPERATIONS  # torch.nn.Linear cannot multiply weights of another dtype
    check_pn(pn)
    try:
        cfg = infer_infinity_config(sd, pn, h_div_w)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    with torch.device("meta"):
        model = InfinityTransformer(cfg, operations)
    check_keys(path, model, sd)
    for k, v in sd.items():
        if not v.is_floating_point():
            raise CheckpointError(f"{path}: {k} is {str(v.dtype).replace('torch.', '')}, expected a floating-point "
                                  "tensor (float32, bf16 or fp16): the file is damaged or not Infinity weights")
    _check_zero_buffers(path, sd)
    if weight_dtype is None or weight_dtype == dtype:
        return materialise(model, sd, device, dtype)
    cast = {id(m) for m in model.cast_layers()}
    stored = {f"{name}.weight" for name, m in model.named_modules() if id(m) in cast}
    sd = dict(sd)  # the caller's dict keeps its tensors
    for k in list(sd):  # tensors not read in their dtype (`read_infinity_state_dict`): cast one at a time
        want = weight_dtype if k in stored else dtype
        if sd[k].dtype != want:
            sd[k] = sd[k].to(want)
    return materialise(model, sd, device, None)


def _wrapped_name(key: str, own) -> str:
    """`key` in the pack's (the official module's) spelling: the plain `x.weight` / `x.bias` of a wrapped conv or
    GroupNorm becomes `x.conv.*` / `x.norm.*` where that name exists (official vae.py `load_cnn`)."""
    if key in own:
        return key
    stem, _, leaf = key.rpartition(".")
    if leaf in ("weight", "bias"):
        for wrap in ("conv", "norm"):
            if f"{stem}.{wrap}.{leaf}" in own:
                return f"{stem}.{wrap}.{leaf}"
    return key


def read_bsq_vae_state_dict(path, dtype: torch.dtype | None = None, *, mmap: bool = True) -> dict:
    """The BSQ VAE's tensors of `path`, floating ones in `dtype` (None: as stored; cast tensor by tensor as they are
    read, `checkpoint.read_state_dict`, so a half-precision load never holds the float32 file too): the official .pth (weights under "vae"; the file is memory-mapped
    and nothing else of it is read), a flat .pth or .safetensors; keys in the pack's spelling (`encoder.conv_in.conv.
    weight`; plain `encoder.conv_in.weight` is renamed, as the official loader does). Raises CheckpointError naming
    the file for an unreadable or unsafe one, one that holds another model (named), or one where both spellings
    give the same tensor."""
    sd = read_state_dict(path, dtype, mmap=mmap, entry=VAE_ENTRY)
    _expect(path, sd, "bsq-vae")
    try:
        cfg = infer_bsq_vae_config(sd)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    with torch.device("meta"):
        own = BSQVAE(cfg).state_dict()
    out = {}
    for k, v in sd.items():
        name = _wrapped_name(k, own)
        if name in out:
            raise CheckpointError(f"{path}: {k} and {name} are both in the file (two spellings of one tensor)")
        out[name] = v
    return out


def load_bsq_vae(path, *, device="cpu", dtype=torch.float32, mmap: bool = True) -> BSQVAE:
    """A BSQ VAE from `path` (see `read_bsq_vae_state_dict`). The lfq mask buffers are constants 2^(d-1..0): one or
    both may be absent (the official loader then keeps its own), those present must hold that value. Raises
    CheckpointError naming `path` as `load_infinity_transformer`. The VAE's `source_name` is the file's name."""
    sd = read_bsq_vae_state_dict(path, dtype, mmap=mmap)
    cfg = infer_bsq_vae_config(sd)
    expected = 2 ** torch.arange(cfg.bits - 1, -1, -1)
    for k in _MASKS:
        if k in sd and not torch.equal(sd[k].long(), expected):
            raise CheckpointError(f"{path}: buffer {k} must be 2^(d-1..0) for d = {cfg.bits}")
        sd[k] = expected.clone()
    with torch.device("meta"):
        model = BSQVAE(cfg)
    check_keys(path, model, sd)
    vae = materialise(model, sd, device, dtype)
    vae.source_name = os.path.basename(os.fspath(path))  # named when its decoder gives NaN/inf (models/base.py)
    return vae


def pair_check(transformer_path, vae_path, transformer_bits: int, vae: BSQVAEConfig) -> None:
    """Refuse a transformer and VAE that do not belong together (CheckpointError naming both files): the
    transformer's bits per token must equal the VAE's d (2B: 32), or be 4 d with a stride-8 VAE (the 8B's spatial
    patchify: d = 14, 56 bits per token)."""
    if transformer_bits == vae.bits:
        return
    if transformer_bits == 4 * vae.bits and vae.downsample == 8:
        return  # the 8B: 2 x 2 patches of the stride-8 VAE's positions per token
    raise CheckpointError(f"{transformer_path} takes {transformer_bits} bits per token, but {vae_path} is a "
                          f"{vae.bits}-bit BSQ VAE (stride {vae.downsample}): these files do not belong together "
                          "(Infinity 2B: infinity_vae_d32reg.pth; 8B: infinity_vae_d56_f8_14_patchify.pth)")


def load_infinity(transformer_path, vae_path, *, pn: str = "1M", h_div_w: float = 1.0, device="cpu",
                  dtype=torch.float32, mmap: bool = True, vae_dtype: torch.dtype | None = None, operations=nn,
                  weight_dtype: torch.dtype | None = None) -> InfinityModel:
    """Transformer + VAE as an `InfinityModel` at the schedule of template `h_div_w` (h / w, models/infinity.py
    TEMPLATES) and size `pn`; the transformer computes in `dtype` (its block linear layers built by `operations`,
    their weights stored in `weight_dtype`: `infinity_transformer_from`), the BSQ VAE's in `vae_dtype` (default: `dtype`;
    its decoder overflows float16 on real images, so fp16 transformers want a float32 or bf16 VAE). Raises CheckpointError (see the two loaders and `pair_check`: a VAE that does not
    match the transformer is refused naming both files, before the transformer is built); ValueError for a
    template or pn that is not official, or dtypes `check_dtypes` refuses (before any file is read)."""
    check_pn(pn)
    template_scales(h_div_w, pn)
    check_dtypes(dtype, weight_dtype)
    sd = read_infinity_state_dict(transformer_path, dtype, mmap=mmap, weight_dtype=weight_dtype)
    if "word_embed.weight" not in sd:
        raise CheckpointError(f"{transformer_path}: not an Infinity transformer state dict: missing 'word_embed.weight'")
    vae = load_bsq_vae(vae_path, device=device, dtype=dtype if vae_dtype is None else vae_dtype, mmap=mmap)
    pair_check(transformer_path, vae_path, sd["word_embed.weight"].shape[1], vae.config)
    t = infinity_transformer_from(transformer_path, sd, pn=pn, h_div_w=h_div_w, device=device, dtype=dtype,
                                  operations=operations, weight_dtype=weight_dtype)
    return InfinityModel(t, vae)


__all__ = ["CAST_WEIGHT", "check_dtypes", "check_pn", "infer_bsq_vae_config", "infer_infinity_config", "infinity_transformer_from",
           "load_bsq_vae", "load_infinity", "load_infinity_transformer", "pair_check", "read_bsq_vae_state_dict",
           "read_infinity_state_dict"]
