"""Every public module, function, class, method and property of models/ and guidance/ has a docstring (a method may
inherit it from the pack's base class that declares it, e.g. a guider's `runtime` from `Guider.runtime`), and the
public helpers of nodes/ have one too (read from the source: nodes/ needs ComfyUI to import)."""
import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import scalewise.guidance
import scalewise.models

REPO = Path(__file__).resolve().parents[1]


def library_modules():
    out = []
    for package in (scalewise.models, scalewise.guidance):
        out.append(package)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            out.append(importlib.import_module(info.name))
    return out


def own_doc(obj) -> str | None:
    doc = obj.__doc__
    if inspect.isclass(obj) and doc and doc.startswith(f"{obj.__name__}("):
        return None  # the signature dataclasses put where a docstring is missing
    return doc.strip() if doc else None


def member_doc(cls, name: str) -> str | None:
    """The docstring of cls.name, or of the same member in the nearest base class of the pack that has one."""
    for base in cls.__mro__:
        if name in base.__dict__ and base.__module__.startswith("scalewise."):
            member = base.__dict__[name]
            member = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            if own_doc(member):
                return own_doc(member)
    return None


def undocumented(module) -> list[str]:
    missing = [] if own_doc(module) else [f"{module.__name__} (module)"]
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if not own_doc(obj):
            missing.append(f"{module.__name__}.{name}")
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, (property, staticmethod, classmethod)) or inspect.isfunction(member):
                    if not member_doc(obj, attr):
                        missing.append(f"{module.__name__}.{name}.{attr}")
    return missing


MODULES = library_modules()


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_library_is_documented(module):
    assert undocumented(module) == []


def test_the_walk_sees_the_library():
    names = {m.__name__ for m in MODULES}
    assert {"scalewise.models.base", "scalewise.models.var", "scalewise.guidance.sampler",
            "scalewise.guidance.draw", "scalewise.models.shapes"} <= names


@pytest.mark.parametrize("path", sorted((REPO / "nodes").glob("*.py")), ids=lambda p: p.name)
def test_node_helpers_are_documented(path):
    """Public module-level functions and classes of nodes/ (node classes describe themselves in their schema)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    missing = [] if ast.get_docstring(tree) else ["module"]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            is_node = isinstance(node, ast.ClassDef) and any(
                getattr(b, "attr", getattr(b, "id", None)) in ("ComfyNode", "ScalewiseNode", "ComfyExtension")
                for b in node.bases)
            if not is_node and not ast.get_docstring(node):
                missing.append(node.name)
    assert missing == []


def test_the_check_catches_what_it_should():
    class Base:
        def hook(self):
            """Documented once."""

    class Child(Base):
        def hook(self):
            pass

        def other(self):
            pass
    Base.__module__ = Child.__module__ = "scalewise.fake"
    assert member_doc(Child, "hook") == "Documented once."
    assert member_doc(Child, "other") is None
