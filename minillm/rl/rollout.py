"""Sampled rollouts for RL: G samples per prompt in one batched, KV-cached generation, keeping
the exact sampled token ids and their behaviour log-probs (`log_softmax(logits / T)` at the
sampled id, before top-p truncation, as the learner recomputes them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import mlx.core as mx

from minillm.decode import Decoder
from minillm.generate import check_sampling, sample, token_budgets


@dataclass
class Sample:
    """One sampled reply: token ids (ending with the stop token when `finish_reason` is
    "stop"), their behaviour log-probs, why it ended, and the text (stop token excluded)."""

    tokens: list[int]
    logprobs: list[float]
    finish_reason: str
    text: str = ""
    extra: dict = field(default_factory=dict)


def rollout(
    model,
    tokenizer,
    prompts: list[list[int]],
    group_size: int = 8,
    *,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    max_seq_len: int | None = None,
) -> list[list[Sample]]:
    """`group_size` samples for each prompt (token ids); returns one list of Samples per prompt.

    Row `r = i * group_size + j` samples with seed `seed + r`. Temperature must be > 0."""
    check_sampling(temperature, top_p, 0, 1.0, max_new_tokens, 0)
    if temperature <= 0:
        raise ValueError("RL rollouts sample: temperature must be > 0")
    if not prompts:
        return []
    rows = [p for p in prompts for _ in range(group_size)]
    lengths = [len(p) for p in rows]
    budgets = token_budgets(
        lengths, max_new_tokens, max_seq_len or model.args.max_position_embeddings
    )
    B, P, steps = len(rows), max(lengths), max(budgets)
    V = model.args.vocab_size
    stop = {t for t in tokenizer.eos_ids if 0 <= t < V}
    banned = mx.arange(V) >= tokenizer.vocab_size if tokenizer.vocab_size < V else None
    pad_id = tokenizer.pad_id or 0
    ids = mx.array([[pad_id] * (P - n) + list(p) for p, n in zip(rows, lengths, strict=True)])
    pad = None
    if min(lengths) < P:
        pad = mx.array([[j < P - n for j in range(P)] for n in lengths])
        pad = mx.concatenate([pad, mx.zeros((B, steps), mx.bool_)], axis=1)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    keys = mx.stack([mx.random.key(seed + r) for r in range(B)])
    decoder = Decoder(model, pad)

    def step(x: mx.array) -> tuple[mx.array, mx.array]:
        nonlocal keys
        logits = decoder(x).astype(mx.float32)
        if banned is not None:
            logits = mx.where(banned, -mx.inf, logits)
        y, keys = sample(logits, keys, temperature, 0, top_p)
        logp = logits / temperature
        logp = logp - mx.logsumexp(logp, axis=-1, keepdims=True)
        return y, mx.take_along_axis(logp, y[:, None], axis=-1)[:, 0]

    toks: list[list[int]] = [[] for _ in range(B)]
    lps: list[list[float]] = [[] for _ in range(B)]
    reasons: list[str | None] = [None] * B
    y, lp = step(ids)
    mx.async_eval(y, lp)
    for n in range(steps):
        if n + 1 < steps:
            nxt = step(y[:, None])
            mx.async_eval(*nxt)
        ys, ls = y.tolist(), lp.tolist()
        for r in range(B):
            if reasons[r] is not None:
                continue
            toks[r].append(ys[r])  # the stop token too: ending is one of the policy's choices
            lps[r].append(ls[r])
            if ys[r] in stop:
                reasons[r] = "stop"
            elif len(toks[r]) >= budgets[r]:
                reasons[r] = "length"
        if all(x is not None for x in reasons):
            break
        y, lp = nxt
    out = [
        Sample(t, lgp, rsn or "length", tokenizer.decode(t[:-1] if rsn == "stop" else t))
        for t, lgp, rsn in zip(toks, lps, reasons, strict=True)
    ]
    return [out[i * group_size : (i + 1) * group_size] for i in range(len(prompts))]
