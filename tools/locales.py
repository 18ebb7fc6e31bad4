"""Keep the translations in locales/ in step with the nodes' English texts.

ComfyUI serves `locales/<lang>/nodeDefs.json` of every custom node at /i18n; the frontend shows those texts when
the user's language (setting Comfy.Locale, default the browser's) is <lang> and falls back to the schema's English
for anything missing. `locales/en_source.json` holds the English every translation was made from, in the same
format; tests/integration/test_locales.py fails when a node's English no longer matches it, so a changed tooltip
cannot keep an outdated translation unnoticed.

    python tools/locales.py --server http://127.0.0.1:8188            # what changed, per language
    python tools/locales.py --server http://127.0.0.1:8188 --write    # write en_source.json from the server

After `--write`, translate the texts it lists into every locales/<lang>/nodeDefs.json.
"""
from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCALES = ROOT / "locales"
SOURCE = LOCALES / "en_source.json"


def pack_nodes(object_info: dict) -> dict:
    """The pack's nodes in a server's /object_info: those of the Python module that registers ScalewiseSampler (test
    packs may register other Scalewise* ids)."""
    module = object_info["ScalewiseSampler"]["python_module"]
    return {k: v for k, v in object_info.items() if v.get("python_module") == module}


def served_object_info(server: str) -> dict:
    """GET <server>/object_info of a running ComfyUI (e.g. http://127.0.0.1:8188) as a dict."""
    with urllib.request.urlopen(server.rstrip("/") + "/object_info", timeout=60) as answer:
        return json.load(answer)


def english_texts(object_info: dict) -> dict:
    """The pack's nodes' texts from a server's /object_info, in the frontend's nodeDefs format:
    {node id: {display_name, description?, inputs: {input: {name, tooltip?}}, outputs: {"i": {name, tooltip?}}}}.
    Empty descriptions and tooltips are left out (the frontend has nothing to translate there). The pack's nodes are
    those of the Python module that registers ScalewiseSampler (test packs may register other Scalewise* ids)."""
    texts = {}
    for node_id, node in pack_nodes(object_info).items():
        entry = {"display_name": node["display_name"]}
        if node.get("description"):
            entry["description"] = node["description"]
        inputs = {}
        for section in ("required", "optional"):
            for name, spec in node["input"].get(section, {}).items():
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                inputs[name] = {"name": name, **({"tooltip": options["tooltip"]} if options.get("tooltip") else {})}
        entry["inputs"] = inputs
        tooltips = node.get("output_tooltips") or []
        entry["outputs"] = {
            str(i): {"name": name, **({"tooltip": tooltips[i]} if i < len(tooltips) and tooltips[i] else {})}
            for i, name in enumerate(node["output_name"])}
        texts[node_id] = entry
    return texts


def key_paths(tree: dict, prefix: str = "") -> dict:
    """{"Node.inputs.cfg.tooltip": text, ...}: the leaves of a nodeDefs tree by dotted path."""
    leaves = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        leaves.update(key_paths(value, path) if isinstance(value, dict) else {path: value})
    return leaves


def languages() -> list[str]:
    """The language folders under locales/ (each holds a nodeDefs.json)."""
    return sorted(p.name for p in LOCALES.iterdir() if (p / "nodeDefs.json").is_file())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True, help="a running ComfyUI with the pack, e.g. http://127.0.0.1:8188")
    ap.add_argument("--write", action="store_true", help="write locales/en_source.json from the server")
    args = ap.parse_args(argv)
    tree = english_texts(served_object_info(args.server))
    current = key_paths(tree)
    recorded = key_paths(json.loads(SOURCE.read_text(encoding="utf-8")))
    changed = sorted(k for k in current if recorded.get(k) != current[k])
    print(f"{len(changed)} English texts new or changed since en_source.json:")
    for k in changed:
        print(f"  {k}: {current[k]!r}")
    for lang in languages():
        translated = key_paths(json.loads((LOCALES / lang / "nodeDefs.json").read_text(encoding="utf-8")))
        missing = sorted(set(current) - set(translated))
        stale = sorted(set(translated) - set(current))
        print(f"{lang}: {len(missing)} missing, {len(stale)} no longer in the schema, "
              f"{len([k for k in changed if k in translated])} to re-translate")
    if args.write:
        SOURCE.write_text(json.dumps(tree, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {SOURCE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
