"""Batching scheduler of `minillm serve`: one thread owns the model and decodes the waiting
requests together."""

from __future__ import annotations

import atexit
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx

from minillm.generate import Token, stream_generate
from minillm.json_constraint import stream_generate_constrained
from minillm.sampling import SamplingParams


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

    def params(self, max_new_tokens: int) -> SamplingParams:
        """The decode options, in Ollama's names mapped to `SamplingParams`."""
        return SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repeat_penalty,
            repetition_context_size=self.repeat_last_n if self.repeat_last_n > 0 else None,
            seed=self.seed,
        )

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
        params = s.params(max(r.max_tokens for r in batch))
        gen = fn(self.model, self.tokenizer, [r.prompt for r in batch], params)
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
