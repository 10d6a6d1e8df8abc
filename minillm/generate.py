"""Batched, KV-cached text generation: greedy or sampled (temperature, top-k, top-p)."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import mlx.core as mx

from minillm.decode import Decoder
from minillm.json_constraint import JsonPrefix
from minillm.models import Model


@dataclass
class Generation:
    """The result for one prompt. `tokens` excludes the stop token."""

    tokens: list[int]
    text: str
    finish_reason: str
    prompt_tokens: int
    prompt_time: float
    gen_time: float


@dataclass
class Token:
    """One streamed step of sequence `index`; `text` is the newly printable text."""

    index: int
    token: int
    text: str
    finish_reason: str | None = None


class StreamingDetokenizer:
    """Incremental decode that holds back text while a multi-byte character is incomplete."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.segment: list[int] = []

    def add(self, token: int) -> str:
        self.segment.append(token)
        text = self.tokenizer.decode(self.segment)
        if text.endswith("\ufffd"):
            return ""
        # Byte-level BPE: once the segment ends on a whole character, later tokens decode
        # independently, so the segment can restart (keeps each step O(1)).
        self.segment = []
        return text

    def flush(self) -> str:
        text = self.tokenizer.decode(self.segment) if self.segment else ""
        self.segment = []
        return text


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


def stream_generate(
    model: Model,
    tokenizer,
    prompts: list[list[int]],
    *,
    max_new_tokens: int = 256,
    min_new_tokens: int = 0,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    repetition_penalty: float = 1.0,
    repetition_context_size: int | None = None,
    seed: int | None = None,
    stop_ids: Iterable[int] | None = None,
    max_seq_len: int | None = None,
) -> Iterator[Token | list[Generation]]:
    """Generate for all `prompts` at once, yielding a `Token` per running sequence and step,
    then the `list[Generation]`. Prompts are left-padded; row `i` samples with seed `seed + i`,
    so its output does not depend on the other rows."""
    check_sampling(temperature, top_p, top_k, repetition_penalty, max_new_tokens, min_new_tokens)
    if not prompts:
        yield []
        return
    lengths = [len(p) for p in prompts]
    budgets = token_budgets(
        lengths, max_new_tokens, max_seq_len or model.args.max_position_embeddings
    )
    B, P, steps = len(prompts), max(lengths), max(budgets)
    V = model.args.vocab_size

    stop = {t for t in (tokenizer.eos_ids if stop_ids is None else stop_ids) if 0 <= t < V}
    vocab = mx.arange(V)
    stop_mask = (vocab[:, None] == mx.array(sorted(stop) or [-1])[None]).any(axis=1)
    banned = vocab >= tokenizer.vocab_size if tokenizer.vocab_size < V else None

    pad_id = tokenizer.pad_id or 0
    ids = mx.array([[pad_id] * (P - n) + list(p) for p, n in zip(prompts, lengths, strict=True)])
    pad = None
    if min(lengths) < P:
        pad = mx.array([[j < P - n for j in range(P)] for n in lengths])
        pad = mx.concatenate([pad, mx.zeros((B, steps), mx.bool_)], axis=1)
    context = mx.where(pad[:, :P], -1, ids) if pad is not None else ids
    window = repetition_context_size
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    keys = mx.stack([mx.random.key(seed + i) for i in range(B)]) if temperature > 0 else None
    decoder = Decoder(model, pad)

    def step(x: mx.array, n: int) -> mx.array:
        nonlocal context, keys
        logits = decoder(x).astype(mx.float32)
        if banned is not None:
            logits = mx.where(banned, -mx.inf, logits)
        if repetition_penalty != 1.0:
            ctx = context if window is None else context[:, -window:]
            logits = apply_repetition_penalty(logits, ctx, repetition_penalty)
        if n < min_new_tokens:
            logits = mx.where(stop_mask, -mx.inf, logits)
        y, keys = sample(logits, keys, temperature, top_k, top_p)
        if repetition_penalty != 1.0:
            context = mx.concatenate([context, y[:, None].astype(context.dtype)], axis=1)
        return y

    detoks = [StreamingDetokenizer(tokenizer) for _ in range(B)]
    out: list[list[int]] = [[] for _ in range(B)]
    reasons: list[str | None] = [None] * B
    tic = time.perf_counter()
    y = step(ids, 0)
    mx.async_eval(y)
    prompt_time = 0.0
    for n in range(steps):
        if n + 1 < steps:
            next_y = step(y[:, None], n + 1)
            mx.async_eval(next_y)
        tokens = y.tolist()
        if n == 0:
            prompt_time = time.perf_counter() - tic
            tic = time.perf_counter()
        for i, t in enumerate(tokens):
            if reasons[i] is not None:
                continue
            if t in stop:
                reasons[i] = "stop"
                yield Token(i, t, detoks[i].flush(), "stop")
                continue
            out[i].append(t)
            text = detoks[i].add(t)
            if len(out[i]) >= budgets[i]:
                reasons[i] = "length"
                yield Token(i, t, text + detoks[i].flush(), "length")
            else:
                yield Token(i, t, text)
        if all(r is not None for r in reasons):
            break
        y = next_y
    gen_time = time.perf_counter() - tic
    yield [
        Generation(toks, tokenizer.decode(toks), r, n, prompt_time, gen_time)
        for toks, r, n in zip(out, reasons, lengths, strict=True)
    ]


def stream_generate_constrained(
    model: Model,
    tokenizer,
    prompts: list[list[int]],
    *,
    max_new_tokens: int = 256,
    min_new_tokens: int = 0,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    repetition_penalty: float = 1.0,
    repetition_context_size: int | None = None,
    seed: int | None = None,
    stop_ids: Iterable[int] | None = None,
    max_seq_len: int | None = None,
    constraint_factory: Callable[[], JsonPrefix] = JsonPrefix,
    candidates: int = 64,
) -> Iterator[Token | list[Generation]]:
    """`stream_generate` for ONE prompt whose text must stay a valid prefix of
    `constraint_factory()` (by default a JSON object, as Ollama's `format: "json"`).

    Each step walks the candidate tokens in sampling order (Gumbel-perturbed filtered logits,
    i.e. sampling without replacement; logit order when greedy): the first `candidates`, then
    the whole vocabulary. A candidate is taken if its text keeps the prefix valid (a trailing
    incomplete UTF-8 character is held pending; it must be inside a string) and the shortest
    completion (`closing()`) still fits in the tokens left, so the value is complete whenever
    the budget allows: near the end only tokens that close strings/containers qualify. Stop
    tokens are never taken; a complete value ends the reply with finish_reason "stop", the
    budget with "length" (a valid but incomplete prefix, as Ollama with `num_predict`).
    `min_new_tokens` has no effect."""
    check_sampling(temperature, top_p, top_k, repetition_penalty, max_new_tokens, min_new_tokens)
    if len(prompts) != 1:
        raise ValueError(f"constrained generation takes one prompt, got {len(prompts)}")
    prompt = [int(t) for t in prompts[0]]
    limit = max_seq_len or model.args.max_position_embeddings
    (budget,) = token_budgets([len(prompt)], max_new_tokens, limit)
    V = model.args.vocab_size
    usable = min(V, tokenizer.vocab_size)
    stop = {t for t in (tokenizer.eos_ids if stop_ids is None else stop_ids) if 0 <= t < V}
    stop_token = min(stop, default=-1)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    keys = mx.random.key(seed)[None] if temperature > 0 else None
    cache = model.make_cache()
    context = list(prompt)
    window = repetition_context_size

    def scores(x: mx.array) -> tuple[mx.array, mx.array]:
        nonlocal keys
        logits = model.logits(model.hidden(x, cache=cache)[:, -1, :]).astype(mx.float32)
        if repetition_penalty != 1.0:
            ctx = mx.array([context if window is None else context[-window:]])
            logits = apply_repetition_penalty(logits, ctx, repetition_penalty)
        s, keys = sample_scores(logits, keys, temperature, top_k, top_p)
        return s[0], logits[0]

    checker = constraint_factory()  # state after the emitted text
    view = checker  # state including the pending (incomplete-character) text
    segment: list[int] = []  # tokens of the pending text
    single: dict[int, str] = {}

    def decode(t: int) -> str:
        if segment:
            return tokenizer.decode([*segment, t])
        if t not in single:
            single[t] = tokenizer.decode([t])
        return single[t]

    def attempt(t: int, left: int | None) -> tuple[JsonPrefix, str, bool] | None:
        """(state, text, pending) if token `t` may follow with `left` tokens after it
        (None: however short the budget)."""
        if t in stop or t >= usable:
            return None
        text = decode(t)
        pending = text.endswith("\ufffd")
        body = text.rstrip("\ufffd") if pending else text
        if not text:
            return None  # no progress (e.g. a special token)
        c = checker.clone()
        if not c.feed(body) or (pending and not c.in_string):
            return None
        if left is not None and not c.complete and len(c.closing()) > left:
            return None
        return c, text, pending

    def choose(s: mx.array, logits: mx.array, left: int) -> tuple[int, JsonPrefix, str, bool]:
        k = min(candidates, V)
        top = mx.argpartition(-s, kth=k - 1)[:k] if k < V else mx.arange(V)
        top = top[mx.argsort(-s[top])].tolist()
        for t in top:
            if (got := attempt(t, left)) is not None:
                return (t, *got)
        # The rest of the vocabulary in sampling order, then in logit order (the filtered
        # tokens); then, if the value cannot be completed in time anyway, any valid token.
        tried = set(top)
        for lim in (left, None):
            for order in (mx.argsort(-s).tolist(), mx.argsort(-logits).tolist()):
                for t in order:
                    if t not in tried and (got := attempt(t, lim)) is not None:
                        return (t, *got)
                tried = set()
        raise RuntimeError(f"no token continues the constrained output {view.closing()!r}")

    out: list[int] = []
    reason = "length"
    tic = time.perf_counter()
    s, logits = scores(mx.array([prompt]))
    mx.eval(s, logits)
    prompt_time = time.perf_counter() - tic
    tic = time.perf_counter()
    for n in range(budget):
        t, state, text, pending = choose(s, logits, budget - n - 1)
        out.append(t)
        context.append(t)
        segment.append(t)
        view = state
        emit = ""
        if not pending:
            checker, segment, emit = state, [], text
        if checker.complete:
            reason = "stop"
            yield Token(0, t, emit)
            yield Token(0, stop_token, "", "stop")
            break
        if n + 1 == budget:
            yield Token(0, t, emit + (tokenizer.decode(segment) if segment else ""), "length")
            break
        yield Token(0, t, emit)
        s, logits = scores(mx.array([[t]]))
    gen_time = time.perf_counter() - tic
    yield [Generation(out, tokenizer.decode(out), reason, len(prompt), prompt_time, gen_time)]


def generate(
    model: Model,
    tokenizer,
    prompts: list[list[int]],
    *,
    max_new_tokens: int = 256,
    min_new_tokens: int = 0,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    repetition_penalty: float = 1.0,
    repetition_context_size: int | None = None,
    seed: int | None = None,
    stop_ids: Iterable[int] | None = None,
    max_seq_len: int | None = None,
) -> list[Generation]:
    """Generate a reply for each prompt (token ids); see `stream_generate`."""
    return deque(
        stream_generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
            repetition_context_size=repetition_context_size,
            seed=seed,
            stop_ids=stop_ids,
            max_seq_len=max_seq_len,
        ),
        maxlen=1,
    )[0]
