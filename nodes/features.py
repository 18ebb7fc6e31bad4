"""Node features newer than the 0.3.75 floor, used only where the running ComfyUI has them.

Passing a keyword the running `comfy_api` does not know raises TypeError inside `define_schema`, and ComfyUI then
loses every node of the pack. So each feature is detected once, at import, from the V3 classes' own signatures,
and the nodes spread `expert()` / `aliases(...)` into their schemas: on a core without the feature they add nothing.

- `search_aliases` (a field of `io.Schema`): extra words the node search matches (VAR, Switti, CFG, heat map, ...).
- `advanced=True` on an input (a keyword of every widget input's constructor): the frontend hides it until the user
  asks for advanced inputs. Only expert knobs get it; widget names and order never change.
Help pages (web/docs/<node id>.md) need nothing from the backend: the frontend fetches them from the pack's web
directory, so they are shipped on every version.
"""
from __future__ import annotations

import dataclasses
import inspect

from comfy_api.latest import io

# The widget input classes the pack's schemas use.
_WIDGET_INPUTS = (io.Int.Input, io.Float.Input, io.Combo.Input, io.Boolean.Input, io.String.Input)


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


HAS_SEARCH_ALIASES = dataclasses.is_dataclass(io.Schema) and any(
    f.name == "search_aliases" for f in dataclasses.fields(io.Schema))
HAS_ADVANCED_INPUTS = all(_accepts(cls.__init__, "advanced") for cls in _WIDGET_INPUTS)


def expert() -> dict:
    """Keywords of an expert widget input: advanced=True where supported, else none."""
    return {"advanced": True} if HAS_ADVANCED_INPUTS else {}


def aliases(*words: str) -> dict:
    """Keywords of a schema's search aliases where supported, else none."""
    return {"search_aliases": list(words)} if HAS_SEARCH_ALIASES else {}
