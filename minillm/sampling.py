"""Sampling options and the logits processors every decode loop shares: the repetition
penalty, top-k, top-p and Gumbel-max sampling with one PRNG key per row."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

import mlx.core as mx


@dataclass(frozen=True)
class SamplingParams:
    """How to decode: the options `generate`, `stream_generate`, the JSON-constrained decoder,
    RL rollouts and the server take. Checked when built; temperature 0 is greedy."""

    max_new_tokens: int = 256
    min_new_tokens: int = 0  # stop tokens are masked until this many tokens are out
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    repetition_penalty: float = 1.0  # 1 = off
    repetition_context_size: int | None = None  # None = the whole context
    seed: int | None = None  # row i samples with seed + i; None = a random seed
    stop_ids: tuple[int, ...] | None = None  # None = the tokenizer's eos ids
    max_seq_len: int | None = None  # None = the model's max_position_embeddings

    def __post_init__(self):
        if self.stop_ids is not None and not isinstance(self.stop_ids, tuple):
            object.__setattr__(self, "stop_ids", tuple(self.stop_ids))
        check_sampling(
            self.temperature,
            self.top_p,
            self.top_k,
            self.repetition_penalty,
            self.max_new_tokens,
            self.min_new_tokens,
        )
        if self.max_seq_len is not None and self.max_seq_len < 2:
            raise ValueError(f"max_seq_len={self.max_seq_len} must be >= 2")

    @classmethod
    def of(cls, params: SamplingParams | None = None, **overrides) -> SamplingParams:
        """`params` (or the defaults) with keyword overrides; an unknown keyword raises."""
        names = {f.name for f in fields(cls)}
        if unknown := sorted(set(overrides) - names):
            raise TypeError(f"unknown sampling option(s) {unknown}; known: {sorted(names)}")
        base = params if params is not None else cls()
        return dataclasses.replace(base, **overrides) if overrides else base


def check_sampling(
    temperature: float,
    top_p: float,
    top_k: int,
    repetition_penalty: float,
    max_new_tokens: int,
    min_new_tokens: int,
) -> None:
    """Raise ValueError for out-of-range sampling options."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 = greedy)")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p} must be in (0, 1]")
    if top_k < 0:
        raise ValueError(f"top_k={top_k} must be >= 0 (0 = off)")
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty={repetition_penalty} must be > 0 (1 = off)")
    if max_new_tokens < 1 or min_new_tokens < 0:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} must be >= 1 and min_new_tokens={min_new_tokens} >= 0"
        )


def apply_repetition_penalty(logits: mx.array, context: mx.array, penalty: float) -> mx.array:
    """HF-style penalty on tokens present in `context` [B, T] (negative ids are ignored):
    positive logits are divided by `penalty`, negative ones multiplied."""
    V = logits.shape[-1]
    ids = mx.where(context < 0, V, context)
    seen = mx.put_along_axis(
        mx.zeros((logits.shape[0], V + 1), mx.bool_), ids, mx.array(True), axis=-1
    )[:, :V]
    penalized = mx.where(logits < 0, logits * penalty, logits / penalty)
    return mx.where(seen, penalized, logits)


def top_k_filter(logits: mx.array, k: int) -> mx.array:
    """Set all but the `k` largest logits of each row to -inf (k <= 0: no-op)."""
    V = logits.shape[-1]
    if k <= 0 or k >= V:
        return logits
    drop = mx.argpartition(-logits, kth=k - 1, axis=-1)[..., k:]
    return mx.put_along_axis(logits, drop, mx.array(-mx.inf, logits.dtype), axis=-1)


def top_p_filter(logits: mx.array, p: float) -> mx.array:
    """Keep the smallest set of tokens whose probability mass reaches `p` (at least one)."""
    if p >= 1.0:
        return logits
    probs = mx.softmax(logits, axis=-1)
    # A threshold on sorted values: cheaper on CPU than argsort + scatter back (ties are kept).
    desc = mx.sort(probs, axis=-1)[..., ::-1]
    before = mx.cumsum(desc, axis=-1) - desc
    n = mx.maximum((before < p).sum(axis=-1, keepdims=True), 1)
    return mx.where(probs >= mx.take_along_axis(desc, n - 1, axis=-1), logits, -mx.inf)


_split = mx.vmap(lambda k: mx.random.split(k))


def sample(
    logits: mx.array,
    keys: mx.array | None,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> tuple[mx.array, mx.array | None]:
    """Next token per row of `logits` [B, V]; `keys` [B, 2] holds one PRNG key per row.

    Returns the tokens and the advanced keys. Temperature 0 is argmax (keys untouched).
    """
    scores, keys = sample_scores(logits, keys, temperature, top_k, top_p)
    return mx.argmax(scores, axis=-1), keys


def sample_scores(
    logits: mx.array,
    keys: mx.array | None,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> tuple[mx.array, mx.array | None]:
    """Scores whose argmax is the sampled token (Gumbel-max), and the advanced keys; their
    descending order samples without replacement. Temperature 0: the logits themselves."""
    if temperature == 0:
        return logits, keys
    logits = top_p_filter(top_k_filter(logits / temperature, top_k), top_p)
    pair = _split(keys)
    V = logits.shape[-1]
    gumbel = mx.vmap(lambda k: mx.random.gumbel((V,), key=k))(pair[:, 1])
    return logits + gumbel, pair[:, 0]


def row_keys(seed: int, rows: int) -> mx.array:
    """One PRNG key per row: row i samples with `seed + i`, so a row's output does not depend
    on the other rows of its batch."""
    return mx.stack([mx.random.key(seed + i) for i in range(rows)])


def token_budgets(lengths: list[int], max_new_tokens: int, limit: int) -> list[int]:
    """New-token budget of each prompt within the context `limit`; empty or full prompts raise."""
    for i, n in enumerate(lengths):
        if n == 0:
            raise ValueError(f"prompt {i} is empty; give at least one token")
        if n >= limit:
            raise ValueError(
                f"prompt {i} has {n} tokens but max_seq_len={limit} leaves no room "
                "for a reply; shorten the prompt or raise max_seq_len"
            )
    return [min(max_new_tokens, limit - n) for n in lengths]
