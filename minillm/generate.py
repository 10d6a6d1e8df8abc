"""Batched, KV-cached text generation: greedy or sampled (temperature, top-k, top-p), as
text. The decode loop is `minillm.decode.decode_steps`; the options `SamplingParams`."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from minillm.decode import decode_steps
from minillm.models import Model
from minillm.sampling import (  # noqa: F401  (re-exported: their old home)
    SamplingParams,
    apply_repetition_penalty,
    check_sampling,
    sample,
    sample_scores,
    token_budgets,
    top_k_filter,
    top_p_filter,
)


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


def stream_generate(
    model: Model,
    tokenizer,
    prompts: list[list[int]],
    params: SamplingParams | None = None,
    **options,
) -> Iterator[Token | list[Generation]]:
    """Generate for all `prompts` at once, yielding a `Token` per running sequence and step,
    then the `list[Generation]`. `params` and/or keyword `options` are `SamplingParams`
    (`max_new_tokens=`, `temperature=`, ...). Prompts are left-padded; row `i` samples with
    seed `seed + i`, so its output does not depend on the other rows."""
    p = SamplingParams.of(params, **options)
    if not prompts:
        yield []
        return
    B = len(prompts)
    detoks = [StreamingDetokenizer(tokenizer) for _ in range(B)]
    out: list[list[int]] = [[] for _ in range(B)]
    reasons: list[str | None] = [None] * B
    tic = time.perf_counter()
    prompt_time = None
    for events in decode_steps(model, tokenizer, prompts, p):
        if prompt_time is None:
            prompt_time = time.perf_counter() - tic
            tic = time.perf_counter()
        for i, t, _, reason in events:
            reasons[i] = reason
            if reason == "stop":
                yield Token(i, t, detoks[i].flush(), "stop")
                continue
            out[i].append(t)
            text = detoks[i].add(t)
            yield Token(i, t, text + detoks[i].flush() if reason else text, reason)
    gen_time = time.perf_counter() - tic
    yield [
        Generation(
            toks, tokenizer.decode(toks), r or "length", len(q), prompt_time or 0.0, gen_time
        )
        for toks, r, q in zip(out, reasons, prompts, strict=True)
    ]


def generate(
    model: Model,
    tokenizer,
    prompts: list[list[int]],
    params: SamplingParams | None = None,
    **options,
) -> list[Generation]:
    """Generate a reply for each prompt (token ids); see `stream_generate`."""
    return deque(stream_generate(model, tokenizer, prompts, params, **options), maxlen=1)[0]
