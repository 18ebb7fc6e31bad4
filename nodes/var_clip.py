"""VAR-CLIP's text node: the pooled CLIP-L vector VAR-CLIP was trained on, from the clip_l file loaded by ComfyUI.

ComfyUI loads the file and tokenises the prompt (its CLIP object); the vector itself is computed by the pack's own
text tower (models/clip_text.py) on that CLIP object's clip_l weights, because VAR-CLIP's differs from what ComfyUI
computes: open_clip's "ViT-L-14" runs the OpenAI weights with exact GELU (ComfyUI: QuickGELU), and VAR-CLIP takes
the projected end-of-text state divided by its norm (ComfyUI's default pooled output of a plain clip_l: unprojected,
not normalised). Truncation is VAR-CLIP's tokenizer's: SOT + the first 75 tokens + EOT.
"""
from __future__ import annotations

import numbers
import re

import torch
from comfy_api.latest import io

from ..models import PooledTextCondition
from ..models.clip_text import pooled_text_vectors
from .common import CondType, ScalewiseNode, checked_inputs, noted_output
from .features import aliases

CONTEXT = 77                 # SOT + 75 tokens + EOT: what VAR-CLIP's tokenizer keeps
EMBEDDING = re.compile(r"(?:^|(?<=[\s(]))embedding:([^\s,()\[\]<>:]+)")  # ComfyUI's textual-inversion syntax
_NEEDS = ("VAR-CLIP needs CLIP ViT-L/14's text encoder: clip_l.safetensors through Load CLIP (type "
          "stable_diffusion), or a DualCLIPLoader CLIP that holds clip_l")


def var_clip_token_ids(clip, text: str, where: str = "prompt") -> tuple[torch.Tensor, list[str]]:
    """Token ids int64 [1, 77] of `text` for VAR-CLIP from ComfyUI's CLIP-L tokenizer: SOT, the prompt's first 75
    tokens, EOT, then zeros (VAR-CLIP's tokenizer/tokenizer.py `tokenize`), and notes for the user (truncation,
    ignored weights). Prompt weights such as (word:1.2) are parsed by ComfyUI but not applied: VAR-CLIP has none.
    Raises ValueError naming `where` for a CLIP without clip_l or a textual-inversion word (VAR-CLIP's vector
    comes from token ids only)."""
    if EMBEDDING.search(text):
        raise ValueError(f"{where}: 'embedding:{EMBEDDING.search(text).group(1)}': VAR-CLIP Text Encode takes no "
                         "textual-inversion embeddings (VAR-CLIP was trained on plain captions); remove the word")
    tokens = clip.tokenize(text, return_word_ids=True)
    if "l" not in tokens:
        raise ValueError(f"clip: this CLIP object has encoders {sorted(tokens)}, no clip_l. {_NEEDS}")
    body, weighted = [], False
    for chunk in tokens["l"]:
        for tok, weight, word in chunk:
            if word == 0:  # ComfyUI marks SOT, EOT and padding with word id 0
                continue
            if not isinstance(tok, numbers.Integral):
                raise ValueError(f"{where}: ComfyUI's tokenizer returned a {type(tok).__name__} token, which "
                                 "VAR-CLIP cannot encode (only words)")
            body.append(int(tok))
            weighted |= weight != 1.0
    sot, eot = (t[0] for t in clip.tokenize("")["l"][0][:2])  # "" is SOT, EOT, padding
    notes = []
    keep = CONTEXT - 2
    if len(body) > keep:
        notes.append(f"{where}: cut to 77 tokens, VAR-CLIP reads no more ({len(body) + 2} given)")
    if weighted:
        notes.append(f"{where}: prompt weights such as (word:1.2) are ignored, VAR-CLIP was trained without them")
    ids = [int(sot), *body[:keep], int(eot)]
    return torch.tensor([ids + [0] * (CONTEXT - len(ids))], dtype=torch.long), notes


def clip_l_weights(clip) -> dict:
    """The clip_l text model's weights as ComfyUI holds them (loaded by its model management, patches applied),
    in the Hugging Face layout models/clip_text.py reads. Raises ValueError for a CLIP without clip_l."""
    encoder = getattr(clip.cond_stage_model, "clip_l", None)
    transformer = getattr(encoder, "transformer", None)
    if transformer is None or not hasattr(transformer, "text_model"):
        raise ValueError(f"clip: this CLIP object has no clip_l text model. {_NEEDS}")
    clip.load_model()
    return transformer.state_dict()


def encode_prompt(clip, text: str, where: str = "prompt") -> tuple[PooledTextCondition, list[str]]:
    """VAR-CLIP's condition for one prompt: the pooled, L2-normalised CLIP-L vector float32 [1, 768] on the CPU
    (models/clip_text.py, exact GELU as VAR-CLIP computed it), and notes for the user. Raises ValueError naming
    `where` (see var_clip_token_ids) or the missing/damaged weights."""
    ids, notes = var_clip_token_ids(clip, text, where)
    weights = clip_l_weights(clip)
    try:
        with torch.no_grad():
            raw = pooled_text_vectors(weights, ids, activation="gelu", normalize=False)
    except KeyError as e:
        raise ValueError(f"clip: {e.args[0]}: the clip_l file lacks it (VAR-CLIP needs the text projection too). "
                         f"{_NEEDS}") from None
    norm = raw.norm(dim=-1, keepdim=True)
    if not bool(torch.isfinite(raw).all()) or not bool((norm > 0).all()):
        raise ValueError("clip: the clip_l encoder gives NaN/inf or zero text features: its weights (the text "
                         "projection among them) are missing or damaged")
    return PooledTextCondition((raw / norm).cpu(), (text,)), notes


class VARCLIPTextEncode(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseVARCLIPTextEncode",
            display_name="VAR-CLIP Text Encode",
            category="conditioning/scalewise",
            **aliases("VAR-CLIP", "prompt", "CLIP text encode", "text encode", "conditioning", "text to image"),
            description=("Encodes a prompt for VAR-CLIP (a VAR-CLIP file in Load VAR Model) with the CLIP-L file you "
                         "already have (Load CLIP: clip_l.safetensors, type stable_diffusion), the way VAR-CLIP was "
                         "trained: one pooled, normalised 768-number vector, not ComfyUI's CONDITIONING. The "
                         "unconditional side of guidance is VAR-CLIP's learned empty-text vector, so there is no "
                         "negative prompt. Prompts are cut at 77 tokens."),
            inputs=[
                io.Clip.Input("clip", tooltip="CLIP with clip_l: Load CLIP (clip_l.safetensors, type "
                                              "stable_diffusion), or a DualCLIPLoader CLIP holding clip_l."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="What to draw: VAR-CLIP was trained on ImageNet captions, so short "
                                        "descriptions of one object or scene work best. Only the first 77 tokens "
                                        "are used; weights like (word:1.2) are ignored."),
            ],
            outputs=[CondType.Output(display_name="conditioning")],
        )

    @classmethod
    @checked_inputs
    def execute(cls, clip, prompt) -> io.NodeOutput:
        cond, notes = encode_prompt(clip, prompt, "prompt")
        return noted_output("VAR-CLIP Text Encode", cond, notes, prompt=prompt)
