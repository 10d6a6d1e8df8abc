"""Bench runners: MiniLLM checkpoints (batched `generate`), Ollama `/api/chat` and
OpenAI-compatible `/v1/chat/completions` servers (parallel requests, retries, timeouts)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

import httpx

from minillm.eval.verify import split_think
from minillm.teacher import OllamaTeacher, OpenAITeacher, TeacherError

Done = Callable[[int, dict], None]  # (item index, output) as each item finishes


def messages(item: dict) -> list[dict]:
    sys_msg = [{"role": "system", "content": item["system"]}] if item.get("system") else []
    return [*sys_msg, {"role": "user", "content": item["prompt"]}]


class MLXRunner:
    """Greedy decoding of a MiniLLM checkpoint, items batched by their token budget."""

    def __init__(self, checkpoint: str, batch_size: int = 16, tokenizer_path: str | None = None):
        from minillm.checkpoint import load, resolve_checkpoint

        self.model, self.tokenizer = load(checkpoint, tokenizer_path)
        self.name = f"minillm:{resolve_checkpoint(checkpoint).resolve().name}"
        self.batch_size = batch_size

    def run(self, items: list[dict], done: Done) -> None:
        from minillm.eval.greedy import greedy_replies

        def finished(i: int, g, rows: int) -> None:
            # The answer and its thinking split as the HTTP runners' teacher does.
            text, thinking = split_think(g.text)
            seconds = (g.prompt_time + g.gen_time) / rows
            done(i, dict(text=text, thinking=thinking, tokens=len(g.tokens), seconds=seconds))

        budgets = [it["max_new_tokens"] for it in items]
        convs = [messages(it) for it in items]
        greedy_replies(self.model, self.tokenizer, convs, budgets, self.batch_size, finished)


class HTTPRunner:
    """`parallel` requests at a time through one teacher client (minillm/teacher.py: the one
    HTTP stack, with its retries and exponential backoff on connect errors, timeouts and
    429/5xx answers); a request that still fails is an output with `error`, not a stop."""

    kind = "http"

    def __init__(
        self,
        url: str,
        model: str,
        *,
        parallel: int = 4,
        timeout: float = 300.0,
        retries: int = 3,
        backoff: float = 0.5,
        seed: int = 1337,
    ):
        self.url, self.model, self.parallel, self.seed = url.rstrip("/"), model, parallel, seed
        self.http = dict(timeout=timeout, retries=retries, backoff=backoff)
        self.name = f"{self.kind}:{model}"

    def client(self):
        raise NotImplementedError

    def options(self, item: dict) -> dict:
        raise NotImplementedError

    def call(self, teacher, item: dict) -> dict:
        try:
            r = teacher.chat(messages(item), seed=self.seed, **self.options(item))
        except TeacherError as e:
            n = getattr(e, "attempts", 1)
            return dict(text="", tokens=0, seconds=0.0, error=str(e), attempts=n)
        seconds = r.eval_s or r.latency_s
        return dict(text=r.content, thinking=r.thinking, tokens=int(r.eval_count or 0),
                    seconds=seconds, attempts=r.attempts)  # fmt: skip

    def run(self, items: list[dict], done: Done) -> None:
        with self.client() as teacher, ThreadPoolExecutor(self.parallel) as pool:
            futures = {pool.submit(self.call, teacher, it): i for i, it in enumerate(items)}
            for f in as_completed(futures):
                done(futures[f], f.result())


class OllamaRunner(HTTPRunner):
    """`POST /api/chat` (stream off); the reply's thinking is kept but never scored."""

    kind = "ollama"

    def __init__(self, url: str, model: str, *, think: bool = False, think_budget: int = 2048,
                 num_ctx: int = 4096, **kw):  # fmt: skip
        super().__init__(url, model, **kw)
        self.think, self.think_budget, self.num_ctx = think, think_budget, num_ctx

    def check(self) -> None:
        try:
            httpx.get(f"{self.url}/api/version", timeout=min(self.http["timeout"], 10.0))
        except httpx.TransportError as e:
            raise ValueError(f"cannot reach Ollama at {self.url} ({e}); start it or pass --no_ollama") from None  # fmt: skip

    def client(self):
        return OllamaTeacher(self.url, self.model, think=self.think, **self.http)

    def options(self, item: dict) -> dict:
        n = item["max_new_tokens"] + (self.think_budget if self.think else 0)
        return dict(temperature=0, top_p=1, num_predict=n, num_ctx=self.num_ctx)


class OpenAIRunner(HTTPRunner):
    """`POST /v1/chat/completions` on any OpenAI-compatible server (`url` with or without /v1)."""

    kind = "openai"

    def __init__(self, url: str, model: str, *, api_key: str | None = None, **kw):
        super().__init__(url, model, **kw)
        self.api_key = api_key

    def client(self):
        return OpenAITeacher(self.url, self.model, api_key=self.api_key, **self.http)

    def options(self, item: dict) -> dict:
        return dict(temperature=0, stream=False, max_tokens=item["max_new_tokens"])


def run_items(runner, items: list[dict], on_item: Done | None = None) -> tuple[list[dict], float]:
    """Run all items; returns the outputs in item order and the wall time."""
    outs: list[dict] = [{}] * len(items)

    def done(i: int, out: dict) -> None:
        outs[i] = out
        if on_item:
            on_item(i, out)

    tic = time.perf_counter()
    runner.run(items, done)
    return outs, time.perf_counter() - tic
