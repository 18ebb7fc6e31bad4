"""Safe checkpoint reading and recognition of what a file holds.

Pickled files are read only through `torch.load(weights_only=True)`: tensors and containers, never
code. The format is taken from the file's first bytes, not its extension, so a renamed file still
loads (or fails with a message that says what it really is).
"""
from __future__ import annotations

import json
import os
import pickle
import re
import struct
import zipfile

import torch


class CheckpointError(ValueError):
    """A checkpoint file that cannot serve the requested purpose; the message names the file."""


_SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"{": "a JSON/text file",
    b"<": "an HTML/XML page (an interrupted or failed download?)",
    b"version https://git-lfs": "a Git LFS pointer, not the weights (run `git lfs pull` or download the file itself)",
}


def _sniff(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); download it again")
    if head[:2] == b"PK":
        return "torch-zip"
    if head[:1] == b"\x80":
        return "torch-legacy"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and header_len < 100_000_000:
            return "safetensors"
    for sig, what in _SIGNATURES.items():
        if head.startswith(sig):
            raise CheckpointError(f"{path}: this is {what}, not a model checkpoint")
    raise CheckpointError(f"{path}: not a .safetensors or PyTorch checkpoint (unrecognised file header)")


def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        raw = f.read(header_len)
        if len(raw) < header_len:
            raise CheckpointError(f"{path}: truncated .safetensors file: {size:,} bytes, the header alone promises "
                                  f"{8 + header_len:,} (an incomplete download?)")
        try:
            header = json.loads(raw)
        except ValueError as e:
            raise CheckpointError(f"{path}: damaged .safetensors header ({e})") from None
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + header_len + max(ends, default=0)
    if size < expected:
        raise CheckpointError(f"{path}: truncated .safetensors file: {size:,} bytes, the header promises "
                              f"{expected:,} (an incomplete download?)")
    try:
        return load_file(path)
    except SafetensorError as e:
        raise CheckpointError(f"{path}: damaged .safetensors file ({e})") from None


def _read_pickle(path: str) -> dict:
    try:
        with open(path, "rb") as f:  # a file object: torch.load must not dispatch on the extension
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))  # what the pickle wanted to call, e.g. builtins.exec
        detail = f"it refers to {found.group(1)}" if found else re.sub(r"\x1b\[[0-9;]*m", "", str(e).splitlines()[0])
        raise CheckpointError(
            f"{path}: refused to load: the pickle contains objects other than tensors ({detail}). "
            "Only plain state dicts are accepted, because a pickle can run code; convert the file to "
            ".safetensors with a tool you trust") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: truncated or damaged PyTorch file ({str(e).splitlines()[0]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    return obj


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a flat state dict from .safetensors or a PyTorch pickle, on the CPU."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    kind = _sniff(path)
    sd = _read_safetensors(path) if kind == "safetensors" else _read_pickle(path)
    nested = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if nested:
        hint = " (a training checkpoint? it nests the model under 'trainer')" if "trainer" in nested else ""
        raise CheckpointError(f"{path}: expected a flat state dict of tensors, but entries {nested[:5]} are "
                              f"containers{hint}")
    return sd


def describe(sd: dict) -> str:
    """A short guess of what a state dict holds, for error messages and dispatch."""
    keys = sd.keys()

    def has(*names):
        return all(n in keys for n in names)

    def prefixed(prefix):
        return any(k.startswith(prefix) for k in keys)

    if has("class_emb.weight", "head.weight") and prefixed("blocks.0.attn.mat_qkv"):
        return "var"
    if has("quantize.embedding.weight", "encoder.conv_in.weight", "decoder.conv_out.weight"):
        return "vqvae"
    if has("text_pooler.weight", "head.weight") and prefixed("blocks.0.cross_attn"):
        return "switti"
    if prefixed("model.diffusion_model.") or prefixed("first_stage_model.") or prefixed("conditioner.embedders"):
        return "stable-diffusion"
    if prefixed("double_blocks.") or prefixed("joint_blocks."):
        return "flux-or-sd3"
    if prefixed("down_blocks.") and prefixed("up_blocks."):
        return "diffusers-unet"
    if prefixed("text_model.encoder.layers.") or prefixed("transformer.resblocks."):
        return "clip-text-encoder"
    return "unknown"


DESCRIPTIONS = {
    "var": "a VAR transformer (var_d*.pth)",
    "vqvae": "a multi-scale VQ-VAE (vae_ch160v4096z32.pth or VQVAE-Switti)",
    "switti": "a Switti transformer",
    "stable-diffusion": "a Stable Diffusion checkpoint (load it with ComfyUI's checkpoint loader)",
    "flux-or-sd3": "a Flux/SD3 diffusion model (load it with ComfyUI's diffusion model loader)",
    "diffusers-unet": "a diffusers UNet",
    "clip-text-encoder": "a CLIP text encoder (belongs in models/clip or models/text_encoders)",
    "unknown": "an unrecognised model",
}


def expect_kind(path: str, sd: dict, wanted: str) -> None:
    """Raise CheckpointError naming `path`, what the file looks like and a hint, unless `describe(sd) == wanted`."""
    found = describe(sd)
    if found != wanted:
        raise CheckpointError(f"{path}: expected {DESCRIPTIONS[wanted]}, but this file looks like "
                              f"{DESCRIPTIONS[found]} ({len(sd)} tensors, e.g. {list(sd)[:3]})")


def check_keys(path: str, model: torch.nn.Module, sd: dict) -> None:
    """Strict key and shape comparison with a readable summary."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {tuple(own[k].shape)})"
             for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                parts.append(f"{len(items)} {label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}")
        raise CheckpointError(f"{path}: does not match the expected layout; " + "; ".join(parts))


def count_indices(sd: dict, pattern: str) -> int:
    """1 + the largest integer captured by `pattern`'s first group over the keys of `sd` (0 if no key matches):
    e.g. the depth from `blocks\\.(\\d+)\\.`."""
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in sd if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def materialise(module: torch.nn.Module, sd: dict, device, dtype: torch.dtype) -> torch.nn.Module:
    """Load `sd` into a module built on the meta device (strict, tensors assigned, not copied), then move it to
    `device`/`dtype` in eval mode without gradients. Keys must already match (`check_keys`)."""
    module.load_state_dict(sd, strict=True, assign=True)
    return module.to(device=device, dtype=dtype).eval().requires_grad_(False)
