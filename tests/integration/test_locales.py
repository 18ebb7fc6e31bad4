"""Translations (locales/<lang>/nodeDefs.json): served by the real server at /i18n, complete for every node, made
from the English the nodes have now (locales/en_source.json, see tools/locales.py), and faithful where a check
can tell: numbers, model and method names and quoted option values are carried over unchanged."""
import json
import re
from collections import Counter

import pytest

from scalewise.tools import locales

LANGUAGES = locales.languages()
# Words a translation must keep as they are wherever the English has them.
KEPT_TERMS = ("VAR", "Switti", "VQ-VAE", "CLIP", "CFG", "IGG", "SoftCFG", "SSG", "ImageNet", "top_k", "top_p",
              "fp16", "bf16", "fp32", "tiny-shapes (built in)", "models/var", "models/switti")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def read(lang: str) -> dict:
    return json.loads((locales.LOCALES / lang / "nodeDefs.json").read_text(encoding="utf-8"))


def test_languages_are_the_frontends_core_ones():
    # the first six languages the frontend shipped besides English; each must be a real translation
    assert set(LANGUAGES) == {"zh", "ja", "ko", "ru", "fr", "es"}


def test_translations_were_made_from_the_nodes_current_english(pack_loaded):
    current = locales.key_paths(locales.english_texts(pack_loaded.object_info()))
    recorded = locales.key_paths(json.loads(locales.SOURCE.read_text(encoding="utf-8")))
    changed = sorted(k for k in current.keys() | recorded.keys() if current.get(k) != recorded.get(k))
    assert not changed, ("English texts changed since the translations were made; run tools/locales.py --server "
                         f"... --write and re-translate: {changed}")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_translation_is_complete_and_faithful(lang):
    english = locales.key_paths(json.loads(locales.SOURCE.read_text(encoding="utf-8")))
    translated = locales.key_paths(read(lang))
    assert set(translated) == set(english), (sorted(set(english) - set(translated)),
                                             sorted(set(translated) - set(english)))
    for path, text in english.items():
        assert isinstance(translated[path], str) and translated[path].strip(), (lang, path)
        if path.endswith(".display_name") or path.endswith(".description") or path.endswith(".tooltip"):
            assert translated[path] != text or len(text) < 12, (lang, path, "left in English")
        # every number of the English, unchanged (decimal points stay points); a translation may add digits
        # where the English spells a number out ("the last three scales")
        numbers = Counter(NUMBER.findall(translated[path]))
        assert not Counter(NUMBER.findall(text)) - numbers, (lang, path, Counter(NUMBER.findall(text)) - numbers)
        for term in KEPT_TERMS:
            assert translated[path].count(term) >= (1 if term in text else 0), (lang, path, term)
    names = [translated[f"{node}.display_name"] for node in read(lang)]
    assert len(set(names)) == len(names), (lang, "two nodes share a display name")


def test_server_serves_every_language(pack_loaded):
    served = pack_loaded.get_json("/i18n")
    for lang in LANGUAGES:
        node_defs = served.get(lang, {}).get("nodeDefs", {})
        assert {k: v for k, v in node_defs.items() if k.startswith("Scalewise")} == read(lang), lang
