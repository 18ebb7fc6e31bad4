"""Infinity's text path: flan-t5-xl through ComfyUI's own T5, loaded right, and the prompt node.

ComfyUI's Load CLIP takes a flan-t5-xl file for AuraFlow's pile-T5-XL (comfy/sd.py `detect_te_model`: T5_XL from
the width of block 23's wi_1 -> comfy/text_encoders/aura_t5.py): umT5 position biases in every block (flan-t5 has
one, in block 0; the other 23 stay uninitialised), the pile SentencePiece vocabulary and padding to 256 tokens, so
its features are wrong for Infinity. Load Infinity Text Encoder builds a ComfyUI CLIP object instead from
ComfyUI's T5 (comfy/text_encoders/t5.py) with the sizes read from the file (flan-t5-xl: d_model 2048, d_ff 5120,
24 layers, 32 heads of 64, gated tanh-GELU, bias in block 0 only: model_type "t5") and ComfyUI's standard T5
SentencePiece tokenizer (comfy/text_encoders/t5_tokenizer, the 32k vocabulary of T5 v1.1 and flan-t5, through
ComfyUI's own T5XXLTokenizer), so ComfyUI's model management loads, offloads and casts it like its own encoders.

Infinity Text Encode follows official tools/run_infinity.py `encode_prompt`: the tokenizer's ids with truncation
at 512 (the prompt's first 511 tokens and the closing `</s>`, no BOS), the encoder's last hidden state (after the
final layer norm) of those tokens only: padding never enters. Running the valid tokens alone gives the official
features: the official padding is masked out of every key, and T5's relative position bias depends only on
distances.
"""
from __future__ import annotations

import json
import numbers
import os
import re

import comfy.model_management as mm
import comfy.sd
import comfy.sd1_clip
import comfy.supported_models_base
import comfy.text_encoders.sd3_clip
import comfy.text_encoders.t5
import folder_paths
import torch
from comfy.cli_args import args
from comfy_api.latest import io

from ..models.checkpoint import CheckpointError
from ..models.flan_t5 import FLAN_T5_XL, T5EncoderConfig, infer_t5_config, read_t5_encoder, size_notes
from ..models.infinity import InfinityText
from .common import (DTYPES, CondType, ScalewiseNode, check_entry, checked_inputs, entry_path, noted_output,
                     sharded_entries)
from .features import aliases, expert

ENCODER = "flan_t5xl"             # the CLIP object's encoder name (its tokens' key)
WIDTH_KEY = "flan_t5xl_width"     # tokenizer_data entry: embedding width the tokenizer accepts (d_model)
MAX_TOKENS = 512                  # official max_length: 511 prompt tokens + </s>
FOLDER = "text_encoders"
EMBEDDING = re.compile(r"(?:^|(?<=[\s(]))embedding:([^\s,()\[\]<>:]+)")  # ComfyUI's textual-inversion syntax
_NEEDS = ("Infinity needs google/flan-t5-xl through Load Infinity Text Encoder (models/text_encoders: the Hugging "
          "Face download folder or an encoder-only file from tools/convert_flan_t5.py)")


def comfy_config(cfg: T5EncoderConfig) -> dict:
    """ComfyUI T5's config dict (the keys of comfy/text_encoders/t5_config_xxl.json) for the sizes `cfg`: gated
    tanh-GELU ("gelu_pytorch_tanh" = Hugging Face's gelu_new of feed_forward_proj "gated-gelu"), model_type "t5"
    (relative position bias in block 0 only)."""
    return {"d_model": cfg.d_model, "d_ff": cfg.d_ff, "num_layers": cfg.num_layers, "num_heads": cfg.num_heads,
            "d_kv": cfg.d_kv, "vocab_size": cfg.vocab_size, "dense_act_fn": "gelu_pytorch_tanh",
            "is_gated_act": True, "model_type": "t5", "layer_norm_epsilon": 1e-6, "eos_token_id": 1,
            "pad_token_id": 0}


class FlanT5Encoder(comfy.sd1_clip.SDClipModel):
    """ComfyUI's T5 with a flan-t5 config: last layer after the final layer norm, no attention mask (the node
    feeds the valid tokens only), </s> = 1, <pad> = 0."""

    def __init__(self, device="cpu", dtype=None, model_options={}, config=None):
        super().__init__(device=device, layer="last", layer_idx=None,
                         textmodel_json_config=dict(config or comfy_config(FLAN_T5_XL)), dtype=dtype,
                         special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                         enable_attention_masks=False, model_options={**model_options, "model_name": ENCODER})


class FlanT5Clip(comfy.sd1_clip.SD1ClipModel):
    """The CLIP object's model: one encoder named `ENCODER`."""

    def __init__(self, device="cpu", dtype=None, model_options={}, config=None):
        super().__init__(device=device, dtype=dtype, model_options=model_options, name=ENCODER,
                         clip_model=FlanT5Encoder, config=config)


class FlanT5Tokenizer(comfy.text_encoders.sd3_clip.T5XXLTokenizer):
    """ComfyUI's T5 tokenizer (t5_tokenizer: no BOS, </s> appended, no padding, no length limit here: the node
    truncates) with the embedding width of the loaded encoder and its own embedding key."""

    def __init__(self, embedding_directory=None, tokenizer_data={}):
        super().__init__(embedding_directory=embedding_directory, tokenizer_data=tokenizer_data, min_length=None)
        self.embedding_size = int(tokenizer_data.get(WIDTH_KEY, FLAN_T5_XL.d_model))
        self.embedding_key = ENCODER


class FlanT5Tokenizers(comfy.sd1_clip.SD1Tokenizer):
    """The CLIP object's tokenizer: `FlanT5Tokenizer` under the name `ENCODER` (tokens come as {ENCODER: [chunk]})."""

    def __init__(self, embedding_directory=None, tokenizer_data={}):
        super().__init__(embedding_directory=embedding_directory, tokenizer_data=tokenizer_data, name=ENCODER,
                         tokenizer=FlanT5Tokenizer)


# --- Files ------------------------------------------------------------------------------------------------------
def encoder_entries() -> list[str]:
    """The loader's choices: models/text_encoders' files, a download folder as its index JSON
    (`common.sharded_entries`), names with "flan" first."""
    return sorted(sharded_entries(FOLDER), key=lambda f: ("flan" not in f.lower(), f))


def encoder_path(name: str) -> str:
    """The absolute path of a loader entry (`common.entry_path`)."""
    return entry_path(FOLDER, name, "text_encoder_name")


COMFY_T5_TOKENIZER = os.path.join(os.path.dirname(os.path.realpath(comfy.text_encoders.sd3_clip.__file__)),
                                  "t5_tokenizer", "tokenizer.json")


def _vocabulary(path: str) -> list[str]:
    """The pieces of a Hugging Face tokenizer.json (its model's vocab: [piece, score] pairs for T5's Unigram)."""
    with open(path, encoding="utf-8") as f:
        vocab = json.load(f).get("model", {}).get("vocab")
    if not isinstance(vocab, list):
        raise CheckpointError(f"{path}: not a SentencePiece (Unigram) tokenizer.json: no model.vocab list")
    return [entry[0] if isinstance(entry, list) else entry for entry in vocab]


def check_tokenizer(path: str) -> None:
    """Compare the tokenizer.json beside a download's weights (`path`: its folder or a file in it), where there is
    one, with ComfyUI's T5 tokenizer, which reads the prompts (piece by piece). Raises CheckpointError naming the file and the first piece that differs (another model's vocabulary would
    give wrong token ids without any other sign)."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    own = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(own):
        return None
    ours, comfy_vocab = _vocabulary(own), _vocabulary(COMFY_T5_TOKENIZER)
    for i, (a, b) in enumerate(zip(ours, comfy_vocab)):
        if a != b:
            raise CheckpointError(f"{own}: piece {i} is {a!r}, ComfyUI's T5 tokenizer (which reads the prompts) has "
                                  f"{b!r}: this is not flan-t5-xl's vocabulary")
    if len(ours) != len(comfy_vocab):
        raise CheckpointError(f"{own}: {len(ours)} pieces, ComfyUI's T5 tokenizer (which reads the prompts) has "
                              f"{len(comfy_vocab)}: this is not flan-t5-xl's vocabulary")


def load_text_encoder(path: str, dtype: torch.dtype | None = None, cpu: bool = False) -> tuple[object, list[str]]:
    """A ComfyUI CLIP object holding flan-t5-xl (or any T5 v1.1-style encoder: `models.flan_t5.infer_t5_config`)
    from `path` (a file, an index JSON or a download folder), and notes for the user. dtype: the weights' dtype
    (None: ComfyUI's text-encoder dtype for the load device, fp16 by default, or what --fp32-text-enc etc. ask
    for; ComfyUI's T5 computes in fp32 whatever the weights are stored in). cpu: load and run it on the CPU.
    Raises CheckpointError naming the file for what `read_t5_encoder`, `infer_t5_config`, `size_notes` and
    `check_tokenizer` refuse."""
    check_tokenizer(path)
    options = {}
    if cpu:
        options["load_device"] = options["offload_device"] = torch.device("cpu")
    load_device = options.get("load_device", mm.text_encoder_device())
    dtype = dtype or mm.text_encoder_dtype(load_device)
    sd = read_t5_encoder(path, dtype, mmap=not args.disable_mmap)
    cfg = infer_t5_config(path, sd)
    notes = size_notes(path, cfg)
    target = comfy.supported_models_base.ClipTarget(FlanT5Tokenizers, FlanT5Clip)
    target.params = {"config": comfy_config(cfg)}
    clip = comfy.sd.CLIP(target, embedding_directory=folder_paths.get_folder_paths("embeddings"),
                         parameters=cfg.parameters(), tokenizer_data={WIDTH_KEY: cfg.d_model},
                         model_options={**options, "dtype": dtype})
    missing, unexpected = clip.load_sd(sd)
    if missing or unexpected:  # cannot happen for a file infer_t5_config accepted, unless ComfyUI's T5 changed
        raise CheckpointError(f"{path}: ComfyUI's T5 did not take every tensor (missing {list(missing)[:4]}, "
                              f"unexpected {list(unexpected)[:4]})")
    return clip, notes


# --- Prompts ----------------------------------------------------------------------------------------------------
def check_clip(clip) -> None:
    """Raise ValueError unless `clip` is the CLIP object of Load Infinity Text Encoder (naming what it is)."""
    if isinstance(getattr(clip, "cond_stage_model", None), FlanT5Clip):
        return
    try:
        kinds = sorted(clip.tokenize(""))
    except Exception:  # noqa: BLE001 - anything else than a CLIP object: its type is named below
        kinds = None
    if kinds == ["pile_t5xl"]:
        raise ValueError("clip: this CLIP is AuraFlow's pile-T5-XL, which is what ComfyUI's Load CLIP makes of a "
                         "flan-t5-xl file (another tokenizer and a position bias per layer): its features are wrong "
                         f"for Infinity. {_NEEDS}")
    what = f"encoders {kinds}" if kinds is not None else f"a {type(clip).__name__}"
    raise ValueError(f"clip: this CLIP object has {what}, not flan-t5-xl. {_NEEDS}")


def _check_embeddings(clip, text: str, where: str, width: int) -> None:
    """Every `embedding:NAME` in the prompt must exist and have `width`-wide vectors (ComfyUI itself drops a
    missing or misfitting one with a log line): ValueError naming the word otherwise."""
    for name in dict.fromkeys(EMBEDDING.findall(text)):
        word = f"embedding:{name}"
        found = clip.tokenize(word, return_word_ids=True)[ENCODER]
        tensors = [t for chunk in found for t, _, w in chunk if w != 0 and torch.is_tensor(t)]
        if not tensors:
            raise ValueError(f"{where}: {word}: no such textual-inversion file in models/embeddings (.safetensors, "
                             ".pt or .bin). Remove the word or add the file")
        widths = sorted({int(t.shape[-1]) for t in tensors})
        if widths != [width]:
            raise ValueError(f"{where}: {word} has {'/'.join(map(str, widths))}-wide vectors; flan-t5-xl's are "
                             f"{width} wide (an embedding for another text encoder?)")


def infinity_tokens(clip, text: str, where: str = "prompt") -> tuple[list, list[str]]:
    """The official token sequence of `text` as ComfyUI (token, 1.0) pairs: the prompt's tokens (ids, or vectors of
    `embedding:NAME` words, one token each), cut to the first 511, then `</s>` (official truncation at
    max_length 512), and notes for the user (truncation, ignored weights). Prompt weights such as (word:1.2) are
    parsed by ComfyUI's tokenizer (the brackets are not read as text) but not applied: Infinity was trained
    without weighting, as Switti Text Encode does. Raises ValueError naming `where` for another CLIP
    (`check_clip`), a missing or misfitting embedding, or a token ComfyUI's tokenizer gives that is neither."""
    check_clip(clip)
    width = clip.tokenizer.flan_t5xl.embedding_size
    _check_embeddings(clip, text, where, width)
    body, weighted = [], False
    for chunk in clip.tokenize(text, return_word_ids=True)[ENCODER]:
        for tok, weight, word in chunk:
            if word == 0:  # ComfyUI marks </s> (and padding, none here) with word id 0
                continue
            if torch.is_tensor(tok):
                body.extend(tok.reshape(-1, tok.shape[-1]))
            elif isinstance(tok, numbers.Integral):
                body.append(int(tok))
            else:
                raise ValueError(f"{where}: ComfyUI's tokenizer returned a {type(tok).__name__} token, which "
                                 "Infinity cannot encode (only words and textual-inversion embeddings)")
            weighted |= weight != 1.0
    end = clip.tokenize("")[ENCODER][0][0][0]  # "" is </s> alone
    notes = []
    keep = MAX_TOKENS - 1
    if len(body) > keep:
        notes.append(f"{where}: cut to {MAX_TOKENS} tokens, Infinity reads no more ({len(body) + 1} given)")
    if weighted:
        notes.append(f"{where}: prompt weights such as (word:1.2) are ignored, Infinity was trained without them")
    return [(t, 1.0) for t in body[:keep]] + [(end, 1.0)], notes


def encode_prompt(clip, text: str, where: str = "prompt") -> tuple[torch.Tensor, list[str]]:
    """flan-t5-xl features of one prompt: float32 [len, d_model] on the CPU (len = valid tokens incl. `</s>`, at
    most 512; the encoder's last hidden state), and notes. Raises ValueError naming `where` (see
    `infinity_tokens`) or for non-finite features (damaged weights)."""
    tokens, notes = infinity_tokens(clip, text, where)
    out = clip.encode_from_tokens({ENCODER: [tokens]})
    if out.ndim != 3 or out.shape[:2] != (1, len(tokens)):
        raise ValueError(f"clip: expected [1, {len(tokens)}, d_model] features, got {tuple(out.shape)}")
    features = out[0].float().cpu()
    if not bool(torch.isfinite(features).all()):
        raise ValueError("clip: the text encoder gives NaN/inf features: its weights are damaged (or overflow "
                         "their dtype); load it with dtype fp32")
    return features, notes


def encode(clip, positive: str, negative: str) -> tuple[InfinityText, list[str]]:
    """Infinity's conditioning: the positive prompt's features, and the negative prompt's where it is not empty
    (official `gen_one_img`: an empty negative prompt means the model's learned cfg_uncond[:len])."""
    features, notes = encode_prompt(clip, positive, "positive")
    negative_features = None
    if negative:
        neg, more = encode_prompt(clip, negative, "negative")
        negative_features, notes = (neg,), notes + more
    return InfinityText((features,), negative_features), notes


# --- Nodes ------------------------------------------------------------------------------------------------------
class InfinityTextEncoderLoader(ScalewiseNode):
    file_inputs = ("text_encoder_name",)

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseInfinityTextEncoderLoader",
            display_name="Load Infinity Text Encoder",
            category="loaders/scalewise",
            **aliases("Infinity", "flan-t5-xl", "T5", "text encoder", "load CLIP"),
            description=(
                "Loads Infinity's text encoder, google/flan-t5-xl, from models/text_encoders: the Hugging Face "
                "download folder as it is (pick its model.safetensors.index.json or pytorch_model.bin.index.json; "
                "only the encoder is read, shard by shard) or an encoder-only file made by "
                "tools/convert_flan_t5.py (2.4 GB). Use this node, not Load CLIP: ComfyUI's Load CLIP reads "
                "flan-t5-xl as AuraFlow's pile-T5-XL and gives wrong features."),
            inputs=[
                io.Combo.Input("text_encoder_name", options=encoder_entries(),
                               tooltip="flan-t5-xl: a download folder's index .json, or an encoder-only "
                                       ".safetensors file."),
                io.Combo.Input("dtype", options=["auto", *DTYPES], default="auto",
                               tooltip="Weight precision. auto: ComfyUI's text-encoder precision (fp16 unless "
                                       "--fp32-text-enc, --bf16-text-enc, ... say otherwise). ComfyUI's T5 computes "
                                       "in fp32 whatever the weights are stored in.", **expert()),
                io.Combo.Input("device", options=["default", "cpu"], default="default",
                               tooltip="cpu: keep and run the text encoder on the CPU (as Load CLIP's device "
                                       "option).", **expert()),
            ],
            outputs=[io.Clip.Output(display_name="clip")],
        )

    @classmethod
    # every combo, each defaulting to None (a missing input: ComfyUI's own message): see ScalewiseNode
    def validate_inputs(cls, text_encoder_name=None, dtype=None, device=None):
        return cls.known_problem(text_encoder_name=text_encoder_name, dtype=dtype, device=device)

    @classmethod
    def check_values(cls, values):
        return check_entry(FOLDER, "text_encoder_name", values.get("text_encoder_name"),
                           "put the flan-t5-xl download folder or the converted file there")

    @classmethod
    @checked_inputs
    def execute(cls, text_encoder_name, dtype, device) -> io.NodeOutput:
        path = encoder_path(text_encoder_name)
        clip, notes = load_text_encoder(path, None if dtype == "auto" else DTYPES[dtype], cpu=device == "cpu")
        return noted_output("Load Infinity Text Encoder", clip, notes, text_encoder_name=text_encoder_name,
                            dtype=dtype, device=device)


class InfinityTextEncode(ScalewiseNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalewiseInfinityTextEncode",
            display_name="Infinity Text Encode",
            category="conditioning/scalewise",
            **aliases("Infinity", "prompt", "T5 text encode", "text encode", "conditioning", "text to image"),
            description=("Encodes a prompt for Infinity with flan-t5-xl (Load Infinity Text Encoder) as the "
                         "official code does: the features of the prompt's tokens and its closing </s>, up to 512 "
                         "tokens, no padding. Without a negative prompt the unconditional side of guidance is "
                         "Infinity's learned empty-text features."),
            inputs=[
                io.Clip.Input("clip", tooltip="flan-t5-xl from Load Infinity Text Encoder (not Load CLIP)."),
                io.String.Input("positive", multiline=True, default="",
                                tooltip="What to draw. Up to 512 tokens (about 380 words) are read. embedding:name "
                                        "works with 2048-wide embeddings; weights like (word:1.2) are ignored "
                                        "(Infinity has no prompt weighting)."),
                io.String.Input("negative", multiline=True, default="",
                                tooltip="Optional: what to steer away from, for every image. Empty: Infinity's "
                                        "learned unconditional features, as the official default."),
            ],
            outputs=[CondType.Output(display_name="conditioning")],
        )

    @classmethod
    @checked_inputs
    def execute(cls, clip, positive, negative) -> io.NodeOutput:
        cond, notes = encode(clip, positive, negative)
        return noted_output("Infinity Text Encode", cond, notes, positive=positive, negative=negative)
