"""Issue 6, static guard: the pack's run-time code (everything but tests/ and tools/, which the pack never runs)
contains no eval/exec, no shell or subprocess call (so no run-time pip), no network module and no unsafe
deserialisation (torch's pickle loaders are named only in models/checkpoint.py, which calls them after the pack's
own pickle check); its web extension talks to no other host. Complements ruff's S rules ([tool.ruff] in pyproject.toml,
run by .ci/run), which cover eval/exec and pickle but not imports of network or process modules. The runtime
counterpart is tests/integration/test_no_network.py (a full workflow with outbound connections refused)."""
import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"tests", "tools", "artifacts", "build", "dist", "node_modules", "__pycache__"}
FORBIDDEN_MODULES = {
    "socket", "ssl", "urllib", "urllib2", "urllib3", "http", "requests", "httpx", "aiohttp", "websocket", "websockets",
    "ftplib", "smtplib", "telnetlib", "xmlrpc", "huggingface_hub", "subprocess", "pip", "ensurepip", "pty",
    "multiprocessing", "marshal", "shelve", "dill", "cloudpickle", "yaml"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "breakpoint", "os.system", "os.popen", "os.execv",
                   "os.execl", "os.execvp", "os.spawnl", "os.spawnv", "os.startfile", "pickle.load", "pickle.loads",
                   "importlib.import_module"}


def pack_files(suffix: str) -> list[Path]:
    out = []
    for path in sorted(REPO.rglob(f"*{suffix}")):
        parts = path.relative_to(REPO).parts
        if any(p.startswith(".") or p in SKIP_DIRS for p in parts[:-1]):
            continue
        out.append(path)
    return out


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        else:
            names = []
        for name in names:
            if name.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"line {node.lineno}: import {name}")
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in FORBIDDEN_CALLS:
                found.append(f"line {node.lineno}: {name}()")
            if name.endswith("torch.load"):
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
                if not safe:
                    found.append(f"line {node.lineno}: torch.load without weights_only=True")
    return found


PY_FILES = pack_files(".py")


def test_the_scan_sees_the_pack():
    names = {p.relative_to(REPO).as_posix() for p in PY_FILES}
    assert {"__init__.py", "nodes/sampler.py", "models/checkpoint.py", "guidance/sampler.py"} <= names
    assert not any(n.startswith(("tests/", "tools/")) for n in names)


@pytest.mark.parametrize("path", PY_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_exec_process_network_or_unsafe_load(path):
    assert violations(path.read_text(encoding="utf-8")) == []


def test_the_scanner_catches_what_it_should():
    bad = ("import subprocess\nfrom urllib.request import urlopen\nimport socket as s\nimport os, torch\n"
           "eval('1')\nexec('x = 1')\nos.system('pip install x')\ntorch.load('f.pth')\n"
           "torch.load('f.pth', weights_only=False)\n")
    assert len(violations(bad)) == 8
    assert violations("import torch\ntorch.load(f, map_location='cpu', weights_only=True)\n") == []


# Issue 25 §2: pickles are read in one place, after the pack's own check. Other packs replace torch.load process-wide
# (forcing weights_only=False), so weights_only=True alone proves nothing: models/checkpoint.py alone may name torch's
# load functions, and there the loader is called only after models/pickle_scan.py has checked the file.
PICKLE_LOADERS = ("torch.load", "torch.serialization.load", "torch.jit.load", "torch.package")
LOADING_MODULE = "models/checkpoint.py"


def pickle_loader_mentions(source: str) -> list[str]:
    """Every mention (call or reference) of torch's pickle loaders, and any pickle_module= argument."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            name = _dotted(node)
            if any(name == n or name.endswith("." + n) or name.startswith(n + ".") for n in PICKLE_LOADERS):
                found.append(f"line {node.lineno}: {name}")
        if isinstance(node, ast.keyword) and node.arg == "pickle_module":
            found.append(f"line {node.value.lineno}: pickle_module=")
    return sorted(set(found))


def loads_before_the_check(source: str, loader: str = "_call_load", check: str = "scan_checkpoint") -> list[str]:
    """Functions that call `loader` without a call of `check` in an earlier statement of the same function."""
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef) or fn.name == loader:
            continue
        checked = False
        for statement in fn.body:
            calls = {_dotted(n.func) for n in ast.walk(statement) if isinstance(n, ast.Call)}
            if loader in calls and not checked:
                found.append(f"{fn.name} (line {statement.lineno}) loads before {check}")
            checked = checked or check in calls
    return found


@pytest.mark.parametrize("path", [p for p in PY_FILES if p.relative_to(REPO).as_posix() != LOADING_MODULE],
                         ids=lambda p: p.relative_to(REPO).as_posix())
def test_pickles_are_loaded_only_by_the_checkpoint_module(path):
    assert pickle_loader_mentions(path.read_text(encoding="utf-8")) == []


def test_the_checkpoint_module_checks_every_pickle_before_loading_it():
    source = (REPO / LOADING_MODULE).read_text(encoding="utf-8")
    assert "_call_load(" in source and "scan_checkpoint(" in source
    assert loads_before_the_check(source) == []
    loader = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef) and n.name == "_call_load")
    pairs = [(k.value, v.value) for d in ast.walk(loader) if isinstance(d, ast.Dict)
             for k, v in zip(d.keys, d.values) if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)]
    assert ("weights_only", True) in pairs and not [v for k, v in pairs if k == "weights_only" and v is not True]


def test_the_pickle_scans_catch_what_they_should():
    bad = ("import torch\nfrom torch import serialization\nload = torch.load\ntorch.serialization.load(f)\n"
           "torch.jit.load(f)\nx(f, pickle_module=p)\n")
    assert pickle_loader_mentions(bad) == ["line 3: torch.load", "line 4: torch.serialization.load",
                                           "line 5: torch.jit.load", "line 6: pickle_module="]
    order = ("def a(p):\n    _call_load(p)\n    scan_checkpoint(p)\n"
             "def b(p):\n    scan_checkpoint(p)\n    return _call_load(p)\n")
    assert loads_before_the_check(order) == ["a (line 2) loads before scan_checkpoint"]


@pytest.mark.parametrize("path", pack_files(".js"), ids=lambda p: p.relative_to(REPO).as_posix())
def test_web_extension_talks_to_no_other_host(path):
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"\b(?:https?|wss?)://", text), "absolute URL in the web extension"
    assert not re.search(r"\beval\s*\(|new\s+Function\s*\(|XMLHttpRequest|\bfetch\s*\(", text)


# Issue 13.6, the torch floor (torch >= 2.4, torch-directml's pin): names added after 2.4 must not be used directly
# (an `except torch.OutOfMemoryError` clause is evaluated whenever any exception reaches it). Source: the torch
# release notes of the version given.
NEWER_THAN_FLOOR = {"torch.OutOfMemoryError": "2.5", "torch.accelerator": "2.6", "torch.serialization.safe_globals":
                    "2.5", "torch.nn.attention.flex_attention": "2.5", "torch.float8_e8m0fnu": "2.7",
                    "torch.mps.is_macos_or_newer": "2.7"}


def newer_torch_names(source: str) -> list[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            name = _dotted(node)
            for newer, version in NEWER_THAN_FLOOR.items():
                if name == newer or name.startswith(newer + "."):
                    found.add(f"line {node.lineno}: {newer} (torch {version}+)")
    return sorted(found)


@pytest.mark.parametrize("path", PY_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_torch_name_newer_than_the_floor(path):
    assert newer_torch_names(path.read_text(encoding="utf-8")) == []


def test_the_torch_floor_scan_catches_what_it_should():
    bad = ("import torch\ntry:\n    pass\nexcept torch.OutOfMemoryError:\n    pass\n"
           "d = torch.accelerator.current_accelerator()\n")
    assert newer_torch_names(bad) == ["line 4: torch.OutOfMemoryError (torch 2.5+)",
                                      "line 6: torch.accelerator (torch 2.6+)"]
    assert newer_torch_names("getattr(torch, 'OutOfMemoryError', None)\ntorch.cuda.OutOfMemoryError\n") == []
