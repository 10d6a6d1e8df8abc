"""Batching scheduler of `minillm serve` (one thread owns the model and decodes waiting
requests together) and the request parsing it needs."""

from __future__ import annotations

import atexit
import json
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import mlx.core as mx

from minillm.generate import Token, stream_generate, stream_generate_constrained


class Busy(Exception):
    """Too many requests queued or running (HTTP 503)."""


@dataclass
class Sampling:
    temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 40
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    seed: int | None = None

    def key(self) -> tuple:
        """Requests batch together only when they share this key: `stream_generate` takes one
        set of options per batch, and row i of a batch samples with `seed + i`, so a sampled
        request with a fixed seed gets a batch of its own (`solo`)."""
        pen = (self.repeat_penalty, self.repeat_last_n if self.repeat_penalty != 1 else 0)
        if self.temperature == 0:
            return (0.0, *pen, None)
        return (self.temperature, self.top_p, self.top_k, *pen, self.seed)

    @property
    def solo(self) -> bool:
        return self.temperature > 0 and self.seed is not None


@dataclass(eq=False)
class Request:
    prompt: list[int]
    sampling: Sampling
    max_tokens: int
    stop: list[str] = field(default_factory=list)
    events: queue.Queue = field(default_factory=queue.Queue)
    cancelled: bool = False
    done: bool = False
    created: float = field(default_factory=time.perf_counter)
    tokens: int = 0
    pending: str = ""
    json: bool = False  # constrain the reply to a JSON object (format "json" or a schema)

    def cancel(self) -> None:
        self.cancelled = True


def split_stop(text: str, stops: list[str]) -> tuple[str, str, bool]:
    """`(emit, hold, stopped)`: text safe to emit, the tail that may begin a stop string, and
    whether a stop string occurred (the text from it on is dropped)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    if cut >= 0:
        return text[:cut], "", True
    hold = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:n]):
                hold = n
                break
    return text[: len(text) - hold], text[len(text) - hold :], False


class Engine:
    """Runs `stream_generate` over batches of up to `max_batch` compatible waiting requests.

    Each request's `events` queue receives `("text", str)` items, then `("done", info)` or
    `("error", message)`. `submit` raises `Busy` beyond `max_pending` requests in flight.
    JSON-constrained requests (`Request.json`) run alone through `json_generate_fn`.
    """

    def __init__(
        self,
        model,
        tokenizer,
        max_batch: int = 8,
        max_pending: int = 32,
        batch_wait: float = 0.01,
        generate_fn: Callable[..., Any] = stream_generate,
        json_generate_fn: Callable[..., Any] = stream_generate_constrained,
    ):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_pending, self.batch_wait = max_batch, max_pending, batch_wait
        self.generate_fn, self.json_generate_fn = generate_fn, json_generate_fn
        self.waiting: list[Request] = []
        self.active = 0
        self.batch_sizes: list[int] = []
        self.cond = threading.Condition()
        self.running = threading.Event()
        self.running.set()
        self.stopped = False
        self.thread = threading.Thread(target=self.loop, name="minillm-serve-engine", daemon=True)
        self.thread.start()
        atexit.register(self.close)

    def submit(self, req: Request) -> Request:
        with self.cond:
            if self.active >= self.max_pending:
                raise Busy(
                    f"server busy, please try again. maximum pending requests exceeded "
                    f"({self.max_pending})"
                )
            self.active += 1
            self.waiting.append(req)
            self.cond.notify()
        return req

    def pause(self) -> None:
        """Hold new batches back (requests keep queueing) until `resume`."""
        self.running.clear()

    def resume(self) -> None:
        self.running.set()
        with self.cond:
            self.cond.notify()

    def close(self) -> None:
        """Stop the scheduler thread (waits for the running batch)."""
        atexit.unregister(self.close)
        with self.cond:
            self.stopped = True
            self.cond.notify()
        self.running.set()
        self.thread.join(timeout=5)

    def stats(self) -> dict[str, Any]:
        with self.cond:
            return {
                "active": self.active,
                "waiting": len(self.waiting),
                "batches": len(self.batch_sizes),
                "batch_sizes": list(self.batch_sizes[-100:]),
                "max_batch_size": max(self.batch_sizes, default=0),
            }

    def take(self) -> list[Request] | None:
        with self.cond:
            while not self.stopped and (not self.waiting or not self.running.is_set()):
                self.cond.wait(0.1)
            if self.stopped:
                return None
        time.sleep(self.batch_wait)  # let near-simultaneous requests join the batch
        with self.cond:
            # Clients of the last batch usually come back together: give them a moment more.
            want = min(self.batch_sizes[-1] if self.batch_sizes else 1, self.max_batch)
            end = time.perf_counter() + 4 * self.batch_wait
            while len(self.waiting) < want and (left := end - time.perf_counter()) > 0:
                self.cond.wait(left)
            self.waiting = [r for r in self.waiting if not self.cancelled_out(r)]
            if not self.waiting:
                return []
            first = self.waiting[0]
            limit = 1 if first.sampling.solo or first.json else self.max_batch
            key = (first.json, first.sampling.key())
            batch = [r for r in self.waiting if (r.json, r.sampling.key()) == key][:limit]
            self.waiting = [r for r in self.waiting if r not in batch]
            self.batch_sizes.append(len(batch))
            return batch

    def cancelled_out(self, req: Request) -> bool:
        if req.cancelled:
            self.active -= 1
        return req.cancelled

    def finish(self, req: Request, kind: str, payload: Any) -> None:
        if req.done:
            return
        req.done = True
        req.events.put((kind, payload))
        with self.cond:
            self.active -= 1

    def loop(self) -> None:
        try:
            while (batch := self.take()) is not None:
                try:
                    self.run_batch(batch)
                except Exception as e:  # report to the clients; keep serving
                    for r in batch:
                        self.finish(r, "error", f"generation failed: {e}")
        finally:
            # MLX aborts at exit if a thread's streams outlive it (ml-explore/mlx#3126).
            mx.synchronize()
            mx.clear_streams()

    def emit(self, req: Request, text: str, final: bool) -> bool:
        """Queue `text` minus any stop string; True once the request is finished."""
        emit, req.pending, stopped = split_stop(req.pending + text, req.stop)
        if final and not stopped:
            emit, req.pending = emit + req.pending, ""
        if emit:
            req.events.put(("text", emit))
        return stopped

    def run_batch(self, batch: list[Request]) -> None:
        if not batch:
            return
        s = batch[0].sampling
        t0 = time.perf_counter()
        first: float | None = None
        fn = self.json_generate_fn if batch[0].json else self.generate_fn
        gen = fn(
            self.model,
            self.tokenizer,
            [r.prompt for r in batch],
            max_new_tokens=max(r.max_tokens for r in batch),
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            repetition_penalty=s.repeat_penalty,
            repetition_context_size=s.repeat_last_n if s.repeat_last_n > 0 else None,
            seed=s.seed,
        )
        try:
            for item in gen:
                if isinstance(item, list):
                    break
                if first is None:
                    first = time.perf_counter()
                self.step(batch, item, t0, first)
                if all(r.done or r.cancelled for r in batch):
                    break
        finally:
            gen.close()
        for r in batch:  # rows the generator ended without a finish reason
            self.done(r, "stop", t0, first or time.perf_counter())

    def step(self, batch: list[Request], tok: Token, t0: float, first: float) -> None:
        r = batch[tok.index]
        if r.done:
            return
        if r.cancelled:
            self.finish(r, "error", "request canceled")
            return
        if tok.finish_reason != "stop":
            r.tokens += 1
        reason = tok.finish_reason
        # A JSON request runs alone with its own budget: its generator reports "length" (a
        # value completed by the last token of the budget is followed by the "stop" token).
        if r.tokens >= r.max_tokens and reason is None and not r.json:
            reason = "length"
        if self.emit(r, tok.text, reason is not None):
            reason = "stop"
        if reason is not None:
            self.done(r, reason, t0, first)

    def done(self, r: Request, reason: str, t0: float, first: float) -> None:
        if r.done:
            return
        if r.pending:
            r.events.put(("text", r.pending))
            r.pending = ""
        now = time.perf_counter()
        info = {
            "done_reason": reason,
            "prompt_eval_count": len(r.prompt),
            "eval_count": r.tokens,
            "prompt_eval_duration": int((first - t0) * 1e9),
            "eval_duration": int((now - first) * 1e9),
            "total_duration": int((now - r.created) * 1e9),
            "load_duration": 0,
        }
        self.finish(r, "done", info)


JSON_HINT = "Respond only with a single valid JSON object."
OPTION_TYPES = {
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "num_predict": int,
    "seed": int,
    "repeat_penalty": float,
    "repeat_last_n": int,
    "num_ctx": int,
}

OPTION_MAX = 2**31 - 1  # what an int option may be: larger ones overflow the engine's int32s
OPTION_RANGE = {
    "seed": (-1, 2**63 - 1),
    "temperature": (0, 100),
    "top_p": (0, 1),
    "repeat_penalty": (0, 100),
}  # fmt: skip  (seed -1: a random one, as in llama.cpp)


class ApiError(Exception):
    """An error answered with `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body or b"{}")
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"invalid JSON body: {e}") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "the request body must be a JSON object")
    bad = non_finite(obj)
    if bad is not None:
        raise ApiError(400, f"{bad[0]}: {bad[1]} is not a finite number; send a plain number")
    return obj


def non_finite(obj: Any, path: str = "") -> tuple[str, Any] | None:
    """(field path, value) of the first NaN or +-Infinity in a parsed JSON body (Python's
    `json` accepts them, and 1e400 parses to inf), else None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return path or "body", obj
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for k, v in items:
        where = f"{path}[{k}]" if isinstance(k, int) else f"{path}.{k}" if path else k
        hit = non_finite(v, where)
        if hit is not None:
            return hit
    return None


def parse_options(opts: Any, stop: Any = None) -> tuple[dict[str, Any], list[str]]:
    """Typed Ollama `options` plus the stop strings; unknown options are ignored, as Ollama
    ignores runner options it does not use."""
    if opts is None:
        opts = {}
    if not isinstance(opts, dict):
        raise ApiError(400, "options must be a JSON object")
    out: dict[str, Any] = {}
    for k, t in OPTION_TYPES.items():
        v = opts.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (t is int and v != int(v)):
            raise ApiError(400, f"option {k} must be a number, got {v!r}")
        lo, hi = OPTION_RANGE.get(k, (-OPTION_MAX, OPTION_MAX))
        if not lo <= v <= hi:
            raise ApiError(400, f"option {k}={v!r} is out of range; use a value in [{lo}, {hi}]")
        out[k] = t(v)
    stop = opts.get("stop", stop)
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise ApiError(400, "stop must be a string or a list of strings")
    return out, [s for s in stop or [] if s]


def make_sampling(o: dict[str, Any]) -> Sampling:
    s = Sampling(
        temperature=o.get("temperature", 0.8),
        top_p=o.get("top_p", 0.9),
        top_k=o.get("top_k", 40),
        repeat_penalty=o.get("repeat_penalty", 1.1),
        repeat_last_n=o.get("repeat_last_n", 64),
        seed=None if o.get("seed", -1) == -1 else o["seed"],
    )
    if s.temperature < 0:
        raise ApiError(400, f"temperature {s.temperature} must be >= 0")
    if not 0 < s.top_p <= 1:
        raise ApiError(400, f"top_p {s.top_p} must be in (0, 1]")
    if s.repeat_penalty <= 0:
        raise ApiError(400, f"repeat_penalty {s.repeat_penalty} must be > 0")
    s.top_k = max(s.top_k, 0)
    s.repeat_last_n = max(s.repeat_last_n, 0)
    return s


def text_of(content: Any) -> str:
    """Message content: a string, or OpenAI parts (text parts are kept)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    raise ApiError(400, "message content must be a string or a list of parts")


def parse_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list")
    out = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, "each message needs a role and content")
        role = m["role"].lower()
        if role not in ("system", "user", "assistant", "tool"):
            raise ApiError(400, f"unknown message role {role!r}")
        out.append({"role": role, "content": text_of(m.get("content"))})
    return out


def add_json_hint(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n{JSON_HINT}"}] + messages[
            1:
        ]
    return [{"role": "system", "content": JSON_HINT}, *messages]


class ThinkSplitter:
    """Splits streamed text into thinking (inside `<think>…</think>`) and content."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self):
        self.buf = ""
        self.inside = False

    def feed(self, text: str, final: bool = False) -> list[tuple[str, str]]:
        """`[(kind, text)]` with kind "thinking" or "content"; partial tags are held back."""
        self.buf += text
        out: list[tuple[str, str]] = []
        while self.buf:
            tag = self.CLOSE if self.inside else self.OPEN
            kind = "thinking" if self.inside else "content"
            i = self.buf.find(tag)
            if i >= 0:
                out.append((kind, self.buf[:i]))
                self.buf = self.buf[i + len(tag) :]
                self.inside = not self.inside
                continue
            hold = (
                0
                if final
                else next((n for n in range(len(tag) - 1, 0, -1) if self.buf.endswith(tag[:n])), 0)
            )
            out.append((kind, self.buf[: len(self.buf) - hold]))
            self.buf = self.buf[len(self.buf) - hold :]
            break
        return [(k, t) for k, t in out if t]


def split_thinking(text: str) -> tuple[str, str]:
    """`(thinking, content)` of a whole reply."""
    parts = ThinkSplitter().feed(text, final=True)
    return (
        "".join(t for k, t in parts if k == "thinking"),
        "".join(t for k, t in parts if k == "content"),
    )


def is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def openai_error(status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def openai_chunk(cid: str, model: str, delta: dict, finish: str | None) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_minillm",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def openai_usage(info: dict[str, Any]) -> dict[str, int]:
    p, c = info["prompt_eval_count"], info["eval_count"]
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def events(req: Request, think: Any):
    """Yield `(kind, text)` pieces ("thinking"/"content"), then `("done", info)`."""
    split = ThinkSplitter()
    while True:
        kind, payload = req.events.get(timeout=600)
        if kind == "error":
            raise ApiError(500, payload)
        final = kind == "done"
        for k, t in split.feed("" if final else payload, final=final):
            if k == "content" or think is not False:
                yield k, t
        if final:
            yield "done", payload
            return
