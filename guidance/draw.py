"""Token drawing: top-k / top-p filtering, per-image random streams, VAR's Gumbel smoothing.

Nothing here reads a tensor value on the host, so a GPU run never waits for the device per scale.

Logits are float32 [B, n, V] (B images, n tokens of a scale, V codes). The filters and the draw reproduce the
official FoundationVision/VAR models/helpers.py `sample_with_top_k_top_p_` (top-k, then the top-p nucleus, then
torch.multinomial) and `gumbel_softmax_with_rng`; Switti's models/helpers.py has the same functions.
"""
from __future__ import annotations

import torch


def filter_logits_(logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """In place: -inf below the k-th largest logit (ties kept), then outside the top-p nucleus
    (ascending cumulative softmax, the largest entry always kept). 0 disables either filter; top_k >= V keeps
    every code. logits: float [..., V], modified in place and returned. Formula: official VAR models/helpers.py
    `sample_with_top_k_top_p_` (entries whose ascending cumulative probability is <= 1 - top_p are dropped)."""
    vocab = logits.shape[-1]
    if top_k > 0 and top_p > 0 and top_k < vocab and logits.device.type != "cpu":
        # The sort-free path wins where sorting is the cost (GPUs); on the CPU its dozen extra
        # full-row passes cost more than the sort saves (measured: 1.5x slower at 4096 codes).
        return top_k_top_p_sort_free_(logits, top_k, top_p)
    if top_k > 0:
        kth = logits.topk(min(top_k, vocab), dim=-1, sorted=False).values.amin(-1, keepdim=True)
        logits.masked_fill_(logits < kth, float("-inf"))
    if top_p > 0:
        sorted_logits, order = logits.sort(dim=-1, descending=False)
        drop = _nucleus_drop(sorted_logits, top_p)
        logits.masked_fill_(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def _nucleus_drop(ascending: torch.Tensor, top_p: float) -> torch.Tensor:
    drop = ascending.softmax(-1).cumsum(-1) <= 1 - top_p
    drop[..., -1] = False
    return drop


def top_k_top_p_sort_free_(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Both filters without sorting the vocabulary: one sorted top-k replaces the full sort.

    After top-k the ascending sort of the full row is (-inf x (V - n), kth x (n - k), the top-k
    ascending), n = entries >= kth (ties kept). That vector is rebuilt exactly, so its softmax and
    cumulative sum, and hence how many entries are dropped, are bit for bit those of the full sort.
    The dropped entries are the D smallest; among entries equal to the largest dropped value the
    lowest vocabulary indices go first, as a stable sort orders them.

    logits: float [..., V], modified in place and returned; requires 0 < top_k <= V and 0 < top_p."""
    vocab = logits.shape[-1]
    values, _ = logits.topk(top_k, dim=-1, sorted=True)  # descending
    kth = values[..., -1:]
    logits.masked_fill_(logits < kth, float("-inf"))
    kept = (logits >= kth).sum(-1, keepdim=True)  # n, never read on the host
    slot = torch.arange(vocab - top_k, device=logits.device)
    prefix = torch.where(slot >= vocab - kept, kth, float("-inf"))  # ties of kth outside the top-k
    ascending = torch.cat((prefix, values.flip(-1)), dim=-1)
    dropped = _nucleus_drop(ascending, top_p).sum(-1, keepdim=True)
    limit = ascending.gather(-1, (dropped - 1).clamp(min=0))  # largest dropped value
    lower = logits < limit
    equal = logits == limit
    rank = equal.cumsum(-1)  # 1-based position among the entries equal to the limit
    mask = lower | (equal & (rank <= dropped - lower.sum(-1, keepdim=True)))
    return logits.masked_fill_(mask, float("-inf"))


GOLDEN_GAMMA = 0x9E3779B97F4A7C15   # SplitMix64's increment (Steele, Lea & Flood 2014, "Fast splittable PRNGs")
MASK64 = 2**64 - 1


def image_seed(seed: int, index: int) -> int:
    """Seed of the random stream of image `index` of a run with `seed`.

    Image 0 uses the seed itself, so a batch of one is seeded as the official VAR/Switti samplers seed their
    generator. Image i >= 1 uses the i-th output of SplitMix64 started from `seed` (state seed + i * 0x9E37...15
    mod 2^64, then its finaliser): streams of nearby seeds never repeat each other, so a run with seed + 1 gives a
    whole new batch, as ComfyUI's "increment" control expects (with seed + i every run repeated all but one image
    of the previous run). Pure function of (seed, index): image i is the same whatever the batch size.
    Returns an int in [0, 2^64); the seed is taken mod 2^64. Raises ValueError for index < 0."""
    seed, index = int(seed) & MASK64, int(index)
    if index < 0:
        raise ValueError(f"image index must be >= 0, got {index}")
    if index == 0:
        return seed
    z = (seed + index * GOLDEN_GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def make_generators(seed: int, batch: int, device, batch_index: int = 0) -> list[torch.Generator]:
    """One stream per image: image j of this batch is image `batch_index + j` of the seed (see image_seed), so an
    image never depends on the batch it was drawn in, and `batch_index` re-makes image i alone. Devices whose
    torch.Generator cannot be created (DirectML: "Device type PRIVATEUSEONE is not supported for torch.Generator()
    api", microsoft/DirectML#374) get CPU generators; their noise is drawn on the CPU and moved. Returns `batch`
    torch.Generator objects."""
    device = torch.device(device)
    try:
        torch.Generator(device=device)
    except RuntimeError:
        device = torch.device("cpu")
    return [torch.Generator(device=device).manual_seed(image_seed(seed, batch_index + j)) for j in range(batch)]


def _exponential(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Exp(1) noise shaped like `like`, drawn on the generator's device, returned on `like`'s."""
    noise = torch.empty(like.shape, dtype=like.dtype, device=generator.device).exponential_(generator=generator)
    return noise.to(like.device)


def draw_tokens(filtered: torch.Tensor, generators) -> torch.Tensor:
    """One draw per token from softmax(filtered): float logits [B, n, V] (-inf = filtered out) -> int64 [B, n] in
    [0, V); `generators` holds one torch.Generator per image (B of them).

    argmax(p / q), q ~ Exp(1) per image stream: exactly what torch.multinomial does for one sample
    (same noise, same stream position), minus its validity checks that read the probabilities on the
    host; `check_probabilities` does that once per run instead."""
    probs = filtered.softmax(-1)
    noise = torch.stack([_exponential(p, g) for p, g in zip(probs, generators)])
    return (probs / noise).argmax(-1)


def invalid_probabilities(filtered: torch.Tensor) -> torch.Tensor:
    """Device-side flag (bool scalar tensor, not read on the host): some row of `filtered` [B, n, V] has no finite
    largest logit to draw from (NaN, +inf, or all -inf)."""
    return ~filtered.amax(-1).isfinite().all()  # amax propagates NaN


def check_probabilities(flag: torch.Tensor | None) -> None:
    """The deferred validity check of the draws (one host read per run): raises RuntimeError when `flag` (the OR
    of the run's `invalid_probabilities`) is set, with torch.multinomial's own wording; None = nothing drawn."""
    if flag is not None and bool(flag):
        raise RuntimeError("the logits contain NaN or infinity (a numerical overflow in the model?): "
                           "probability tensor contains either inf, nan or element < 0")


def smooth_probabilities(logits: torch.Tensor, ratio: float, generators) -> torch.Tensor:
    """VAR's `more_smooth`: Gumbel-softmax of the logits sharpened by (1 + ratio), at temperature
    max(0.27 (1 - 0.95 ratio), 0.005). VAR passes the top-k/top-p filtered logits, after drawing the scale's token
    indices; Switti the unfiltered ones, instead of a draw (`models.base.GumbelSmoothing`).

    logits: float [B, n, V] (-inf = filtered out); ratio = k / (K - 1) in [0, 1]; one generator per image. Returns
    probabilities float [B, n, V] (rows sum to 1) with Gumbel noise -log(Exp(1)). Formula: official VAR
    models/var.py `autoregressive_infer_cfg` (`gum_t`, "refer to mask-git") and models/helpers.py
    `gumbel_softmax_with_rng`; Switti models/pipeline.py the same."""
    tau = max(0.27 * (1 - 0.95 * ratio), 0.005)
    noise = torch.stack([-_exponential(row, g).log() for row, g in zip(logits, generators)])
    return ((logits * (1 + ratio) + noise) / tau).softmax(-1)


def check_sampling_args(top_k: int, top_p: float, vocab_size: int | None = None) -> None:
    """Raise ValueError unless top_k is an integer >= 0 and top_p is in [0, 1] (the message names the value, and
    the vocabulary size V when given)."""
    # k >= vocab_size keeps every code, like 0: one widget value (VAR's 900) then suits every model.
    if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 0:
        vocab = "the vocabulary size V" if vocab_size is None else vocab_size
        raise ValueError(f"top_k must be an integer >= 0 (0 or >= {vocab} = off, 1 = greedy), got {top_k!r}")
    if not (0.0 <= float(top_p) <= 1.0):
        raise ValueError(f"top_p must be in [0, 1] (0 or 1 = off), got {top_p!r}")


def per_draw(logits: torch.Tensor, groups: int) -> torch.Tensor:
    """The logits as one distribution a row: float [B, n, V] -> [B, n G, V / G] for a model with `token_groups`
    G > 1 (bitwise tokens: each position's V holds G consecutive groups, models.base.ScalewiseModel.token_groups);
    G = 1 returns `logits` itself. Filtering and drawing then act per group, as the official Infinity sampler
    reshapes [B, h w, 2 d] -> [B, h w d, 2] (FoundationVision/Infinity infinity/models/infinity.py)."""
    return logits if groups == 1 else logits.reshape(logits.shape[0], -1, logits.shape[-1] // groups)


def token_log_probability(logits: torch.Tensor, tokens: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """log p of the drawn token per position: logits float [B, n, V], tokens int64 [B, n] (G = 1) or [B, n, G] ->
    float [B, n] <= 0. With G > 1 groups, the mean over the groups of log p(token_g) under each group's softmax: the
    log of the geometric mean per group (per bit for Infinity), so that confidences stay on one scale whatever G
    (the joint probability of 32 bits would be their product)."""
    if groups == 1:
        return logits.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
    b, n, v = logits.shape
    return logits.view(b, n, groups, v // groups).log_softmax(-1).gather(-1, tokens[..., None])[..., 0].mean(-1)

