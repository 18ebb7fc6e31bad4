"""The official checkpoints' key lists (tests/data/keys/*.txt: `name [shape] dtype` per line, `#` comments; the
Switti list marks the 1024-px model's extra rows `#1024: name [shape] dtype`)."""
from __future__ import annotations

import re
from pathlib import Path

KEYS = Path(__file__).resolve().parent / "data" / "keys"


def read_keys(list_file: str, *, variant: str | None = None) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, dtype)} of a key list; `variant` ("1024") also takes the rows marked `#<variant>:`."""
    out = {}
    for line in (KEYS / list_file).read_text().splitlines():
        if variant is not None and line.startswith(f"#{variant}:"):
            line = line[len(variant) + 2:].strip()
        elif line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = line.split()
        out[key] = (tuple(int(s) for s in shape.strip("[]").split(",") if s), dtype)
    return out


def official_names(list_file: str, depth: int | None = None) -> list[str]:
    """The names of a key list, keeping only blocks 0 .. depth - 1 when `depth` is given (a shallower model)."""
    names = []
    for name in read_keys(list_file):
        m = re.match(r"blocks\.(\d+)\.", name)
        if depth is None or not m or int(m.group(1)) < depth:
            names.append(name)
    return names


def stored_dtypes(path) -> dict[str, str]:
    """{name: safetensors dtype ("F16", ...)} of a .safetensors file, read from its header."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return {k: f.get_slice(k).get_dtype() for k in f.keys()}
