"""Safe checkpoint reading and recognition of what a file holds.

Pickled files are first checked by the pack itself (`pickle_scan`: every global the pickles name must be on a
fixed list of what state dicts need), then read through torch's own load function with weights_only=True, even
where another pack has replaced `torch.load` (e.g. with a wrapper forcing weights_only=False): tensors and
containers, never code. The format is taken from the file's first bytes, not its extension, so a renamed file
still loads (or fails with a message that says what it really is).
"""
from __future__ import annotations

import inspect
import json
import math
import os
import pickle
import re
import struct
import warnings
import zipfile

import torch
import torch.serialization

from .pickle_scan import PickleRefused, PickleUnreadable, scan_checkpoint
from .torch_compat import origin, report_once


class CheckpointError(ValueError):
    """A checkpoint file that cannot serve the requested purpose; the message names the file."""


class CheckpointWarning(UserWarning):
    """A file's name, folder or sidecar config.json disagrees with what its weights record; the weights are used.
    The message names the file, both values and the one used."""


def warn_disagreement(message: str) -> None:
    """Warn (CheckpointWarning) that a sidecar file or a name disagrees with what the weights record; `message`
    names the file and both values. The loaders go on with the weights' own record."""
    warnings.warn(message, CheckpointWarning, stacklevel=3)


def name_claims(path) -> dict:
    """What a checkpoint's file name and folder name say about it, from the official naming: `d16` (depth),
    `256`/`512`/`1024` (resolution), `AR` (Switti-AR), `ch160v4096z32` (VQ-VAE channels, codebook, latent).
    Only explicit tokens count: e.g. `Switti-1024-AR/model.safetensors` -> {"reso": 1024, "ar": True}."""
    path = os.fspath(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    claims, sources = {}, {}
    for part in (os.path.basename(os.path.dirname(path)), stem):
        for token in re.split(r"[^A-Za-z0-9]+", part.lower()):
            found = {}
            if m := re.fullmatch(r"d(\d{1,3})", token):
                found["depth"] = int(m.group(1))
            elif token in ("256", "512", "1024"):
                found["reso"] = int(token)
            elif token == "ar":
                found["ar"] = True
            elif m := re.fullmatch(r"ch(\d+)v(\d+)z(\d+)", token):
                found.update(ch=int(m.group(1)), vocab=int(m.group(2)), z=int(m.group(3)))
            for key, value in found.items():
                claims[key], sources[key] = value, part
    claims["sources"] = sources
    return claims


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
    # safetensors before the legacy pickle's 0x80 opcode: a safetensors header length whose low byte is 0x80 (e.g.
    # 5760 bytes) also starts with 0x80, while a pickle never has '{' as its 9th byte (protocol 2 begins 80 02 8a 0a
    # and the 10-byte magic number)
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and header_len < 100_000_000:
            return "safetensors"
    if head[:1] == b"\x80":
        return "torch-legacy"
    for sig, what in _SIGNATURES.items():
        if head.startswith(sig):
            raise CheckpointError(f"{path}: this is {what}, not a model checkpoint")
    raise CheckpointError(f"{path}: not a .safetensors or PyTorch checkpoint (unrecognised file header)")


SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}


def _safetensors_header(path: str) -> tuple[dict, int]:
    """The JSON header (tensor name -> dtype, shape, data_offsets) and the offset of the data, checked against the
    file size."""
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
    header.pop("__metadata__", None)
    ends = [v["data_offsets"][1] for v in header.values()]
    expected = 8 + header_len + max(ends, default=0)
    if size < expected:
        raise CheckpointError(f"{path}: truncated .safetensors file: {size:,} bytes, the header promises "
                              f"{expected:,} (an incomplete download?)")
    return header, 8 + header_len


def _wants_cast(t_dtype: torch.dtype, dtype: torch.dtype | None) -> bool:
    return dtype is not None and t_dtype.is_floating_point and t_dtype != dtype


CAST_CHUNK_BYTES = 4 << 20   # contiguous tensors are cast through a buffer of this size


class _Reader:
    """Reads byte ranges of a file into fresh tensors or one reusable scratch buffer, so that casting a file's
    tensors costs the cast model plus the largest tensor, never the whole file."""

    def __init__(self, path: str):
        self.path, self.file, self.scratch = path, open(path, "rb"), torch.empty(0, dtype=torch.uint8)

    def read(self, offset: int, nbytes: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Bytes [offset, offset + nbytes) into `out` (uint8 view of a fresh tensor) or the scratch buffer."""
        if out is None:
            if self.scratch.numel() < nbytes:
                self.scratch = torch.empty(nbytes, dtype=torch.uint8)
            out = self.scratch[:nbytes]
        if nbytes:
            self.file.seek(offset)
            got = self.file.readinto(memoryview(out.numpy()).cast("B"))
            if got != nbytes:
                raise CheckpointError(f"{self.path}: truncated file: {nbytes:,} bytes expected at offset "
                                      f"{offset:,}, {got:,} found (an incomplete download?)")
        return out

    def tensor(self, offset: int, dtype: torch.dtype, shape, stride=None, storage_offset: int = 0,
               storage_bytes: int | None = None, cast: torch.dtype | None = None) -> torch.Tensor:
        """A tensor stored at `offset` (contiguous, or a view of a storage of `storage_bytes`), in `cast` when set
        (floating tensors only), each element read once."""
        shape = tuple(shape)
        if stride is None:
            numel = math.prod(shape)
            if not _wants_cast(dtype, cast):  # straight into the final tensor
                out = torch.empty(shape, dtype=dtype)
                self.read(offset, numel * out.element_size(), out.view(-1).view(torch.uint8))
                return out
            out = torch.empty(shape, dtype=cast)
            flat, step = out.view(-1), max(1, CAST_CHUNK_BYTES // dtype.itemsize)
            for start in range(0, numel, step):  # cast through a small buffer: no full-size stored copy
                n = min(step, numel - start)
                flat[start:start + n].copy_(self.read(offset + start * dtype.itemsize, n * dtype.itemsize).view(dtype))
            return out
        raw = self.read(offset, storage_bytes).view(dtype)
        view = raw.as_strided(shape, tuple(stride), storage_offset)
        return view.to(cast if _wants_cast(dtype, cast) else dtype, copy=True, memory_format=torch.contiguous_format)

    def close(self):
        self.file.close()
        self.scratch = None


def _read_safetensors(path: str, dtype: torch.dtype | None, mmap: bool, skip) -> dict[str, torch.Tensor]:
    # safe_open, not safetensors.torch.load_file: packs replace load_file process-wide (comfyui-faster-loading
    # reads the whole file into memory instead of mapping it)
    from safetensors import SafetensorError, safe_open

    header, data_start = _safetensors_header(path)
    try:
        dtypes = {k: SAFETENSORS_DTYPES[v["dtype"]] for k, v in header.items() if k not in skip}
    except KeyError as e:
        raise CheckpointError(f"{path}: tensor dtype {e} is not supported") from None
    if mmap and not any(_wants_cast(t, dtype) for t in dtypes.values()):
        try:
            with safe_open(path, framework="pt") as f:  # memory-mapped: no copy, pages read when used
                sd = {k: f.get_tensor(k) for k in f.keys() if k not in skip}
        except SafetensorError as e:
            raise CheckpointError(f"{path}: damaged .safetensors file ({e})") from None
        return sd
    reader = _Reader(path)
    try:
        return {k: reader.tensor(data_start + header[k]["data_offsets"][0], dtypes[k], header[k]["shape"],
                                 cast=dtype) for k in dtypes}
    finally:
        reader.close()


REFUSED = ("{path}: refused to load: the pickle contains objects other than tensors ({detail}). Only plain state "
           "dicts are accepted, because a pickle can run code; convert the file to .safetensors with a tool you "
           "trust")


def _is_torchs_load(fn) -> bool:
    # defined in torch/serialization.py itself: a wrapper elsewhere has other globals, even with functools.wraps
    # (which copies __module__ and __name__), and no file path comparison is needed
    code = getattr(fn, "__code__", None)
    return code is not None and code.co_name == "load" and getattr(fn, "__globals__", None) is vars(torch.serialization)


def _wrapped(fn, depth: int = 8):
    """fn and what it wraps, as far as that can be seen: __wrapped__ (functools.wraps) and closure cells."""
    seen, todo = [], [fn]
    while todo and len(seen) < depth:
        f = todo.pop(0)
        if f in seen or not callable(f):
            continue
        seen.append(f)
        todo.append(getattr(f, "__wrapped__", None))
        todo.extend(c.cell_contents for c in (getattr(f, "__closure__", None) or ()) if _filled(c))
    return seen


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


def torch_load_function():
    """(torch's own load function or None, [(name, replacement)] for torch.load / torch.serialization.load where
    they are not torch's). Other packs replace `torch.load` process-wide (to force weights_only=False, or to add
    arguments); torch's function is usually still torch.serialization.load, or is found behind a wrapper that keeps
    it reachable (functools.wraps' __wrapped__, a closure)."""
    names = (("torch.load", torch.load), ("torch.serialization.load", torch.serialization.load))
    replaced = [(name, fn) for name, fn in names if not _is_torchs_load(fn)]
    for fn in (torch.serialization.load, torch.load):
        for candidate in _wrapped(fn):
            if _is_torchs_load(candidate):
                return candidate, replaced
    return None, replaced


def _report(replaced, own) -> None:
    for name, fn in replaced:
        if own is not None:
            report_once((name, fn), "[scalewise] %s is replaced by %s: the pack reads checkpoints with torch's "
                        "own load function (weights_only=True) after its own pickle check, whatever the "
                        "replacement does", name, origin(fn))
        else:
            report_once((name, fn), "[scalewise] %s is replaced by %s and torch's own load function cannot be "
                        "reached: the pack calls the replacement after its own pickle check, which refuses any "
                        "code", name, origin(fn))


def _call_load(fn, source, mmap: bool):
    kwargs = {"map_location": "cpu", "weights_only": True, "mmap": mmap}
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = None
    if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}   # e.g. a replacement without mmap
    if not mmap:
        kwargs.pop("mmap", None)
    return fn(source, **kwargs)


def _torch_load(path: str, source, kind: str, mmap: bool = False):
    """The object of a checked pickle file (`source`: the path, or an open file), read on the CPU."""
    try:
        scan_checkpoint(path, kind)
    except PickleRefused as e:
        raise CheckpointError(REFUSED.format(path=path, detail=e.detail)) from None
    except (PickleUnreadable, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: truncated or damaged PyTorch file ({str(e).splitlines()[0]})") from None
    own, replaced = torch_load_function()
    _report(replaced, own)
    try:
        return _call_load(own or torch.load, source, mmap)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))  # what the pickle wanted to call, e.g. builtins.exec
        detail = f"it refers to {found.group(1)}" if found else re.sub(r"\x1b\[[0-9;]*m", "", str(e).splitlines()[0])
        raise CheckpointError(REFUSED.format(path=path, detail=detail)) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: truncated or damaged PyTorch file ({str(e).splitlines()[0]})") from None


def _zip_record_offsets(path: str) -> dict[str, int]:
    """File offset of the data of every stored record ('.../data/<key>') of a torch zip checkpoint."""
    offsets = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for info in archive.infolist():
            parts = info.filename.split("/")
            if len(parts) >= 2 and parts[-2] == "data" and info.compress_type == zipfile.ZIP_STORED:
                f.seek(info.header_offset)
                local = f.read(30)
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                offsets[parts[-1]] = info.header_offset + 30 + name_len + extra_len
    return offsets


def _tensors_in(obj, depth: int = 0):
    """Every tensor of a loaded checkpoint object (nested dicts, lists and tuples: a training dump's optimizer
    state), depth-first."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 16 and isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors_in(v, depth + 1)
    elif depth < 16 and isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors_in(v, depth + 1)


def _cast_from_zip(path: str, mapped: dict, dtype: torch.dtype | None, keys=None, every=None) -> dict | None:
    """The memory-mapped tensors of a torch zip file re-read through plain file reads and cast one at a time: the
    mapping's pages are never touched, so they never count as the process's memory. Storage i of the mapping
    starts at base + offset of record i (checked over every tensor of the file: `every`, default the values of
    `mapped`); `keys` (default: all) are read, in `dtype` (None: as stored, a copy). None when that layout does not
    hold (then the caller casts from the mapping)."""
    storages = {}
    for t in (mapped.values() if every is None else every):
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            storages.setdefault(storage.data_ptr(), storage.nbytes())
    offsets = sorted(_zip_record_offsets(path).values())
    pointers = sorted(storages)
    if len(offsets) != len(pointers) or len({p - o for p, o in zip(pointers, offsets)}) > 1:
        return None
    base = pointers[0] - offsets[0] if pointers else 0
    reader = _Reader(path)
    try:
        out = {}
        for k in mapped if keys is None else keys:
            t = mapped[k]
            storage = t.untyped_storage()
            out[k] = reader.tensor(storage.data_ptr() - base, t.dtype, t.shape, t.stride(), t.storage_offset(),
                                   storage.nbytes(), cast=dtype)
        return out
    finally:
        reader.close()


def _cast_each(sd: dict, dtype: torch.dtype | None) -> dict:
    """Casts floating tensors one at a time, dropping each original as soon as its copy exists."""
    out = {}
    for k in list(sd):
        t = sd.pop(k)
        out[k] = t.to(dtype) if isinstance(t, torch.Tensor) and _wants_cast(t.dtype, dtype) else t
        del t
    return out


def _select_entry(obj, entry: tuple[str, ...]):
    """obj[entry[0]][entry[1]]... when obj nests a dict there (a training dump), else None."""
    for name in entry:
        if not isinstance(obj, dict) or not isinstance(obj.get(name), dict):
            return None
        obj = obj[name]
    return obj


def _read_pickle(path: str, kind: str, dtype: torch.dtype | None, mmap: bool, skip, entry=()) -> dict:
    # mmap needs a path, and torch.load hands any path ending in .safetensors to safetensors: a renamed pickle
    # is read through a file object instead (whole, as without mmap). A file that may be a training dump
    # (`entry`) is always mapped, so that what the dump holds beside the model (optimizer state, a VQ-VAE copy)
    # is never read; without mmap the model's tensors are then copied out through plain file reads.
    mappable = kind == "torch-zip" and not path.lower().endswith(".safetensors")
    mapped = mappable and (mmap or bool(entry) or skip.keep is not None)  # keep: the rest is never read either
    if mapped:
        obj = _torch_load(path, path, kind, mmap=True)  # memory-mapped: the pickle is read, the tensor data is not
    else:
        with open(path, "rb") as f:  # a file object: torch.load must not dispatch on the extension
            obj = _torch_load(path, f, kind)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    everything = obj
    if entry and (inner := _select_entry(obj, entry)) is not None:
        obj = inner
    obj = {k: v for k, v in obj.items() if k not in skip}
    nested = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if nested:
        hint = (" (a training checkpoint? it nests the model under 'trainer')" if "trainer" in nested else
                " (this is Infinity's BSQ VAE, which nests the VAE under 'vae': pick it in vae_name of Load Infinity "
                "Model)" if "vae" in nested else "")
        raise CheckpointError(f"{path}: expected a flat state dict of tensors, but entries {nested[:5]} are "
                              f"containers{hint}")
    copy = mapped and not mmap  # mapped only to leave the rest of a dump unread: the caller asked for no mmap
    if mapped and (copy or any(_wants_cast(t.dtype, dtype) for t in obj.values())):
        cast = _cast_from_zip(path, obj, dtype, keys=list(obj), every=list(_tensors_in(everything)))
        if cast is not None:
            return cast
    del everything  # the originals must be freed as _cast_each drops them
    if copy:  # the layout check failed: copy from the mapping, tensor by tensor (only the model's pages are read)
        return {k: (t.to(dtype) if _wants_cast(t.dtype, dtype) else t.clone()) for k, t in obj.items()}
    return _cast_each(obj, dtype)


class _KeyFilter:
    """The keys a read leaves out: those in `skip`, and those `keep` (a predicate on names, None: all) rejects."""

    def __init__(self, skip, keep):
        self.skip, self.keep = set(skip), keep

    def __contains__(self, key) -> bool:
        return key in self.skip or (self.keep is not None and not self.keep(key))


def read_state_dict(path: str, dtype: torch.dtype | None = None, *, mmap: bool = True,
                    skip=(), entry: tuple[str, ...] = (), keep=None) -> dict[str, torch.Tensor]:
    """Tensors of a flat state dict from .safetensors or a PyTorch pickle, on the CPU, without the keys in `skip`
    and, when `keep` (a predicate on key names) is given, without the keys it rejects: those are never read nor cast
    (e.g. the decoder of a full encoder-decoder file whose encoder alone is wanted; a PyTorch zip file is then
    memory-mapped whatever `mmap` says, as for `entry`, and the kept tensors copied out with mmap=False).

    dtype: floating-point tensors are cast to it (None = as stored), one tensor at a time, so the peak memory is
    the loaded state dict plus the largest tensor, not the file plus the model. mmap: map the file where the
    format allows (.safetensors, PyTorch zip), so tensors kept in their stored dtype cost no copy; False (ComfyUI's
    --disable-mmap) reads every tensor into memory instead. Legacy (pre-zip) pickles are read whole.

    Pickles are checked first (every global they name must be one plain state dicts need: `pickle_scan`), then
    read with torch's own load function and weights_only=True, also where another pack replaced torch.load: no
    code in the file runs. Raises CheckpointError naming
    `path` when the file is missing or empty, is not a .safetensors/PyTorch file (the message says what it looks
    like), is truncated or damaged, contains objects other than tensors (the class it refers to is named), or is
    not a flat name -> tensor dict (e.g. a training checkpoint nesting the model under 'trainer').

    entry: where a training dump nests the model, e.g. ("trainer", "var_wo_ddp") for VAR's and VAR-CLIP's
    train.py dumps (`{'trainer': {'var_wo_ddp': state dict, 'vae_local': ..., 'var_opt': ...}, 'args': ...}`): a
    file holding a dict there gives that state dict, anything else is read as a flat file. Such files are always
    memory-mapped (a zip file), so the dump's other entries are never read into memory; with mmap=False the
    model's tensors are copied out of the mapping by plain file reads."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    kind = _sniff(path)
    if kind == "safetensors":
        return _read_safetensors(path, dtype, mmap, _KeyFilter(skip, keep))
    return _read_pickle(path, kind, dtype, mmap, _KeyFilter(skip, keep), tuple(entry))


SHARD_INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")  # Hugging Face's, preferred first
SHARD_NAME = re.compile(r"-\d{5}-of-\d{5}\.(safetensors|bin)$")  # Hugging Face's shard file names


def is_shard_name(name: str) -> bool:
    """True for a Hugging Face shard file name (model-00001-of-00002.safetensors, pytorch_model-00001-of-00002.bin)."""
    return bool(SHARD_NAME.search(name))


def shard_index_name(shard: str) -> str:
    """The index JSON name of a shard's format: model.safetensors.index.json or pytorch_model.bin.index.json."""
    return SHARD_INDEX_NAMES[0] if shard.endswith(".safetensors") else SHARD_INDEX_NAMES[1]


def is_sharded(path) -> bool:
    """Whether `path` names a Hugging Face sharded checkpoint: a `*.index.json` file or a folder holding one."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return any(n.endswith(".index.json") for n in os.listdir(path))
    return path.lower().endswith(".index.json")


def _shard_index(path: str) -> str:
    if not os.path.isdir(path):
        return path
    found = sorted(n for n in os.listdir(path) if n.endswith(".index.json"))
    for name in SHARD_INDEX_NAMES:  # Hugging Face's own names, .safetensors first (its prefer_safe)
        if name in found:
            return os.path.join(path, name)
    if len(found) == 1:
        return os.path.join(path, found[0])
    raise CheckpointError(f"{path}: expected one *.index.json in the folder, found "
                          f"{found or 'none'}")


def read_sharded_state_dict(path, dtype: torch.dtype | None = None, *, mmap: bool = True,
                            skip=(), keep=None) -> dict[str, torch.Tensor]:
    """Tensors of a Hugging Face sharded checkpoint: `path` is its index JSON (`{"weight_map": {name: shard file}}`,
    e.g. model.safetensors.index.json or pytorch_model.bin.index.json) or the folder holding it (the .safetensors
    index preferred when both exist, as Hugging Face does). Each shard (.safetensors, or a .bin PyTorch pickle,
    checked and read weights_only as by `read_state_dict`) is read in turn, beside the index; floating tensors are
    cast to `dtype` one at a time. Raises CheckpointError naming the index or shard for a damaged index, a shard
    name outside the folder, a missing or unreadable shard, a listed tensor absent from its shard, or a tensor
    stored in two shards.

    keep: a predicate on tensor names, as for `read_state_dict` (e.g. the encoder of a full encoder-decoder): a shard
    whose listed tensors it all rejects is never opened, and the others give only the tensors it keeps."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file or folder")
    index = _shard_index(path)
    try:
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError("empty weight_map")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index}: not a sharded checkpoint index ({type(e).__name__}: {e})") from None
    folder, shards = os.path.dirname(index), {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or os.path.basename(shard) != shard or shard in ("", ".", ".."):
            raise CheckpointError(f"{index}: shard {shard!r} of {name} is not a file name in the index's folder")
        shards.setdefault(shard, []).append(name)
    skip, out = set(skip), {}
    for shard, names in shards.items():
        names = [n for n in names if n not in skip and (keep is None or keep(n))]
        if not names:
            continue
        shard_path = os.path.join(folder, shard)
        part = read_state_dict(shard_path, dtype, mmap=mmap, skip=skip, keep=keep)
        absent = [n for n in names if n not in part]
        if absent:
            raise CheckpointError(f"{shard_path}: {len(absent)} tensors the index {os.path.basename(index)} lists "
                                  f"here are missing: {', '.join(absent[:4])}{' ...' if len(absent) > 4 else ''}")
        twice = [n for n in part if n in out]
        if twice:
            raise CheckpointError(f"{shard_path}: tensors also stored in another shard: {', '.join(twice[:4])}")
        out.update(part)
        del part
    return out


def checkpoint_kind(sd: dict) -> str:
    """What a state dict holds, guessed from its keys: a key of `DESCRIPTIONS` ("infinity" (cfg_uncond, pos_start,
    block_chunks.*.sa), "bsq-vae" (Infinity's VAE, either key spelling, no codebook), "var", "var-clip" (VAR's network
    with `noise` and `cond_proj` in place of `class_emb`), "vqvae", "switti", other model kinds, "unknown"), for
    error messages and dispatch."""
    keys = sd.keys()

    def has(*names):
        return all(n in keys for n in names)

    def prefixed(prefix):
        return any(k.startswith(prefix) for k in keys)

    if has("cfg_uncond", "pos_start", "head.weight") and (prefixed("block_chunks.0.module.0.sa.")
                                                          or prefixed("blocks.0.sa.")):
        return "infinity"
    if (has("encoder.conv_in.conv.weight", "decoder.conv_out.conv.weight")
            or (has("encoder.conv_in.weight", "decoder.conv_out.weight") and prefixed("encoder.down.0.block.0.norm1.")
                and not prefixed("quantize.embedding") and not prefixed("quant_conv."))):
        return "bsq-vae"
    if has("class_emb.weight", "head.weight") and prefixed("blocks.0.attn.mat_qkv"):
        return "var"
    if has("cond_proj.weight", "noise.weight", "head.weight") and prefixed("blocks.0.attn.mat_qkv"):
        return "var-clip"
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
    "infinity": "an Infinity text-to-image transformer (infinity_2b_reg.pth, or the 8B's sharded folder)",
    "bsq-vae": "an Infinity BSQ VAE (infinity_vae_d32reg.pth or infinity_vae_d56_f8_14_patchify.pth)",
    "var": "a VAR transformer (var_d*.pth)",
    "var-clip": "a VAR-CLIP text-to-image transformer (VAR-CLIP's ar-ckpt-last.pth, or its model alone)",
    "vqvae": "a multi-scale VQ-VAE (vae_ch160v4096z32.pth or VQVAE-Switti)",
    "switti": "a Switti transformer",
    "stable-diffusion": "a Stable Diffusion checkpoint (load it with ComfyUI's checkpoint loader)",
    "flux-or-sd3": "a Flux/SD3 diffusion model (load it with ComfyUI's diffusion model loader)",
    "diffusers-unet": "a diffusers UNet",
    "clip-text-encoder": "a CLIP text encoder (belongs in models/clip or models/text_encoders)",
    "unknown": "an unrecognised model",
}


def expect_kind(path: str, sd: dict, wanted: str) -> None:
    """Raise CheckpointError naming `path`, what the file looks like and a hint, unless `checkpoint_kind(sd) == wanted`."""
    found = checkpoint_kind(sd)
    if found != wanted:
        raise CheckpointError(f"{path}: expected {DESCRIPTIONS[wanted]}, but this file looks like "
                              f"{DESCRIPTIONS[found]} ({len(sd)} tensors, e.g. {list(sd)[:3]})")


def check_keys(path: str, model: torch.nn.Module, sd: dict) -> None:
    """Strict key and shape comparison of `sd` against `model.state_dict()`. Raises CheckpointError naming `path`
    with the counts and first four of the missing, unexpected and wrong-shape keys."""
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


def materialise(module: torch.nn.Module, sd: dict, device, dtype: torch.dtype | None) -> torch.nn.Module:
    """Load `sd` into a module built on the meta device (strict, tensors assigned, not copied), then move it to
    `device`/`dtype` (None: each tensor's dtype in `sd`) in eval mode without gradients. Keys must already match
    (`check_keys`)."""
    module.load_state_dict(sd, strict=True, assign=True)
    return module.to(device=device, dtype=dtype).eval().requires_grad_(False)
