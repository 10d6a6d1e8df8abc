"""Incremental JSON prefix checker for constrained decoding (`format: "json"`).

`JsonPrefix` consumes text one character at a time and rejects the first character that
cannot continue a valid JSON document. `closing()` is the shortest text that completes the
current prefix (used to finish the value before the token budget runs out).
`stream_generate_constrained` decodes under it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import mlx.core as mx

from minillm.decode import stop_set
from minillm.generate import Generation, Token
from minillm.sampling import (
    SamplingParams,
    apply_repetition_penalty,
    row_keys,
    sample_scores,
    token_budgets,
)

WS = " \t\n\r"
HEX = "0123456789abcdefABCDEF"
DIGITS = "0123456789"
ESCAPES = '"\\/bfnrtu'

# States.
START = 0  # before the top-level value
VALUE = 1  # a value is required (after ':' or after ',' in an array)
ARR_FIRST = 2  # after '[': a value or ']'
OBJ_FIRST = 3  # after '{': a key or '}'
KEY = 4  # after ',' in an object: a key is required
COLON = 5  # after a key
AFTER = 6  # after a value inside a container: ',' or the closing bracket
STRING = 7
ESCAPE = 8  # after a backslash in a string
UHEX = 9  # inside \uXXXX (`hex_left` digits to go)
NUMBER = 10
LITERAL = 11  # inside true/false/null (`literal` holds the remaining characters)
DONE = 12

# Number sub-states: whether the number may end here, and what it needs next.
N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP = range(8)
N_NEED_DIGIT = (N_MINUS, N_DOT, N_E, N_ESIGN)


class JsonPrefix:
    """A pushdown checker of JSON prefixes. `object_only` requires the top-level value to be
    an object, as Ollama's `format: "json"` does. As in Ollama's JSON grammar, the text starts
    with the value (no leading whitespace) and whitespace runs are at most `max_ws` long."""

    __slots__ = (
        "stack",
        "state",
        "num",
        "literal",
        "hex_left",
        "is_key",
        "object_only",
        "max_ws",
        "ws_run",
    )

    def __init__(self, object_only: bool = True, max_ws: int = 20):
        self.stack: list[str] = []  # "{" / "[" of the open containers
        self.state = START
        self.num = 0
        self.literal = ""
        self.hex_left = 0
        self.is_key = False
        self.object_only = object_only
        self.max_ws = max_ws  # longest whitespace run between tokens (like Ollama's grammar)
        self.ws_run = 0

    def clone(self) -> JsonPrefix:
        c = JsonPrefix.__new__(JsonPrefix)
        c.stack = list(self.stack)
        c.state, c.num, c.literal = self.state, self.num, self.literal
        c.hex_left, c.is_key, c.object_only = self.hex_left, self.is_key, self.object_only
        c.max_ws, c.ws_run = self.max_ws, self.ws_run
        return c

    @property
    def complete(self) -> bool:
        """A whole top-level value has been parsed."""
        return self.state == DONE

    @property
    def in_string(self) -> bool:
        return self.state in (STRING, ESCAPE, UHEX)

    def feed(self, text: str) -> bool:
        """Consume `text`; False (the state is then undefined) if it breaks the prefix.
        Nothing may follow a complete value."""
        for ch in text:
            if ch in WS and self.state not in (STRING, ESCAPE, UHEX):
                self.ws_run += 1
                if self.ws_run > self.max_ws:
                    return False
            else:
                self.ws_run = 0
            if not self._char(ch):
                return False
        return True

    def _value_end(self) -> None:
        self.state = AFTER if self.stack else DONE

    def _start_value(self, ch: str, top: bool = False) -> bool:
        if ch in WS:
            return not top  # the reply starts with the value itself
        if top and self.object_only and ch != "{":
            return False
        if ch == "{":
            self.stack.append("{")
            self.state = OBJ_FIRST
        elif ch == "[":
            self.stack.append("[")
            self.state = ARR_FIRST
        elif ch == '"':
            self.state, self.is_key = STRING, False
        elif ch == "-":
            self.state, self.num = NUMBER, N_MINUS
        elif ch == "0":
            self.state, self.num = NUMBER, N_ZERO
        elif ch in DIGITS:
            self.state, self.num = NUMBER, N_INT
        elif ch in "tfn":
            self.state, self.literal = LITERAL, {"t": "rue", "f": "alse", "n": "ull"}[ch]
        else:
            return False
        return True

    def _close(self, ch: str) -> bool:
        if not self.stack or self.stack[-1] != ("{" if ch == "}" else "["):
            return False
        self.stack.pop()
        self._value_end()
        return True

    def _char(self, ch: str) -> bool:
        s = self.state
        if s == STRING:
            if ch == '"':
                if self.is_key:
                    self.state = COLON
                else:
                    self._value_end()
            elif ch == "\\":
                self.state = ESCAPE
            elif ord(ch) < 0x20:
                return False
            return True
        if s == ESCAPE:
            if ch not in ESCAPES:
                return False
            if ch == "u":
                self.state, self.hex_left = UHEX, 4
            else:
                self.state = STRING
            return True
        if s == UHEX:
            if ch not in HEX:
                return False
            self.hex_left -= 1
            if self.hex_left == 0:
                self.state = STRING
            return True
        if s == NUMBER:
            n = self.num
            if ch in DIGITS:
                if n in (N_MINUS, N_INT):
                    self.num = N_INT
                elif n in (N_DOT, N_FRAC):
                    self.num = N_FRAC
                elif n in (N_E, N_ESIGN, N_EXP):
                    self.num = N_EXP
                else:  # N_ZERO: no leading zeros
                    return False
                return True
            if ch == "." and n in (N_ZERO, N_INT):
                self.num = N_DOT
                return True
            if ch in "eE" and n in (N_ZERO, N_INT, N_FRAC):
                self.num = N_E
                return True
            if ch in "+-" and n == N_E:
                self.num = N_ESIGN
                return True
            if n in N_NEED_DIGIT:
                return False
            self._value_end()  # the number ended; `ch` belongs to what follows
            if self.state == DONE:
                # A top-level number ends only at whitespace (then nothing may follow).
                return ch in WS
            return self._char(ch)
        if s == LITERAL:
            if ch != self.literal[0]:
                return False
            self.literal = self.literal[1:]
            if not self.literal:
                self._value_end()
            return True
        if s == START:
            return self._start_value(ch, top=True)
        if s == VALUE:
            return self._start_value(ch)
        if s == ARR_FIRST:
            if ch == "]":
                return self._close(ch)
            return self._start_value(ch)
        if s in (OBJ_FIRST, KEY):
            if ch in WS:
                return True
            if ch == '"':
                self.state, self.is_key = STRING, True
                return True
            return s == OBJ_FIRST and ch == "}" and self._close(ch)
        if s == COLON:
            if ch in WS:
                return True
            if ch == ":":
                self.state = VALUE
                return True
            return False
        if s == AFTER:
            if ch in WS:
                return True
            if ch == ",":
                self.state = VALUE if self.stack[-1] == "[" else KEY
                return True
            if ch in "]}":
                return self._close(ch)
            return False
        return False  # DONE: nothing may follow

    def closing(self) -> str:
        """The shortest text that completes the value ("" once complete)."""
        s, out = self.state, ""
        if s == DONE:
            return ""
        if s == START:
            return "{}" if self.object_only else "0"
        if s == UHEX:
            out = "0" * self.hex_left + '"'
        elif s == ESCAPE:
            out = 'n"'
        elif s == STRING:
            out = '"'
        elif s == NUMBER:
            out = "0" if self.num in N_NEED_DIGIT else ""
        elif s == LITERAL:
            out = self.literal
        elif s == VALUE:
            out = "0"
        elif s == KEY:
            out = '"":0'
        elif s == COLON:
            out = ":0"
        if s in (STRING, ESCAPE, UHEX) and self.is_key:
            out += ":0"
        if s == NUMBER and not self.stack:
            out += " "  # a top-level number ends only at whitespace
        return out + "".join("}" if c == "{" else "]" for c in reversed(self.stack))


def stream_generate_constrained(
    model,
    tokenizer,
    prompts: list[list[int]],
    params: SamplingParams | None = None,
    *,
    constraint_factory: Callable[[], JsonPrefix] = JsonPrefix,
    candidates: int = 64,
    **options,
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
    p = SamplingParams.of(params, **options)
    if len(prompts) != 1:
        raise ValueError(f"constrained generation takes one prompt, got {len(prompts)}")
    prompt = [int(t) for t in prompts[0]]
    limit = p.max_seq_len or model.args.max_position_embeddings
    (budget,) = token_budgets([len(prompt)], p.max_new_tokens, limit)
    V = model.args.vocab_size
    usable = min(V, tokenizer.vocab_size)
    stop = stop_set(tokenizer, p, V)
    stop_token = min(stop, default=-1)
    seed = int.from_bytes(os.urandom(4), "little") if p.seed is None else p.seed
    keys = row_keys(seed, 1) if p.temperature > 0 else None
    cache = model.make_cache()
    context = list(prompt)
    window = p.repetition_context_size

    def scores(x: mx.array) -> tuple[mx.array, mx.array]:
        nonlocal keys
        logits = model.logits(model.hidden(x, cache=cache)[:, -1, :]).astype(mx.float32)
        if p.repetition_penalty != 1.0:
            ctx = mx.array([context if window is None else context[-window:]])
            logits = apply_repetition_penalty(logits, ctx, p.repetition_penalty)
        s, keys = sample_scores(logits, keys, p.temperature, p.top_k, p.top_p)
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
