"""Static check of a PyTorch checkpoint's pickles before torch reads them: every global they name must be on a
fixed list of what plain state dicts need, whatever `torch.load` is at the time.

Packs installed beside this one replace `torch.load` process-wide with a wrapper that forces
`weights_only=False` (ComfyUI-RMBG until 3.0, ltdrdata/comfyui-unsafe-torch, ...), and extend torch's own
allowlist with `torch.serialization.add_safe_globals`. Neither can widen this check: the list below is the pack's
own, and the pickles are read opcode by opcode with the standard library's `pickletools.genops`, nothing is
unpickled. Only a pickle's code names globals (GLOBAL, STACK_GLOBAL, INST; the EXT opcodes name them through
copyreg's registry), so a pickle whose globals all are tensor rebuild functions, storage classes, dtypes and
OrderedDict cannot call anything else, with any unpickler.

Tensor data is never read: of a zip checkpoint only the `data.pkl` record, read through torch's own zip reader
(the bytes torch will unpickle, not what another zip parser makes of a crafted archive); of a legacy checkpoint
the five pickles in front of the raw storage bytes.
"""
from __future__ import annotations

import _compat_pickle
import io
import pickletools
import tarfile

import torch

_STORAGES = ("Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool", "ComplexDouble",
             "ComplexFloat")
# dtypes torch.save names directly (through _rebuild_tensor_v3) because they have no typed storage class
_NEW_DTYPES = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "uint16",
               "uint32", "uint64")

# What torch.save writes for a state dict of tensors (and of Parameters), in every dtype, zip and legacy format
# (tests/models/test_pickle_scan.py saves them and checks that each name is also on torch's own weights_only list).
STATE_DICT_GLOBALS = frozenset({
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch.storage.UntypedStorage",
    *(f"torch.{name}Storage" for name in _STORAGES),
    *(f"torch.{name}" for name in _NEW_DTYPES),
})

LEGACY_PICKLES = 5   # magic number, protocol version, system info, the object, the storage keys
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
               "BINUNICODE8"}
_MARK = object()     # a MARK on the simulated stack
_ANY = object()      # any value the check need not know


class PickleRefused(ValueError):
    """The pickle names a global that plain state dicts do not need; `detail` says which and where."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class PickleUnreadable(ValueError):
    """The pickle cannot be read to its end (truncated or damaged); the message says where."""


class _Tape:
    """A stream that keeps the raw bytes of the last lines read: pickletools undoes backslash escapes in GLOBAL
    and INST arguments, the unpickler does not, so the check looks at the bytes themselves."""

    def __init__(self, stream):
        self.stream, self.lines = stream, []

    def read(self, n=-1):
        return self.stream.read(n)

    def tell(self):
        return self.stream.tell()

    def readline(self):
        line = self.stream.readline()
        self.lines = [*self.lines[-1:], line]
        return line


def _check_name(module: str, name: str, where: str) -> None:
    if f"{module}.{name}" not in STATE_DICT_GLOBALS:
        shown = _compat_pickle.IMPORT_MAPPING.get(module, module)   # protocol 2 writes Python 2's __builtin__
        raise PickleRefused(f"it refers to {name} from module {shown}, {where}")


def _raw_global(tape: _Tape, where: str) -> tuple[str, str]:
    raw = [line[:-1] for line in tape.lines[-2:]]
    if len(raw) != 2 or any(b"\\" in r or not r.isascii() for r in raw):
        raise PickleRefused(f"it names a global the check cannot read, {where}")
    return raw[0].decode("ascii"), raw[1].decode("ascii")


def scan_pickle(stream, *, frames: bool = True) -> None:
    """Check one pickle of `stream` (read up to its STOP opcode, a binary file object) without unpickling it.

    The unpickler's stack and memo are simulated so that STACK_GLOBAL's module and name are known even when they
    come from the memo; a global built from anything else (e.g. the result of a call) is refused, as are the EXT
    opcodes. frames=False refuses FRAME, for a pickle that another one follows (torch.save writes protocol 2,
    unframed; where the next pickle begins after a frame's STOP depends on how the reader buffers, while
    pickletools reads on right after STOP). Raises PickleRefused naming the global and the byte offset, or
    PickleUnreadable."""
    tape = _Tape(stream)
    stack: list = []
    memo: dict = {}

    def pop(where):
        if not stack or stack[-1] is _MARK:
            raise PickleRefused(f"its stack does not add up, {where}")
        return stack.pop()

    def pop_mark(where):
        while stack:
            if stack.pop() is _MARK:
                return
        raise PickleRefused(f"its stack does not add up, {where}")

    try:
        for op, arg, pos in pickletools.genops(tape):
            name, where = op.name, f"opcode {op.name} at byte {pos}"
            if name in ("GLOBAL", "INST"):
                _check_name(*_raw_global(tape, where), where)
                if name == "INST":
                    pop_mark(where)
                stack.append(_ANY)
            elif name == "STACK_GLOBAL":
                attr, module = pop(where), pop(where)
                if not (isinstance(module, str) and isinstance(attr, str)):
                    raise PickleRefused(f"it builds a global from values the check cannot follow, {where}")
                _check_name(module, attr, where)
                stack.append(_ANY)
            elif name in ("EXT1", "EXT2", "EXT4"):
                raise PickleRefused(f"it names a global through copyreg's extension registry (code {arg}), {where}")
            elif name == "FRAME" and not frames:
                raise PickleRefused(f"it is framed (pickle protocol 4+), which torch.save never writes here, {where}")
            elif name in _STRING_OPS:
                stack.append(arg if isinstance(arg, str) and arg.isascii() else _ANY)
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                if not stack or stack[-1] is _MARK:
                    raise PickleRefused(f"its stack does not add up, {where}")
                memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise PickleRefused(f"it reads memo entry {arg}, which was never written, {where}")
                stack.append(memo[arg])
            elif name == "DUP":
                value = pop(where)
                stack.extend((value, value))
            elif name == "POP":
                if not stack:
                    raise PickleRefused(f"its stack does not add up, {where}")
                stack.pop()   # an item, or the MARK on top (as the unpickler does)
            else:
                before = op.stack_before
                if pickletools.markobject in before:   # everything above the mark goes; then what lies below it
                    pop_mark(where)
                    for _ in before[:before.index(pickletools.markobject)]:
                        pop(where)
                else:
                    for _ in before:
                        pop(where)
                stack.extend(_MARK if kind is pickletools.markobject else _ANY for kind in op.stack_after)
    except PickleRefused:
        raise
    except Exception as e:  # pickletools' ValueError at a bad opcode or a premature end, struct errors, ...
        raise PickleUnreadable(f"the pickle cannot be read ({e})") from None


def torchscript_records(records) -> list[str]:
    """The records of a torch zip that make it something other than a torch.save checkpoint: other pickles
    (a TorchScript archive's constants.pkl, which torch.load hands to torch.jit.load) and TorchScript code."""
    return [r for r in records if (r.lower().endswith(".pkl") and r != "data.pkl") or r.startswith("code/")]


def scan_checkpoint(path: str, kind: str) -> None:
    """Check every pickle torch would read from the checkpoint at `path` (`kind`: "torch-zip" or
    "torch-legacy", as the file's first bytes say). Raises PickleRefused (the global, or why the file is not a
    plain checkpoint), PickleUnreadable, or RuntimeError/OSError from torch's zip reader for a damaged zip."""
    if kind == "torch-zip":
        reader = torch._C.PyTorchFileReader(path)   # torch.load's own reader: the bytes it will unpickle
        other = torchscript_records(reader.get_all_records())
        if other:
            raise PickleRefused(f"it is a TorchScript archive or holds other pickles ({', '.join(other[:3])}), "
                                "not a torch.save state dict")
        scan_pickle(io.BytesIO(reader.get_record("data.pkl")))
        return
    with open(path, "rb") as f:
        try:  # torch.load tries the pre-1.6 tar layout first, whose pickles lie elsewhere: never let it
            with tarfile.open(fileobj=f, mode="r:", format=tarfile.PAX_FORMAT):
                pass
            raise PickleRefused("it is a tar archive (the pre-2018 torch.save layout), not a plain checkpoint")
        except tarfile.TarError:
            f.seek(0)
        for _ in range(LEGACY_PICKLES):
            scan_pickle(f, frames=False)
