"""Sampled rollouts for RL: G samples per prompt in one batched, KV-cached generation, keeping
the exact sampled token ids and their behaviour log-probs (`log_softmax(logits / T)` at the
sampled id, before top-p truncation, as the learner recomputes them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from minillm.decode import decode_steps
from minillm.sampling import SamplingParams


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
    if temperature <= 0:
        raise ValueError("RL rollouts sample: temperature must be > 0")
    params = SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        max_seq_len=max_seq_len,
    )
    if not prompts:
        return []
    rows = [p for p in prompts for _ in range(group_size)]
    toks: list[list[int]] = [[] for _ in rows]
    lps: list[list[float]] = [[] for _ in rows]
    reasons: list[str | None] = [None] * len(rows)
    for events in decode_steps(model, tokenizer, rows, params, logprobs=True):
        for r, t, lp, reason in events:
            toks[r].append(t)  # the stop token too: ending is one of the policy's choices
            lps[r].append(lp)
            reasons[r] = reason
    out = [
        Sample(t, lgp, rsn or "length", tokenizer.decode(t[:-1] if rsn == "stop" else t))
        for t, lgp, rsn in zip(toks, lps, reasons, strict=True)
    ]
    return [out[i * group_size : (i + 1) * group_size] for i in range(len(prompts))]
