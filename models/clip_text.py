"""CLIP's text tower as VAR-CLIP runs it: one pooled, L2-normalised vector per prompt.

VAR-CLIP (daixiangzi/VAR-CLIP @816de00, models/clip.py `clip_vit_l14`, clip_util.py `CLIPWrapper.encode_text`)
loads OpenAI's ViT-L/14 weights into open_clip's "ViT-L-14" model and takes `encode_text` divided by its L2 norm
(open_clip src/open_clip/model.py `CLIP.encode_text`, transformer.py `text_global_pool`):

    x = token_embedding(ids) + positional_embedding            [B, T, W]
    x = x + attn(ln_1(x)), x = x + mlp(ln_2(x))  per layer     pre-LN blocks, causal mask, LayerNorm eps 1e-5
    x = ln_final(x)
    v = x[b, argmax_t ids[b, t]] @ text_projection             the end-of-text state (the largest id, 49407)
    v = v / |v|                                                [B, D]

mlp = c_proj(act(c_fc(x))). Trap: open_clip's "ViT-L-14" config has no `quick_gelu`, so `act` is torch's exact
(erf) GELU, while OpenAI trained those weights with QuickGELU (x * sigmoid(1.702 x)), which is what ComfyUI's clip_l
runs. VAR-CLIP was trained on the GELU vectors, so `activation="gelu"` (the default) reproduces them;
"quick_gelu" gives OpenAI CLIP's (and ComfyUI's) own text features. ComfyUI's default pooled output for a plain
clip_l (Load CLIP, type stable_diffusion) is the final-LN end-of-text state without the projection and without
the normalisation.

The weights are a text model in the Hugging Face / ComfyUI layout (what ComfyUI's clip_l.safetensors holds, names
below without a prefix): text_model.embeddings.{token,position}_embedding.weight, text_model.encoder.layers.N.
{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}.{weight,bias},
text_model.final_layer_norm.{weight,bias}, text_projection.weight [D, W] (a Linear: v = x W^T, the transpose of
open_clip's text_projection parameter).
"""
from __future__ import annotations

import math
import re
from typing import Mapping

import torch
import torch.nn.functional as F

LN_EPS = 1e-5
HEAD_DIM = 64  # CLIP's text towers (B: 512 / 8, L: 768 / 12, bigG: 1280 / 20)
ACTIVATIONS = ("gelu", "quick_gelu")
PREFIX = "text_model."


def _act(x: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "gelu":
        return F.gelu(x)
    return x * torch.sigmoid(1.702 * x)


def text_layers(weights: Mapping[str, torch.Tensor]) -> int:
    """Number of transformer layers of a CLIP text model's weights (0 if none)."""
    rx = re.compile(r"text_model\.encoder\.layers\.(\d+)\.")
    found = {int(m.group(1)) for k in weights if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def pooled_text_vectors(weights: Mapping[str, torch.Tensor], ids: torch.Tensor, *, activation: str = "gelu",
                        heads: int | None = None, normalize: bool = True) -> torch.Tensor:
    """CLIP text features float32 [B, D] of token ids int64 [B, T] (T <= the position table, 77 for CLIP-L), computed
    in float32 on the weights' device; see the module docstring for the equations and the weight names.

    The pooled position is each row's argmax of the ids (open_clip's pooling: the first end-of-text token, 49407,
    the largest id; padding after it, zeros or 49407, changes nothing through the causal mask). heads: default
    W / 64. normalize: divide by the L2 norm (VAR-CLIP's CLIPWrapper, normalize=True). Raises KeyError naming a
    missing weight, ValueError for an unknown activation, ids longer than the position table or out of the
    vocabulary."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")

    def w(name: str) -> torch.Tensor:
        try:
            t = weights[name]
        except KeyError:
            raise KeyError(f"the CLIP text weights have no {name}") from None
        return t.float()

    token = w(PREFIX + "embeddings.token_embedding.weight")
    positions = w(PREFIX + "embeddings.position_embedding.weight")
    device = token.device
    ids = ids.to(device=device, dtype=torch.long)
    b, t = ids.shape
    if t > positions.shape[0]:
        raise ValueError(f"{t} tokens, but the text model has {positions.shape[0]} positions")
    if int(ids.min()) < 0 or int(ids.max()) >= token.shape[0]:
        raise ValueError(f"token ids must be in 0..{token.shape[0] - 1}")
    width = token.shape[1]
    heads = heads or width // HEAD_DIM
    head_dim = width // heads
    x = token[ids] + positions[:t]
    causal = torch.full((t, t), float("-inf"), device=device).triu(1)
    for i in range(text_layers(weights)):
        p = f"{PREFIX}encoder.layers.{i}."
        h = F.layer_norm(x, (width,), w(p + "layer_norm1.weight"), w(p + "layer_norm1.bias"), LN_EPS)
        q, k, v = (F.linear(h, w(f"{p}self_attn.{n}_proj.weight"), w(f"{p}self_attn.{n}_proj.bias"))
                   .view(b, t, heads, head_dim).transpose(1, 2) for n in ("q", "k", "v"))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim) + causal
        h = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, width)
        x = x + F.linear(h, w(p + "self_attn.out_proj.weight"), w(p + "self_attn.out_proj.bias"))
        h = F.layer_norm(x, (width,), w(p + "layer_norm2.weight"), w(p + "layer_norm2.bias"), LN_EPS)
        h = _act(F.linear(h, w(p + "mlp.fc1.weight"), w(p + "mlp.fc1.bias")), activation)
        x = x + F.linear(h, w(p + "mlp.fc2.weight"), w(p + "mlp.fc2.bias"))
    x = F.layer_norm(x, (width,), w(PREFIX + "final_layer_norm.weight"), w(PREFIX + "final_layer_norm.bias"), LN_EPS)
    pooled = x[torch.arange(b, device=device), ids.argmax(dim=-1)]
    out = F.linear(pooled, w("text_projection.weight"))
    return out / out.norm(dim=-1, keepdim=True) if normalize else out
