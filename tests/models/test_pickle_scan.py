"""Issue 25 §2: the pack's own pickle check (models/pickle_scan.py) makes checkpoint reading safe whatever another
pack did to torch.load. Every payload below is first shown to be live (unpickled by torch.load with
weights_only=False, as an RMBG-style wrapper forces, it writes its marker file), then refused by read_state_dict
with that wrapper installed, without the marker ever appearing. Real state dicts (torch.save, zip and legacy) pass.
"""
import copyreg
import functools
import importlib
import io
import logging
import os
import pickle
import pickletools
import re
import struct
import tarfile
import zipfile

import pytest
import torch
import torch.serialization

from scalewise.models import checkpoint, pickle_scan
from scalewise.models.checkpoint import CheckpointError, read_state_dict
from scalewise.models.pickle_scan import STATE_DICT_GLOBALS, PickleRefused, scan_pickle
from scalewise.models import var_official_state_dict
from tiny import tiny_model

REAL_LOAD = torch.serialization.load


@pytest.fixture
def unsafe_torch_load(monkeypatch):
    """What the 'PyTorch 2.6 fix' of ComfyUI-RMBG (before 3.0) and ltdrdata/comfyui-unsafe-torch install at import:
    torch.load forced to weights_only=False for the whole process."""
    original = torch.load

    def forced(*args, **kwargs):
        forced.calls += 1
        kwargs["weights_only"] = False
        return original(*args, **kwargs)
    forced.calls = 0
    monkeypatch.setattr(torch, "load", forced)
    return forced


def marker_code(marker) -> str:
    return f"open({str(marker)!r}, 'w').write('the payload ran')"


def s1(text: str) -> bytes:
    """SHORT_BINUNICODE"""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def u4(text: str) -> bytes:
    """BINUNICODE"""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def reduce_payload(code) -> bytes:
    class Payload:
        def __reduce__(self):
            return exec, (code,)
    return pickle.dumps({"evil": Payload()}, protocol=2)


def stack_global_memo_payload(code) -> bytes:
    """exec named by STACK_GLOBAL from two memo entries whose strings left the stack long before (protocol 4)."""
    return (b"\x80\x04" + s1("builtins") + b"\x94" + s1("exec") + b"\x94" + b"00" + b"}\x94" + b"0"
            + b"h\x00h\x01\x93" + s1(code) + b"\x85R.")


def inst_payload(code) -> bytes:
    """Protocol 0: MARK, the code as UNICODE, INST builtins exec (a call of exec(code))."""
    return b"(V" + code.encode() + b"\nibuiltins\nexec\n."


def ext_payload(code) -> bytes:
    """EXT1 240: the global registered under code 240 in copyreg's extension registry."""
    return b"\x80\x02\x82\xf0" + u4(code) + b"\x85R."


def torch_zip(path, data_pkl: bytes) -> str:
    """A torch zip checkpoint holding `data_pkl` (and the records torch.save writes beside it)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    return str(path)


def legacy_file(path, obj_pickle: bytes, keys_pickle: bytes | None = None) -> str:
    """A legacy (pre-1.6 layout) checkpoint: magic number, protocol version, system info, the object, the storage
    keys (no storages)."""
    info = {"protocol_version": torch.serialization.PROTOCOL_VERSION, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = b"".join(pickle.dumps(x, protocol=2) for x in (torch.serialization.MAGIC_NUMBER,
                                                         torch.serialization.PROTOCOL_VERSION, info))
    with open(path, "wb") as f:
        f.write(head + obj_pickle + (keys_pickle or pickle.dumps([], protocol=2)))
    return str(path)


def assert_live(path, marker):
    """The unchecked load (torch.load, weights_only=False) runs the payload: the files carry working code."""
    try:
        REAL_LOAD(path, weights_only=False)
    except Exception:  # what the payload returns need not be a checkpoint; it ran before that mattered
        pass
    assert marker.read_text() == "the payload ran"
    marker.unlink()


PAYLOADS = {
    "GLOBAL (reduce)": (reduce_payload, "it refers to exec from module builtins, opcode GLOBAL at byte"),
    "STACK_GLOBAL from the memo": (stack_global_memo_payload,
                                   "it refers to exec from module builtins, opcode STACK_GLOBAL at byte"),
    "INST": (inst_payload, "it refers to exec from module builtins, opcode INST at byte"),
    "EXT1": (ext_payload, "it names a global through copyreg's extension registry (code 240), opcode EXT1"),
}


@pytest.fixture
def exec_extension():
    """copyreg's extension registry is process-wide too: here a pack has registered builtins.exec as code 240."""
    copyreg.add_extension("builtins", "exec", 240)
    yield
    copyreg.remove_extension("builtins", "exec", 240)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("kind", PAYLOADS)
def test_hidden_payloads_are_refused_with_torch_load_forced_unsafe(tmp_path, unsafe_torch_load, request, kind, fmt):
    build, says = PAYLOADS[kind]
    if kind == "EXT1":
        request.getfixturevalue("exec_extension")
    marker = tmp_path / "marker"
    data = build(marker_code(marker))
    path = torch_zip(tmp_path / "evil.pth", data) if fmt == "zip" else legacy_file(tmp_path / "evil.pth", data)
    assert_live(path, marker)
    for mmap in (True, False):
        with pytest.raises(CheckpointError) as e:
            read_state_dict(path, mmap=mmap)
        assert str(e.value).startswith(f"{path}: refused to load: the pickle contains objects other than tensors (")
        assert says in str(e.value)
        assert str(e.value).endswith("Only plain state dicts are accepted, because a pickle can run code; convert "
                                     "the file to .safetensors with a tool you trust")
        assert not marker.exists()


def test_the_message_names_the_global_and_its_byte(tmp_path, unsafe_torch_load):
    marker = tmp_path / "marker"
    data = reduce_payload(marker_code(marker))
    at = data.index(b"c__builtin__\nexec\n")           # the GLOBAL opcode, found in the bytes themselves
    path = torch_zip(tmp_path / "evil.pth", data)
    with pytest.raises(CheckpointError) as e:
        read_state_dict(path)
    assert str(e.value) == (f"{path}: refused to load: the pickle contains objects other than tensors (it refers to "
                            f"exec from module builtins, opcode GLOBAL at byte {at}). Only plain state dicts are "
                            "accepted, because a pickle can run code; convert the file to .safetensors with a tool "
                            "you trust")


def test_a_payload_in_the_legacy_storage_keys_pickle(tmp_path, unsafe_torch_load):
    """The fifth pickle of a legacy file (its storage keys) is unpickled too, after the state dict."""
    marker = tmp_path / "marker"
    path = legacy_file(tmp_path / "evil.pth", pickle.dumps({}, protocol=2), reduce_payload(marker_code(marker)))
    assert_live(path, marker)
    with pytest.raises(CheckpointError, match="it refers to exec from module builtins"):
        read_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("data, says", [
    (b"\x80\x04C\x08builtins" + s1("exec") + b"\x93)R.", "it builds a global from values the check cannot follow"),
    (b"\x80\x04" + s1("collections") + s1("OrderedDict.fromkeys") + b"\x93.",
     "it refers to OrderedDict.fromkeys from module collections"),      # protocol 4 resolves dotted names
    (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2.__globals__\n.",
     "it refers to _rebuild_tensor_v2.__globals__ from module torch._utils"),
    (b"\x80\x02ccollections\nOrdered\\x44ict\n.", "it names a global the check cannot read"),
    (b"\x80\x02h\x05.", "it reads memo entry 5, which was never written"),
    (b"\x80\x02(\x94.", "its stack does not add up"),                   # a MARK cannot be memoised
])
def test_what_the_check_cannot_follow_is_refused(data, says):
    with pytest.raises(PickleRefused, match=re.escape(says)):
        scan_pickle(io.BytesIO(data))


def test_a_framed_pickle_inside_a_legacy_file_is_refused(tmp_path):
    body = b"}." + pickle.dumps([], protocol=2)
    framed = b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body
    path = legacy_file(tmp_path / "framed.pth", framed)
    with pytest.raises(CheckpointError, match="it is framed"):
        read_state_dict(path)


def test_a_torchscript_archive_is_refused(tmp_path, unsafe_torch_load):
    """torch.load hands a TorchScript archive to torch.jit.load when weights_only is False: code, not weights."""
    path = str(tmp_path / "scripted.pth")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(CheckpointError, match=re.escape("it is a TorchScript archive or holds other pickles (")) as e:
        read_state_dict(path)
    assert "constants.pkl" in str(e.value)


def test_a_tar_checkpoint_is_refused(tmp_path):
    """torch.load tries the pre-2018 tar layout first; a tar whose first member's name begins with byte 0x80
    passes for a legacy pickle by its first byte."""
    path = tmp_path / "old.pth"
    member = tmp_path / "x"
    member.write_bytes(b"data")
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as tar:
        tar.add(member, arcname="\x80sys_info")
    assert path.read_bytes()[:1] == b"\x80"
    with pytest.raises(CheckpointError, match="it is a tar archive"):
        read_state_dict(str(path))


def test_a_truncated_pickle_is_named(tmp_path):
    sd = {"w": torch.arange(6.0)}
    path = tmp_path / "cut.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[:200])                      # inside the state dict's pickle
    with pytest.raises(CheckpointError, match="truncated or damaged PyTorch file \\(the pickle cannot be read"):
        read_state_dict(str(path))


# --- real state dicts pass -----------------------------------------------------------------------------------

def every_dtype_state_dict() -> dict:
    sd = {f"t_{d}".replace("torch.", ""): torch.zeros(3, dtype=d) for d in (
        torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16, torch.int8,
        torch.uint8, torch.bool, torch.complex64, torch.complex128)}
    sd["view"] = sd["t_float32"][1:]
    sd["param"] = torch.nn.Parameter(torch.ones(2))
    sd["fp8"] = torch.zeros(2, dtype=torch.float8_e4m3fn)
    return sd


def saved_globals(path, legacy: bool) -> set[str]:
    """Every global of the file's pickles, as pickletools lists them (independent of the pack's scanner)."""
    if legacy:
        streams = [open(path, "rb")]
        count = 5
    else:
        with zipfile.ZipFile(path) as z:
            streams = [z.open(next(n for n in z.namelist() if n.endswith("/data.pkl")))]
        count = 1
    found = set()
    with streams[0] as f:
        for _ in range(count):
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL":
                    found.add(arg.replace(" ", "."))
    return found


@pytest.mark.parametrize("legacy", [False, True])
def test_what_torch_save_writes_for_state_dicts_is_on_the_list(tmp_path, legacy):
    path = tmp_path / "sd.pth"
    sd = every_dtype_state_dict()
    if legacy:
        sd.pop("fp8")          # torch reads float8 back from zip files only
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    found = saved_globals(path, legacy)
    assert {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage"} <= found
    assert found <= STATE_DICT_GLOBALS, found - STATE_DICT_GLOBALS


def test_the_list_is_within_torchs_own_weights_only_list():
    """Nothing the pack accepts is something torch's weights_only unpickler would refuse (checked against torch's
    default list, not the one add_safe_globals extends), and no name is remapped by pickle's Python 2 import
    mapping (which would make the unpickler resolve a different object than the one checked)."""
    import _compat_pickle
    from torch import _weights_only_unpickler
    allowed = set(_weights_only_unpickler._get_allowed_globals())

    def exists(name):
        module, attr = name.rsplit(".", 1)
        return hasattr(importlib.import_module(module), attr)
    present = {g for g in STATE_DICT_GLOBALS if exists(g)}
    assert len(present) >= 20 and present - allowed == set()
    modules = {g.rsplit(".", 1)[0] for g in STATE_DICT_GLOBALS}
    assert not modules & set(_compat_pickle.IMPORT_MAPPING)
    assert not {tuple(g.rsplit(".", 1)) for g in STATE_DICT_GLOBALS} & set(_compat_pickle.NAME_MAPPING)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("mmap", [True, False])
def test_a_real_model_state_dict_loads_with_the_wrapper_installed(tmp_path, unsafe_torch_load, legacy, mmap):
    sd = var_official_state_dict(tiny_model(seed=3).transformer)
    path = tmp_path / "var.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    got = read_state_dict(str(path), mmap=mmap)
    assert set(got) == set(sd) and all(torch.equal(got[k], v) for k, v in sd.items())


def test_the_legacy_scan_stops_where_the_tensor_data_begins(tmp_path):
    """The check reads the five pickles only: it ends where torch starts reading raw storage bytes (each storage:
    an 8-byte element count, then its bytes)."""
    sd = {"a": torch.zeros(1000), "b": torch.ones(10, dtype=torch.float16)}
    path = tmp_path / "sd.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    storage_bytes = sum(8 + t.untyped_storage().nbytes() for t in sd.values())
    with open(path, "rb") as f:
        for _ in range(pickle_scan.LEGACY_PICKLES):
            scan_pickle(f, frames=False)
        assert f.tell() == os.path.getsize(path) - storage_bytes


# --- whatever torch.load is ----------------------------------------------------------------------------------

def test_the_replacement_is_bypassed_and_named_once(tmp_path, unsafe_torch_load, caplog):
    path = tmp_path / "sd.pth"
    torch.save({"w": torch.arange(4.0)}, path)
    own, replaced = checkpoint.torch_load_function()
    assert own is REAL_LOAD and [name for name, _ in replaced] == ["torch.load"]
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert torch.equal(read_state_dict(str(path))["w"], torch.arange(4.0))
    lines = [r.getMessage() for r in caplog.records if "torch.load is replaced" in r.getMessage()]
    assert lines == [f"[scalewise] torch.load is replaced by {__name__} ({__file__}): the pack reads checkpoints "
                     "with torch's own load function (weights_only=True) after its own pickle check, whatever "
                     "the replacement does"]
    assert unsafe_torch_load.calls == 0


def test_a_replacement_without_mmap_that_hides_torchs_function(tmp_path, monkeypatch, caplog):
    """A wrapper of another signature (no mmap) on torch.load and torch.serialization.load, keeping torch's
    function where it cannot be found: loading still works (through the wrapper, without mmap), the check
    still refuses code, and the log says so."""
    calls = []

    def narrow_load(f, map_location=None, weights_only=None):
        calls.append(weights_only)
        return _HIDDEN["load"](f, map_location=map_location, weights_only=False)
    monkeypatch.setattr(torch, "load", narrow_load)
    monkeypatch.setattr(torch.serialization, "load", narrow_load)
    path = tmp_path / "sd.pth"
    torch.save({"w": torch.arange(4.0)}, path)
    with caplog.at_level(logging.WARNING):
        got = read_state_dict(str(path), torch.float16, mmap=True)
    assert torch.equal(got["w"], torch.arange(4.0).half()) and calls == [True]
    assert any(r.getMessage().startswith("[scalewise] torch.load is replaced by") and
               "torch's own load function cannot be reached" in r.getMessage() for r in caplog.records)
    marker = tmp_path / "marker"
    evil = torch_zip(tmp_path / "evil.pth", stack_global_memo_payload(marker_code(marker)))
    with pytest.raises(CheckpointError, match="it refers to exec"):
        read_state_dict(evil)
    assert not marker.exists() and calls == [True]


_HIDDEN = {"load": REAL_LOAD}   # module state, not a closure: the pack cannot see through it


def test_torchs_function_is_found_behind_functools_wraps(tmp_path, monkeypatch):
    @functools.wraps(REAL_LOAD)
    def wrapper(*args, **kwargs):
        kwargs["weights_only"] = False
        return REAL_LOAD(*args, **kwargs)
    monkeypatch.setattr(torch, "load", wrapper)
    monkeypatch.setattr(torch.serialization, "load", wrapper)
    own, replaced = checkpoint.torch_load_function()
    assert own is REAL_LOAD and len(replaced) == 2
