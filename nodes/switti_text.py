"""Switti's text features from ComfyUI's SDXL CLIP object (shared/spec switti.md §4, README trap 6).

The official pipeline (Switti repo, models/clip.py FrozenCLIPEmbedder + pipeline encode_prompt) tokenises with
truncation to 77 (BOS + 75 + EOS + padding), runs each HF CLIPTextModel and keeps `last_hidden_state` (the last
layer after the final LayerNorm), concatenated [CLIP-L | bigG], the bigG `pooler_output` (final-LN state at the
first EOS, no projection) and the tokenizer's padding mask. ComfyUI's layer options are not stable across versions
(`clip_layer(-33)` gave the final-LN last layer up to 0.22 and the penultimate layer from 0.23 on), so the node asks
for the last layer without its LayerNorm (`clip_layer(-1)`, in range everywhere) and applies each encoder's own
final LayerNorm here.
"""
from __future__ import annotations

import numbers
import re

import comfy.ops
import torch
import torch.nn.functional as F

from ..models import TextCondition

CONTEXT = 77                             # BOS + 75 tokens + EOS: what the official tokenizer keeps
WIDTHS = {"l": 768, "g": 1280}           # CLIP-L and OpenCLIP bigG text widths; the context is [L | G]
ENCODERS = {"l": "clip_l", "g": "clip_g"}
EMBEDDING = re.compile(r"(?:^|(?<=[\s(]))embedding:([^\s,()\[\]<>:]+)")  # ComfyUI's textual-inversion syntax
_SDXL_HINT = "Switti needs an SDXL embedding holding both clip_l [n, 768] and clip_g [n, 1280] vectors"


def _fail(where: str, msg: str):
    raise ValueError(f"{where}: {msg}")


def _flat(chunks, key: str, where: str) -> list:
    """The prompt's own tokens (no BOS/EOS/padding) from ComfyUI's 77-token chunks, in order, as
    (int id | 1-D embedding vector, weight) pairs. ComfyUI marks BOS, EOS and padding with word id 0."""
    out = []
    for chunk in chunks:
        for tok, weight, word in chunk:
            if word == 0:
                continue
            if torch.is_tensor(tok):
                if tok.shape[-1] != WIDTHS[key]:
                    _fail(where, f"an embedding in the prompt has {tok.shape[-1]}-wide vectors for {ENCODERS[key]}, "
                                 f"which needs {WIDTHS[key]}. {_SDXL_HINT}")
                out.extend((row, weight) for row in tok.reshape(-1, tok.shape[-1]))
            elif isinstance(tok, numbers.Integral):  # as ComfyUI's process_tokens tells ids from vectors
                out.append((int(tok), weight))
            else:
                _fail(where, f"ComfyUI's tokenizer returned a {type(tok).__name__} token, which Switti cannot "
                             "encode (only words and textual-inversion embeddings)")
    return out


def _check_embeddings(clip, text: str, where: str):
    """Every `embedding:NAME` in the prompt must exist and fit both encoders, one clip_l vector per clip_g vector.
    ComfyUI itself drops a missing or misfitting embedding with a log line (shifting the tokens after it); Switti
    Text Encode refuses it instead, naming the word."""
    for name in dict.fromkeys(EMBEDDING.findall(text)):
        word = f"embedding:{name}"
        found = clip.tokenize(word, return_word_ids=True)
        vectors = {}
        for key in ("l", "g"):
            tensors = [t for chunk in found[key] for t, _, w in chunk if w != 0 and torch.is_tensor(t)]
            widths = sorted({int(t.shape[-1]) for t in tensors})
            if widths and widths != [WIDTHS[key]]:
                _fail(where, f"{word} has {'/'.join(map(str, widths))}-wide vectors for {ENCODERS[key]}, which needs "
                             f"{WIDTHS[key]} (an SD 1.x or other model's embedding?). {_SDXL_HINT}")
            vectors[key] = sum(t.numel() // WIDTHS[key] for t in tensors)
        if not vectors["l"] and not vectors["g"]:
            _fail(where, f"{word}: no such textual-inversion file in models/embeddings (.safetensors, .pt or .bin). "
                         "Remove the word or add the file")
        if vectors["l"] != vectors["g"]:
            _fail(where, f"{word} has {vectors['l']} clip_l vector(s) but {vectors['g']} clip_g vector(s); "
                         f"{_SDXL_HINT}, the same number of each")


def switti_tokens(clip, text: str, where: str = "prompt") -> tuple[dict, int, list[str]]:
    """ComfyUI tokens for one 77-token Switti context: {"l": [chunk], "g": [chunk]} with all weights 1.0, the
    number of valid tokens (BOS … EOS) and notes for the user (truncation, ignored weights).

    Truncation is the official one: the prompt's first 75 tokens (textual-inversion vectors count one each), not
    ComfyUI's first chunk, which may end early to keep a word whole. Prompt weights such as (word:1.2) are parsed
    by ComfyUI (the brackets are not read as text) but not applied: the official pipeline has no weighting.
    Raises ValueError naming `where` for a CLIP other than SDXL's and for missing or misfitting embeddings."""
    tokens = clip.tokenize(text, return_word_ids=True)
    if set(tokens) != {"l", "g"}:
        raise ValueError(f"Switti needs the SDXL text encoders (clip_l + clip_g through DualCLIPLoader, type sdxl); "
                         f"this CLIP object has encoders {sorted(tokens)}")
    _check_embeddings(clip, text, where)
    empty = clip.tokenize("")
    content = {key: _flat(tokens[key], key, where) for key in ("l", "g")}
    if len(content["l"]) != len(content["g"]):  # the same BPE vocabulary: only embeddings can make them differ
        _fail(where, f"the clip_l and clip_g tokens differ in length ({len(content['l'])} vs {len(content['g'])}); "
                     f"{_SDXL_HINT}")
    notes = []
    keep = CONTEXT - 2
    if len(content["g"]) > keep:
        notes.append(f"{where}: cut to 77 tokens, Switti reads no more ({len(content['g']) + 2} given)")
    if any(w != 1.0 for _, w in content["g"]):
        notes.append(f"{where}: prompt weights such as (word:1.2) are ignored, Switti was trained without them")
    n = min(keep, len(content["g"]))
    out = {}
    for key in ("l", "g"):
        bos, eos, pad = (t[0] for t in empty[key][0][:3])  # "" is BOS, EOS, padding
        body = [(t, 1.0) for t, _ in content[key][:n]]
        out[key] = [[(bos, 1.0), *body, (eos, 1.0)] + [(pad, 1.0)] * (keep - n)]
    return out, n + 2, notes


def _final_layer_norm(clip, key: str, states: torch.Tensor) -> torch.Tensor:
    """The encoder's own final LayerNorm (weights as ComfyUI holds them: cast, offloaded or patched) in fp32."""
    try:
        norm = getattr(clip.cond_stage_model, ENCODERS[key]).transformer.text_model.final_layer_norm
    except AttributeError as e:
        raise ValueError(f"clip: this ComfyUI's SDXL CLIP has no {ENCODERS[key]} final LayerNorm where "
                         f"Switti Text Encode looks for it ({e})") from e
    weight, bias = comfy.ops.cast_bias_weight(norm, input=states, dtype=torch.float32, device=states.device)[:2]
    return F.layer_norm(states, norm.normalized_shape, weight, bias, norm.eps)


def encode_prompt(clip, text: str, where: str = "prompt") -> tuple[TextCondition, list[str]]:
    """Switti's condition for one prompt: hidden [1, 77, 2048] fp32 (CLIP-L | bigG last layer after each final
    LayerNorm), pooled [1, 1280] (bigG final-LN state at EOS, unprojected), mask [1, 77] bool (True up to EOS),
    all on the CPU; plus notes for the user. Raises ValueError naming `where` (see switti_tokens) or the encoder
    whose weights are missing."""
    tokens, valid, notes = switti_tokens(clip, text, where)
    clip = clip.clone()
    clip.clip_layer(-1)  # the last layer *before* its final LayerNorm on every ComfyUI version
    raw = clip.encode_from_tokens(tokens)
    if raw.shape[:2] != (1, CONTEXT) or raw.shape[2] != sum(WIDTHS.values()):
        raise ValueError(f"clip: expected [1, 77, 2048] states from the SDXL text encoders, got {tuple(raw.shape)}")
    raw = raw.float()
    with torch.no_grad():
        parts = (_final_layer_norm(clip, "l", raw[..., :WIDTHS["l"]]),
                 _final_layer_norm(clip, "g", raw[..., WIDTHS["l"]:]))
    hidden = torch.cat(parts, dim=-1).cpu()
    for name, other, part in (("clip_l", "clip_g", parts[0]), ("clip_g", "clip_l", parts[1])):
        # An encoder whose file was never loaded (DualCLIPLoader given two clip_l or two clip_g files) keeps
        # uninitialised weights: NaN, or the same vector at every token. Real features are neither.
        finite = bool(torch.isfinite(part).all())
        if not finite or bool((part == part[:, :1]).all()):
            raise ValueError(f"clip: the {name} encoder of this CLIP gives {'constant' if finite else 'NaN/inf'} "
                             f"features: its weights are missing (two {other} files in DualCLIPLoader?) or damaged. "
                             "Switti needs clip_l.safetensors and clip_g.safetensors, one of each, through "
                             "DualCLIPLoader, type sdxl")
    mask = (torch.arange(CONTEXT) < valid)[None]
    pooled = hidden[:, valid - 1, WIDTHS["l"]:]
    return TextCondition(hidden, pooled, mask), notes
