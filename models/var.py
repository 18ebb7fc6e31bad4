"""VAR transformer (class-conditional next-scale prediction) with the official checkpoint layout.

The network only maps inputs to logits. Sampling and guidance live in `guidance/`; per-run state
(class modulation, KV cache) lives in a `VARState` owned by the caller, never in the modules.

Paper: Tian, Jiang, Yuan, Peng & Wang, "Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale
Prediction", NeurIPS 2024 (arXiv 2404.02905). Official code: FoundationVision/VAR models/var.py (`VAR`,
`autoregressive_infer_cfg`) and models/basic_var.py (`AdaLNSelfAttn`, `SelfAttention`, `FFN`, `AdaLNBeforeHead`).
Shapes: R rows (B or 2B with the null-class rows), n tokens of a scale, C = width, V codes, L = sum pn_k^2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kv_cache import KVCache
from .base import GumbelSmoothing, ScaleState, ScalewiseModel
from .schedule import ScheduledConfig
from .torch_compat import attention

# the official models' class set (ClassCondition.class_set, VARModel.class_set); the built-in models name theirs
# (models/builtin.py)
IMAGENET = "imagenet"
MAX_LOG_TEMPERATURE = math.log(100.0)
LN_EPS = 1e-6


@dataclass(frozen=True)
class ClassCondition:
    """Class conditioning for VAR: image i of a batch uses ids[i % len(ids)] (ids index the model's classes; the
    null class is `num_classes`). `class_set` names the class list a label was chosen from ("imagenet", or a
    built-in model's: models/builtin.py), None for raw ids; `label` is that label, for error messages."""

    ids: tuple[int, ...]
    class_set: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class VARConfig(ScheduledConfig):
    """Sizes of a VAR transformer, inferred from an official checkpoint (models/var_loader.py). Official models:
    d16/20/24/30 at 256 px (width 64 x depth, heads = depth) and d36 at 512 px with shared AdaLN; num_classes
    1000 (ImageNet-1k, the null class is id 1000), vocab_size 4096, latent_channels 32 (the VQ-VAE's Cvae)."""

    depth: int
    width: int
    heads: int
    patch_nums: tuple[int, ...]
    shared_adaln: bool = False
    num_classes: int = 1000
    vocab_size: int = 4096
    latent_channels: int = 32
    mlp_ratio: float = 4.0

    @property
    def scale_offsets(self) -> tuple[int, ...]:
        """Position of the first token of each scale in the flattened pyramid (`Schedule.offsets` without L)."""
        return self.schedule.offsets[:-1]


def _layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=LN_EPS)


def _adaln_linear(width: int, chunks: int) -> nn.Sequential:
    # Index 0 is the parameter-free SiLU so the Linear sits at `.1`, as in the official keys.
    return nn.Sequential(nn.SiLU(), nn.Linear(width, chunks * width))


class SelfAttention(nn.Module):
    """Multi-head attention with L2-normalised q/k and a learned per-head temperature (official basic_var.py
    `SelfAttention`, attn_l2_norm=True; the temperature starts at ln 4 and is capped at ln 100)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        # Registration order follows the official state dict.
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), math.log(4.0)))
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.mat_qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width)

    def qkv_bias(self) -> torch.Tensor:
        """(q_bias, 0, v_bias): keys have no bias. Built once per generation (VARCondition)."""
        return torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, attn_mask=None, value_weights=None,
                qkv_bias=None):
        """x [R, n, C] -> [R, n, C] (official basic_var.py SelfAttention with attn_l2_norm): q and k L2-normalised per
        head, q times exp(min(scale_mul_1H11, ln 100)), softmax scale 1. With a cache the keys/values of
        this call are appended and attention covers the cached prefix; value_weights [R, cached + n]
        multiply the values per position."""
        b, n, c = x.shape
        bias = self.qkv_bias() if qkv_bias is None else qkv_bias
        q, k, v = F.linear(x, self.mat_qkv.weight, bias).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q = F.normalize(q, dim=-1) * self.scale_mul_1H11.clamp(max=MAX_LOG_TEMPERATURE).exp()
        k = F.normalize(k, dim=-1)
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        if value_weights is not None:  # per-row, per-position multiplier on the values (not stored)
            v = v * value_weights[:, None, :, None].to(v.dtype)
        out = attention(q, k, v, attn_mask=attn_mask, scale=1.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class FeedForward(nn.Module):
    """The MLP of a block: fc2(GELU_tanh(fc1(x))) (official basic_var.py FFN)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        """[R, n, C] -> [R, n, C]."""
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    """One AdaLN transformer block (official basic_var.py AdaLNSelfAttn): x + g1 * attn(LN(x)(1 + s1) + b1), then x +
    g2 * ffn(LN(x)(1 + s2) + b2), non-affine LayerNorm, eps 1e-6. The six modulation chunks come from the class
    embedding (ada_lin) or, in shared-AdaLN models (d36), from a shared projection plus a per-block ada_gss."""

    def __init__(self, cfg: VARConfig):
        super().__init__()
        c = cfg.width
        if cfg.shared_adaln:
            self.ada_gss = nn.Parameter(torch.zeros(1, 1, 6, c))
        self.attn = SelfAttention(c, cfg.heads)
        self.ffn = FeedForward(c, round(c * cfg.mlp_ratio))
        if not cfg.shared_adaln:
            self.ada_lin = _adaln_linear(c, 6)

    def modulation(self, cond: torch.Tensor, shared: torch.Tensor | None) -> torch.Tensor:
        """[R, 6, C] chunks (gamma1, gamma2, scale1, scale2, shift1, shift2)."""
        if shared is not None:
            return (self.ada_gss + shared)[:, 0]
        return self.ada_lin(cond).view(cond.shape[0], 6, -1)

    def forward(self, x, mod, cache=None, layer=0, attn_mask=None, value_weights=None, qkv_bias=None, prune=None):
        """x [R, n, C] with modulation mod [R, 6, C] -> [R, n, C]; cache, attn_mask, value_weights and qkv_bias as in
        SelfAttention.forward; prune: a models/pruning.py PrunedScale (token pruning) or None."""
        g1, g2, s1, s2, b1, b2 = mod[:, :, None].unbind(1)
        if prune is None:
            x = x + self.attn(_layer_norm(x) * (1 + s1) + b1, cache, layer, attn_mask, value_weights, qkv_bias) * g1
            return x + self.ffn(_layer_norm(x) * (1 + s2) + b2) * g2
        x = x + prune.branch(layer, "attn", x, lambda y, idx: self.attn(
            _layer_norm(y) * (1 + s1) + b1, cache, layer, attn_mask, prune.value_weights(layer, value_weights, idx),
            qkv_bias) * g1, cached=True)
        return x + prune.branch(layer, "ffn", x, lambda y, idx: self.ffn(_layer_norm(y) * (1 + s2) + b2) * g2)


class HeadNorm(nn.Module):
    """Holds the head's AdaLN projection (`head_nm.ada_lin`, 2 chunks: scale, shift) in the official key layout."""

    def __init__(self, width: int):
        super().__init__()
        self.ada_lin = _adaln_linear(width, 2)


@dataclass
class VARCondition:
    """Everything that depends only on the class rows: computed once per generation."""

    embedding: torch.Tensor        # [R, C]
    block_mods: list[torch.Tensor]  # depth x [R, 6, C]
    head_mod: torch.Tensor          # [R, 2, C] (scale, shift)
    qkv_biases: list[torch.Tensor] = field(default_factory=list)  # depth x [3C], not per row

    def select(self, rows: slice) -> "VARCondition":
        """The same condition restricted to `rows` (the conditional rows when the unconditional branch stops)."""
        return VARCondition(self.embedding[rows], [m[rows] for m in self.block_mods], self.head_mod[rows],
                              self.qkv_biases)


class VARTransformer(nn.Module):
    """VAR's next-scale prediction network with the official state-dict layout (FoundationVision/VAR models/var.py
    `VAR`): class embedding (num_classes + 1 rows, the last is the null class), start tokens, absolute position
    and level embeddings, `depth` AdaLN blocks and a head over the V codes. It maps inputs to logits only; per-
    run state lives in a VARState."""

    def __init__(self, cfg: VARConfig):
        super().__init__()
        self.config = cfg
        c, L = cfg.width, cfg.seq_len
        self.pos_start = nn.Parameter(torch.zeros(1, cfg.schedule.lengths[0], c))
        self.pos_1LC = nn.Parameter(torch.zeros(1, L, c))
        self.word_embed = nn.Linear(cfg.latent_channels, c)
        self.build_condition_table(cfg)  # registered here: the official state-dict order
        self.lvl_embed = nn.Embedding(len(cfg.patch_nums), c)
        if cfg.shared_adaln:
            self.shared_ada_lin = _adaln_linear(c, 6)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.head_nm = HeadNorm(c)
        self.head = nn.Linear(c, cfg.vocab_size)
        self.register_buffer("levels", cfg.schedule.levels(), persistent=False)  # the scale of each position

    def build_condition_table(self, cfg: VARConfig) -> None:
        """The condition's parameters: VAR's class table `class_emb` (num_classes + 1 rows, the last the null
        class). A family with another condition (VAR-CLIP, models/var_clip.py) registers its own here."""
        self.class_emb = nn.Embedding(cfg.num_classes + 1, cfg.width)

    def condition_embedding(self, labels: torch.Tensor) -> torch.Tensor:
        """The condition vector [R, C] of each row, which is the first-scale token (with pos_start) and the AdaLN
        condition: class_emb(labels) for class ids int64 [R]."""
        return self.class_emb(labels)

    # -- pieces used by both the cached and the teacher-forced paths -------------------------
    def condition(self, labels: torch.Tensor) -> VARCondition:
        """Everything that depends only on the condition rows (class ids int64 [R] for VAR; see
        `condition_embedding`): embeddings [R, C], block modulations, head modulation and the fused q/k/v biases,
        computed once per generation."""
        emb = self.condition_embedding(labels)
        shared = None
        if self.config.shared_adaln:
            shared = self.shared_ada_lin(emb).view(emb.shape[0], 1, 6, -1)
        mods = [blk.modulation(emb, shared) for blk in self.blocks]
        # The fused attention biases are constants of the weights: built here once per generation
        # instead of once per layer and scale.
        biases = [blk.attn.qkv_bias() for blk in self.blocks]
        return VARCondition(emb, mods, self.head_nm.ada_lin(emb).view(emb.shape[0], 2, -1), biases)

    def position_embedding(self, start: int, end: int) -> torch.Tensor:
        """lvl_embed(level) + pos_1LC for the flattened positions start..end-1: [end - start, C]."""
        return self.lvl_embed(self.levels[start:end]) + self.pos_1LC[0, start:end]

    def embed_start(self, cond: VARCondition) -> torch.Tensor:
        """Scale 0 input [R, n_0, C]: class embedding + pos_start + position embedding."""
        n = self.pos_start.shape[1]
        return cond.embedding[:, None] + self.pos_start + self.position_embedding(0, n)

    def embed_scale(self, k: int, latent_tokens: torch.Tensor) -> torch.Tensor:
        """Scale k >= 1 input from the downsampled running latent, [R, n_k, Cvae] -> [R, n_k, C]."""
        start = self.config.schedule.offsets[k]
        x = self.word_embed(latent_tokens.to(self.word_embed.weight.dtype))
        return x + self.position_embedding(start, start + latent_tokens.shape[1])

    def logits(self, h: torch.Tensor, cond: VARCondition) -> torch.Tensor:
        """Head: LN(h)(1 + scale) + shift, then the linear head, in float32: [R, n, C] -> float32 [R, n, V]."""
        scale, shift = cond.head_mod.float()[:, :, None].unbind(1)
        h = _layer_norm(h.float()) * (1 + scale) + shift
        return self.head(h.to(self.head.weight.dtype)).float()

    def run_blocks(self, x, cond: VARCondition, cache=None, attn_mask=None, value_weights=None, prune=None):
        """All blocks on x [R, n, C]; with a cache, its length advances by n afterwards (by the kept tokens under
        token pruning: `prune`, a models/pruning.py PrunedScale)."""
        for i, blk in enumerate(self.blocks):
            bias = cond.qkv_biases[i] if cond.qkv_biases else None
            x = blk(x, cond.block_mods[i], cache, i, attn_mask, value_weights, bias, prune)
        if cache is not None:
            cache.advance(x.shape[1] if prune is None else prune.count)
        return x

    # -- teacher forcing (training-style full sequence, used to verify the cached path) -------
    def forward_teacher(self, labels: torch.Tensor, latent_inputs: torch.Tensor) -> torch.Tensor:
        """Logits [B, L, V] for the whole sequence; labels: the condition rows `condition_embedding` takes;
        latent_inputs [B, L - n_0, Cvae] (no label dropout)."""
        cond = self.condition(labels)
        x = torch.cat((self.embed_start(cond), self.embed_scale_all(latent_inputs)), dim=1)
        mask = self.config.schedule.attention_mask(causal=True, device=x.device).to(x.dtype)
        return self.logits(self.run_blocks(x, cond, attn_mask=mask), cond)

    def embed_scale_all(self, latent_inputs):
        """Inputs of scales 1..K-1 at once: word_embed(latent_inputs [B, L - n_0, Cvae]) + their position embeddings."""
        n0 = self.pos_start.shape[1]
        x = self.word_embed(latent_inputs.to(self.word_embed.weight.dtype))
        return x + self.position_embedding(n0, n0 + latent_inputs.shape[1])


class VARState(ScaleState):
    """Per-generation state: class rows (conditional first, then unconditional) and the KV cache."""

    def __init__(self, cond: VARCondition, cache: KVCache, batch: int):
        self.cond, self.cache, self.batch = cond, cache, batch

    @property
    def rows(self) -> int:
        return self.cond.embedding.shape[0]

    @property
    def has_uncond(self) -> bool:
        """Whether the unconditional rows are still computed."""
        return self.rows > self.batch

    def set_uncond(self, active: bool):
        """Run the unconditional rows at this scale or not. With a KV cache they can only be dropped
        for good (a suffix of scales runs unguided): the cache of skipped scales would be missing."""
        if active and not self.has_uncond:
            raise RuntimeError("the unconditional branch cannot restart once its KV cache was dropped")
        if not active and self.has_uncond:
            rows = slice(0, self.batch)
            self.cond = self.cond.select(rows)
            self.cache.keep_rows(rows)

    def close(self):
        self.cache.release()


class VARModel(ScalewiseModel):
    """A VAR transformer paired with its VQ-VAE: what the sampler drives and ComfyUI manages.

    Conditioning: class ids (see `prepare_condition`); the unconditional rows use the null class `num_classes`.
    Every scale attends to all earlier ones through the KV cache (block-causal attention over the token pyramid)."""

    family = "var"
    smoothing = GumbelSmoothing(replaces_draw=False, guided_scales_only=False)  # VAR.autoregressive_infer_cfg
    class_names: tuple[str, ...] | None = None  # set for models whose classes are not ImageNet's
    _class_set: str | None = None  # set by the built-in models' loader (models/builtin.py)

    @property
    def class_set(self) -> str | None:
        """The class list the ids index: a built-in model's (set by its loader, models/builtin.py; any name other
        than "imagenet" is one), else "imagenet" for a 1000-class model (the official ones), else None (a VAR with
        its own classes, e.g. a copy of a built-in model in models/var, whose ids only class_id can choose)."""
        if self._class_set is not None:
            return self._class_set
        return IMAGENET if self.num_classes == 1000 else None

    @class_set.setter
    def class_set(self, value: str | None) -> None:
        self._class_set = value

    @property
    def _builtin(self) -> bool:
        """Whether the ids index a built-in model's named class list (a class set other than ImageNet's)."""
        return self.class_set not in (None, IMAGENET)

    @property
    def autoregressive(self) -> bool:
        """Always True: every scale attends to the cached earlier scales."""
        return True

    @property
    def num_classes(self) -> int:
        """Number of real classes; id `num_classes` is the null (unconditional) class."""
        return self.config.num_classes

    def describe(self) -> str:
        """What this model is, for error messages: its class set and, for files, the name it was loaded from."""
        if self._builtin:
            return f"the built-in {self.class_set} model ({self.num_classes} classes: {', '.join(self.class_names)})"
        if self.class_set == IMAGENET:
            what = f"an ImageNet VAR model ({self.num_classes} classes)"
        else:
            what = f"a VAR model with its own {self.num_classes} classes"
        return f"{what} loaded from {self.source_name!r}" if self.source_name else what

    def prepare_condition(self, conditioning, batch_size: int | None, first: int = 0) -> torch.Tensor:
        """Class ids int64 [B]: image i gets ids[(first + i) % len] (B = batch_size, or len(ids) when None; `first`
        is the index of the batch's first image, the sampler's batch_index).

        conditioning: a ClassCondition, an int, a list/tuple of ints or an int tensor; `num_classes` is the null
        class. Raises TypeError for other conditioning (text is for Switti), ValueError for an empty list, an id
        outside 0..num_classes, a ClassCondition labelled with another class set than this model's, or
        batch_size < 1."""
        if isinstance(conditioning, ClassCondition):
            self._check_class_set(conditioning)
            ids = list(conditioning.ids)
        elif isinstance(conditioning, torch.Tensor):
            ids = conditioning.flatten().tolist()
        elif isinstance(conditioning, int):
            ids = [conditioning]
        elif isinstance(conditioning, (list, tuple)):
            ids = list(conditioning)
        else:
            raise TypeError(f"conditioning: this VAR model needs conditioning from the Class (VAR) node (a "
                            f"ClassCondition, or class ids), got {type(conditioning).__name__}; text conditioning "
                            "is for Switti and VAR-CLIP models")
        if not ids:
            raise ValueError("conditioning: no class given: pass at least one class id")
        for c in ids:
            if isinstance(c, bool) or int(c) != c or not 0 <= c <= self.num_classes:
                raise ValueError(f"conditioning: class id {c!r} is out of range for {self.describe()}: use "
                                 f"0..{self.num_classes - 1}, or {self.num_classes} for its null (unconditional) "
                                 "class")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        count = len(ids) if batch_size is None else int(batch_size)
        ids = [ids[(first + i) % len(ids)] for i in range(count)]
        return torch.tensor([int(c) for c in ids], dtype=torch.long)

    def _check_class_set(self, conditioning: ClassCondition) -> None:
        """A class chosen by label must come from this model's class list (ids alone cannot be checked)."""
        if conditioning.class_set is None or conditioning.class_set == self.class_set:
            return
        if self._builtin:
            own = self.class_set
            example = f"{own} 5: {self.class_names[5]}" if len(self.class_names) > 5 else f"{own} 0: ..."
            pick = f"pick one of the '{own} N: name' entries (e.g. '{example}')"
        elif self.class_set == IMAGENET:
            pick = "pick one of the ImageNet entries 'N: name' (e.g. '207: golden retriever')"
        else:
            pick = f"set class_id to one of its ids 0..{self.num_classes - 1}"
        source = ("an ImageNet class" if conditioning.class_set == IMAGENET
                  else f"a class of the built-in {conditioning.class_set} model")
        raise ValueError(f"conditioning: class {conditioning.label!r} is {source}, but the model is "
                         f"{self.describe()}: {pick} in the Class (VAR) node")

    def batch_size(self, labels: torch.Tensor) -> int:
        return labels.shape[0]

    def start(self, labels: torch.Tensor, with_uncond: bool) -> VARState:
        """Begin a generation for class ids int64 [B] (from `prepare_condition`); the null class rows (id
        `num_classes`, the official `cond_BD` of `autoregressive_infer_cfg`) follow when `with_uncond`. Allocates a
        KV cache of depth x R x heads x L x head_dim in the model's dtype on its device."""
        batch = labels.shape[0]
        if with_uncond:
            labels = torch.cat((labels, torch.full_like(labels, self.num_classes)))
        cfg = self.config
        cache = KVCache(cfg.depth, labels.shape[0], cfg.heads, cfg.seq_len, cfg.width // cfg.heads,
                        self.dtype, self.weight_device)
        return VARState(self.transformer.condition(labels.to(self.weight_device)), cache, batch)

    def forward_scale(self, state: VARState, k: int, latent_tokens: torch.Tensor | None,
                      value_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Logits float32 [R, n_k, V] of scale k. `latent_tokens` [B, n_k, Cvae] (None at k = 0) feed both
        branches identically. `value_weights` [R, cached + n_k] scale the attention values per position.
        Scale 0's input is the class embedding + pos_start (the official `sos`), later scales' word_embed of the
        latent; each call appends n_k positions to the KV cache (official `autoregressive_infer_cfg`)."""
        t = self.transformer
        if k == 0:
            x = t.embed_start(state.cond)
        else:
            x = t.embed_scale(k, latent_tokens)
            x = x.repeat(state.rows // x.shape[0], 1, 1)
        prune = state.pruning.scale(k) if state.pruning is not None else None  # token pruning (models/pruning.py)
        h = t.run_blocks(x, state.cond, state.cache, value_weights=value_weights, prune=prune)
        return t.logits(h, state.cond)
