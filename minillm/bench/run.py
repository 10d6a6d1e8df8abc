"""Bench runners: MiniLLM checkpoints (batched `generate`), Ollama `/api/chat` and
OpenAI-compatible `/v1/chat/completions` servers (parallel requests, retries, timeouts)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from itertools import groupby

import httpx

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
        from minillm.generate import generate

        tok, limit = self.tokenizer, self.model.args.max_position_embeddings
        ids = [tok.apply_chat_template(messages(it), add_generation_prompt=True, tokenize=True) for it in items]  # fmt: skip
        order = sorted(range(len(items)), key=lambda i: (items[i]["max_new_tokens"], len(ids[i])))
        for budget, group in groupby(order, key=lambda i: items[i]["max_new_tokens"]):
            group = list(group)
            for s in range(0, len(group), self.batch_size):
                batch = group[s : s + self.batch_size]
                prompts = [ids[i][-(limit - 1) :] for i in batch]
                tic = time.perf_counter()
                gens = generate(self.model, tok, prompts, max_new_tokens=budget, temperature=0)
                dt = time.perf_counter() - tic
                for i, g in zip(batch, gens, strict=True):
                    done(i, dict(text=g.text, tokens=len(g.tokens), seconds=dt / len(batch)))


class Retry(Exception):
    pass


class HTTPRunner:
    """Shared request loop: a thread pool of `parallel` workers, `retries` attempts with
    exponential backoff on connect errors, timeouts and 5xx/429 answers."""

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
        self.url, self.model = url.rstrip("/"), model
        self.parallel, self.timeout, self.retries, self.backoff = (
            parallel,
            timeout,
            retries,
            backoff,
        )
        self.seed = seed
        self.name = f"{self.kind}:{model}"
        self.headers: dict[str, str] = {}

    def endpoint(self) -> str:
        raise NotImplementedError

    def body(self, item: dict) -> dict:
        raise NotImplementedError

    def parse(self, data: dict) -> dict:
        raise NotImplementedError

    def call(self, client: httpx.Client, item: dict) -> dict:
        err = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            tic = time.perf_counter()
            try:
                r = client.post(self.endpoint(), json=self.body(item))
                if r.status_code >= 500 or r.status_code == 429:
                    raise Retry(f"HTTP {r.status_code}: {r.text[:200]}")
                if r.status_code >= 400:
                    return dict(text="", tokens=0, seconds=0.0, error=f"HTTP {r.status_code}: {r.text[:200]}", attempts=attempt + 1)  # fmt: skip
                out = self.parse(r.json())
            except (httpx.TransportError, Retry, ValueError) as e:
                err = f"{type(e).__name__}: {e}"
                continue
            out.setdefault("seconds", time.perf_counter() - tic)
            return {**out, "attempts": attempt + 1}
        return dict(text="", tokens=0, seconds=0.0, error=err, attempts=self.retries + 1)

    def run(self, items: list[dict], done: Done) -> None:
        with (
            httpx.Client(timeout=self.timeout, headers=self.headers) as client,
            ThreadPoolExecutor(self.parallel) as pool,
        ):
            futures = {pool.submit(self.call, client, it): i for i, it in enumerate(items)}
            for f in as_completed(futures):
                done(futures[f], f.result())


class OllamaRunner(HTTPRunner):
    """`POST /api/chat` (stream off); the reply's `thinking` is kept but never scored."""

    kind = "ollama"

    def __init__(self, url: str, model: str, *, think: bool = False, think_budget: int = 2048,
                 num_ctx: int = 4096, **kw):  # fmt: skip
        super().__init__(url, model, **kw)
        self.think, self.think_budget, self.num_ctx = think, think_budget, num_ctx

    def check(self) -> None:
        try:
            httpx.get(f"{self.url}/api/version", timeout=min(self.timeout, 10.0))
        except httpx.TransportError as e:
            raise ValueError(f"cannot reach Ollama at {self.url} ({e}); start it or pass --no_ollama") from None  # fmt: skip

    def endpoint(self) -> str:
        return f"{self.url}/api/chat"

    def body(self, item: dict) -> dict:
        n = item["max_new_tokens"] + (self.think_budget if self.think else 0)
        opts = dict(temperature=0, top_p=1, num_predict=n, seed=self.seed, num_ctx=self.num_ctx)
        return dict(model=self.model, messages=messages(item), stream=False, think=self.think, options=opts)  # fmt: skip

    def parse(self, data: dict) -> dict:
        msg = data.get("message") or {}
        out = dict(text=msg.get("content") or "", thinking=msg.get("thinking") or "")
        out["tokens"] = int(data.get("eval_count") or 0)
        if data.get("eval_duration"):
            out["seconds"] = data["eval_duration"] / 1e9
        return out


class OpenAIRunner(HTTPRunner):
    """`POST /v1/chat/completions` on any OpenAI-compatible server (`url` with or without /v1)."""

    kind = "openai"

    def __init__(self, url: str, model: str, *, api_key: str | None = None, **kw):
        super().__init__(url, model, **kw)
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def endpoint(self) -> str:
        return f"{self.url if self.url.endswith('/v1') else self.url + '/v1'}/chat/completions"

    def body(self, item: dict) -> dict:
        return dict(model=self.model, messages=messages(item), temperature=0, stream=False,
                    max_tokens=item["max_new_tokens"], seed=self.seed)  # fmt: skip

    def parse(self, data: dict) -> dict:
        msg = (data.get("choices") or [{}])[0].get("message") or {}
        usage = data.get("usage") or {}
        return dict(text=msg.get("content") or "", tokens=int(usage.get("completion_tokens") or 0))


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
