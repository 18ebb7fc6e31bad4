"""The import rules of ARCHITECTURE.md, read from the source (AST): models/ and guidance/ import nothing from ComfyUI,
nodes/ is the only room that does, guidance/ needs no model module, and no module imports a private name of another
module."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Top-level modules of ComfyUI (its root folder is on sys.path when it loads custom nodes).
COMFY_MODULES = {"comfy", "comfy_api", "comfy_api_nodes", "comfy_config", "comfy_execution", "comfy_extras",
                 "folder_paths", "server", "nodes", "execution", "node_helpers", "latent_preview", "app", "main",
                 "comfyui_version", "protocol", "cuda_malloc", "hook_breaker_ac10a0", "utils", "api_server",
                 "new_updater", "middleware"}
LIBRARY = ("models", "guidance")


def modules(room: str) -> list[Path]:
    return sorted((REPO / room).rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str, list[str], int]]:
    """(line, module, imported names, relative level) of every import statement, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name, [], 0) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, node.module or "", [a.name for a in node.names], node.level))
    return out


def comfy_imports(path: Path) -> list[str]:
    return [f"{path.relative_to(REPO)}:{line} imports {module}" for line, module, _, level in imports(path)
            if level == 0 and module.split(".")[0] in COMFY_MODULES]


def private_imports(path: Path) -> list[str]:
    """`from x import _name` of a private name; `__future__` and dunders are not private members."""
    return [f"{path.relative_to(REPO)}:{line} imports {name} from {'.' * level}{module}"
            for line, module, names, level in imports(path) if module != "__future__"
            for name in names if name.startswith("_") and not name.startswith("__")]


@pytest.mark.parametrize("room", LIBRARY)
def test_library_rooms_import_no_comfyui(room):
    assert modules(room), f"{room}/ is empty: the scan would prove nothing"
    assert [v for p in modules(room) for v in comfy_imports(p)] == []


def test_only_nodes_import_comfyui():
    skip = {"tests", "tools", "artifacts", "build", "dist", "node_modules"}  # not the pack's runtime code
    importers = {p.relative_to(REPO).parts[0] for p in REPO.rglob("*.py")
                 if not any(part.startswith(".") or part in skip for part in p.relative_to(REPO).parts[:-1])
                 and comfy_imports(p)}
    assert importers == {"nodes"}
    assert not comfy_imports(REPO / "__init__.py")  # ComfyUI imports the root; the nodes load on comfy_entrypoint()


def test_guidance_needs_no_model_module():
    """The sampler drives any object with the model contract (models/base.py); it imports no model module."""
    found = [f"{p.relative_to(REPO)}:{line}" for p in modules("guidance") for line, module, _, level in imports(p)
             if (level >= 2 and module.split(".")[0] == "models") or module.startswith("scalewise.models")]
    assert found == []


@pytest.mark.parametrize("room", (*LIBRARY, "nodes"))
def test_no_private_names_cross_modules(room):
    assert [v for p in modules(room) for v in private_imports(p)] == []


def test_the_checks_catch_what_they_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import comfy.model_management as mm\nfrom folder_paths import get_full_path\n"
                   "import torch\nfrom .cfg import _window_label\nfrom __future__ import annotations\n"
                   "def f():\n    from comfy_api.latest import io\n    from .x import __version__\n")
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        assert len(comfy_imports(bad)) == 3
        assert private_imports(bad) == ["bad.py:4 imports _window_label from .cfg"]
    finally:
        REPO = saved


# --- the model contract: what guidance/ uses of a model, against ARCHITECTURE.md's member table ---------------

def used_members(paths, owner: str) -> set[str]:
    """Attribute names read on `owner` (a name such as `model`, or `x.model`) anywhere in `paths`."""
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                value = node.value
                if (isinstance(value, ast.Name) and value.id == owner) or \
                        (isinstance(value, ast.Attribute) and value.attr == owner):
                    found.add(node.attr)
    return found


def documented_members(text: str) -> tuple[set[str], set[str]]:
    """(model members, ScaleState members) of ARCHITECTURE.md's model-contract section: the names in backticks of
    its table's first column, and those the table says `start`'s ScaleState offers."""
    import re
    section = text.split("## The model contract", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    model = {m for row in rows for m in re.findall(r"`(\w+)", row.split("|")[1])} - {"ScaleState"}
    start = next(row for row in rows if row.startswith("| `start("))
    state = set(re.findall(r"`(\w+)", start.split("|")[2])) - {"ScaleState"}
    return model, state


def test_the_contract_table_lists_exactly_what_guidance_uses():
    model, state = documented_members((REPO / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    assert used_members(modules("guidance"), "model") == model
    assert used_members(modules("guidance"), "state") == state


def test_the_contract_check_sees_an_undocumented_member(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def f(model, progress):\n    return model.transformer, progress.model.vae, model.decode\n")
    assert used_members([sneaky], "model") == {"transformer", "vae", "decode"}
    model, state = documented_members((REPO / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    assert "decode" in model and "transformer" not in model and state == {"rows", "set_uncond", "prefer", "close"}


def test_the_typing_protocols_and_the_base_class_have_the_table_members():
    """guidance/contract.py restates the table as Protocols (for typing): the same names, no more, no fewer; and
    models/base.py's ScalewiseModel / ScaleState define every one of them."""
    from typing import get_type_hints

    from scalewise.guidance.contract import ScaleStateLike, ScalewiseModelLike
    from scalewise.models.base import ScaleState, ScalewiseModel
    model, state = documented_members((REPO / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    assert set(get_type_hints(ScalewiseModelLike)) == model
    assert set(get_type_hints(ScaleStateLike)) == state
    for protocol_members, cls in ((model, ScalewiseModel), (state, ScaleState)):
        defined = set(dir(cls)) | set(get_type_hints(cls))  # methods, properties, class attributes, annotations
        assert protocol_members <= defined, protocol_members - defined
