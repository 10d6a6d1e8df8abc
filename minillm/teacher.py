"""Teacher clients for distillation: Ollama's native `/api/chat`, any OpenAI-compatible
`/v1/chat/completions` server, and an offline oracle that returns the task's own answer."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from minillm.eval.verify import split_think

DEFAULT_URL = "http://127.0.0.1:11434"
DEFAULT_MODEL = "qwen3:0.6b"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})  # 429: rate-limited, try later
RETRY_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadTimeout,
    httpx.ReadError,
    httpx.RemoteProtocolError,
    httpx.PoolTimeout,
)


class TeacherError(RuntimeError):
    """A teacher request failed for good (bad status, error line, or retries spent);
    `attempts` is how many requests it took to find out, `retry_reasons` why each retry was
    made (`error_kind` of the failed attempt)."""

    attempts: int = 1
    retry_reasons: tuple[str, ...] = ()
    kind: str | None = None  # the last attempt's error_kind, when known


def error_kind(e: BaseException | str) -> str:
    """A short label for a failed teacher request: timeout, connect, reset, http_5xx,
    http_4xx, stream, bad_json or other (the `reason`/`kind` label of the fault counters)."""
    if getattr(e, "kind", None):
        return e.kind
    if isinstance(e, (httpx.ReadError, httpx.RemoteProtocolError)):
        return "reset"
    text = str(e).lower()
    for kind, keys in (
        ("timeout", ("timed out", "timeout")),
        ("connect", ("connect", "reach")),
        ("reset", ("reset", "disconnected", "incomplete")),
        ("http_5xx", ("http 5", " 50", "busy")),
        ("http_4xx", ("http 4", "not found", "40")),
        ("stream", ("stream",)),
        ("bad_json", ("json",)),
    ):
        if any(k in text for k in keys):
            return kind
    return "other"


@dataclass
class TeacherReply:
    """One teacher answer; `thinking` is the reasoning trace, never part of `content`."""

    content: str
    thinking: str = ""
    model: str = ""
    eval_count: int | None = None
    prompt_eval_count: int | None = None
    latency_s: float = 0.0
    attempts: int = 1
    done_reason: str | None = None
    eval_s: float | None = None  # the server's own decode time (Ollama's eval_duration)
    retry_reasons: tuple[str, ...] = ()


def _json_body(r: httpx.Response, where: str, retry: bool = False) -> dict:
    """The response's JSON object; a body that is not JSON (cut off by a proxy or a crashed
    runner) is retried when `retry`, else a TeacherError."""
    try:
        out = r.json()
    except ValueError:
        msg = (
            f"{where}: answered HTTP {r.status_code} with a body that is not JSON: {r.text[:200]!r}"
        )
        if retry:
            raise _Retry(msg, "bad_json") from None
        raise TeacherError(msg) from None
    if not isinstance(out, dict):
        raise TeacherError(f"{where}: expected a JSON object, got {type(out).__name__}")
    return out


def _error_text(r: httpx.Response) -> str:
    try:
        err = r.json().get("error", r.text)
    except (ValueError, AttributeError):
        return r.text.strip()
    if isinstance(err, dict):
        err = err.get("message", err)
    return str(err)


def _model_name(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


class _Retry(Exception):
    """A failed attempt worth another try; `kind` is its `error_kind` label."""

    def __init__(self, msg: str, kind: str):
        super().__init__(msg)
        self.kind = kind


class _HTTPTeacher:
    def __init__(
        self,
        url: str,
        model: str,
        timeout: float | httpx.Timeout,
        retries: int,
        backoff: float,
        max_backoff: float,
        client: httpx.Client | None,
        sleep: Callable[[float], None] | None,
        rng: random.Random | None,
        headers: dict[str, str] | None = None,
    ):
        self.url = url.rstrip("/")
        self.model = model
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep or time.sleep
        self.rng = rng or random.Random()
        if isinstance(timeout, (int, float)):
            timeout = httpx.Timeout(timeout, connect=min(10.0, float(timeout)))
        self.client = client or httpx.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def delay(self, attempt: int) -> float:
        """Backoff before retry `attempt` (1-based): exponential, capped, full jitter on top."""
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return base * (0.5 + 0.5 * self.rng.random())

    def _with_retries(self, fn: Callable[[], Any]) -> tuple[Any, tuple[str, ...]]:
        """`(fn(), reasons)`: `fn` retried on busy/5xx/timeouts/resets with backoff;
        `reasons` holds one `error_kind` per retried attempt."""
        reasons: list[str] = []
        while True:
            try:
                return fn(), tuple(reasons)
            except (_Retry, *RETRY_ERRORS) as e:
                if len(reasons) >= self.retries:
                    kind = str(e) if isinstance(e, _Retry) else f"{type(e).__name__}: {e}"
                    n = len(reasons) + 1
                    err = TeacherError(f"{self.url}: giving up after {n} attempts ({kind})")
                    err.attempts, err.retry_reasons, err.kind = n, tuple(reasons), error_kind(e)
                    raise err from e
                reasons.append(error_kind(e))
                self.sleep(self.delay(len(reasons)))
            except TeacherError as e:
                e.attempts, e.retry_reasons = len(reasons) + 1, tuple(reasons)
                raise

    def _post(
        self, path: str, body: dict, stream: bool, read: Callable
    ) -> tuple[Any, tuple[str, ...]]:
        def once():
            if stream:
                with self.client.stream("POST", self.url + path, json=body) as r:
                    self._status(r, path, streaming=True)
                    return read(r)
            r = self.client.post(self.url + path, json=body)
            self._status(r, path)
            return read(r)

        return self._with_retries(once)

    def _status(self, r: httpx.Response, path: str, streaming: bool = False) -> None:
        if r.status_code < 400:
            return
        if streaming:
            r.read()
        msg = f"{path} answered HTTP {r.status_code}: {_error_text(r)}"
        if r.status_code in RETRY_STATUS:
            raise _Retry(msg, "http_5xx")
        raise TeacherError(f"{self.url}: {msg}")


class OllamaTeacher(_HTTPTeacher):
    """Ollama native `/api/chat` client with retries, think handling and a start-up check.

    `options` are Ollama options (temperature, top_p, top_k, num_predict, num_ctx, seed, ...);
    `num_ctx` defaults to 4096 since Ollama's own default varies with the machine.
    """

    def __init__(
        self,
        url: str | None = None,
        model: str | None = None,
        think: bool | str = False,
        options: dict[str, Any] | None = None,
        timeout: float | httpx.Timeout = 120.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        stream: bool = False,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        keep_alive: str | int | None = None,
    ):
        super().__init__(
            url or os.environ.get("OLLAMA_URL") or DEFAULT_URL,
            model or os.environ.get("OLLAMA_MODEL") or DEFAULT_MODEL,
            timeout,
            retries,
            backoff,
            max_backoff,
            client,
            sleep,
            rng,
        )
        self.think = think
        self.options = {"num_ctx": 4096, **(options or {})}
        self.stream = stream
        self.keep_alive = keep_alive

    def check(self) -> dict[str, Any]:
        """Check Ollama is up and the model is pulled; return `{"version", "model"}` info."""
        try:
            r = self.client.get(self.url + "/api/tags")
        except httpx.TransportError:
            raise TeacherError(
                f"cannot reach Ollama at {self.url}: start it with `ollama serve` "
                "(or set OLLAMA_URL)"
            ) from None
        if r.status_code != 200:
            raise TeacherError(
                f"{self.url}/api/tags answered HTTP {r.status_code}: {_error_text(r)} "
                "(is this an Ollama server? set OLLAMA_URL)"
            )
        want = _model_name(self.model)
        models = r.json().get("models") or []
        found = next(
            (m for m in models if _model_name(m.get("name") or m.get("model") or "") == want),
            None,
        )
        if found is None:
            raise TeacherError(
                f"model {self.model} is not pulled at {self.url}: run `ollama pull {self.model}`"
            )
        version = None
        try:
            v = self.client.get(self.url + "/api/version")
            if v.status_code == 200:
                version = v.json().get("version")
        except httpx.TransportError:
            pass
        return {"version": version, "model": found}

    def chat(
        self, messages: list[dict[str, Any]], seed: int | None = None, **options: Any
    ) -> TeacherReply:
        """One chat turn; `seed` and `options` override the teacher's options for this call."""
        opts = {**self.options, **options}
        if seed is not None:
            opts["seed"] = seed
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": self.stream,
            "think": self.think,
            "options": opts,
        }
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        t0 = time.perf_counter()
        reader = self._read_stream if self.stream else self._read_json
        out, reasons = self._post("/api/chat", body, self.stream, reader)
        msg = out.get("message") or {}
        content, thinking = split_think(msg.get("content") or "", msg.get("thinking") or "")
        return TeacherReply(
            content=content,
            thinking=thinking,
            model=out.get("model", self.model),
            eval_count=out.get("eval_count"),
            prompt_eval_count=out.get("prompt_eval_count"),
            latency_s=time.perf_counter() - t0,
            attempts=len(reasons) + 1,
            retry_reasons=reasons,
            done_reason=out.get("done_reason"),
            eval_s=out["eval_duration"] / 1e9 if out.get("eval_duration") else None,
        )

    def _read_json(self, r: httpx.Response) -> dict:
        out = _json_body(r, f"{self.url}/api/chat", retry=True)
        if "error" in out:
            raise TeacherError(f"{self.url}/api/chat: {out['error']}")
        return out

    def _read_stream(self, r: httpx.Response) -> dict:
        parts: dict[str, list[str]] = {"content": [], "thinking": []}
        final: dict | None = None
        for line in r.iter_lines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:  # a line cut off: the runner or a proxy dropped the stream
                raise _Retry(f"/api/chat: bad stream line {line[:200]!r}", "bad_json") from None
            if "error" in obj:  # e.g. "model runner has unexpectedly stopped": try again
                raise _Retry(f"/api/chat: error in stream: {obj['error']}", "stream")
            m = obj.get("message") or {}
            for k in parts:
                if m.get(k):
                    parts[k].append(m[k])
            if obj.get("done"):
                final = obj
                break
        if final is None:
            raise _Retry("/api/chat stream ended without a done line", "stream")
        final["message"] = {"role": "assistant", **{k: "".join(v) for k, v in parts.items()}}
        return final


class OpenAITeacher(_HTTPTeacher):
    """OpenAI-compatible `/v1/chat/completions` client (vLLM, llama.cpp, Ollama's `/v1`, ...).

    Reasoning in `reasoning` / `reasoning_content` (or a leading `<think>` block) goes to
    `thinking`. `options` are request fields such as temperature, top_p, max_tokens, seed.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        options: dict[str, Any] | None = None,
        timeout: float | httpx.Timeout = 120.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ):
        base = base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[:-3]
        key = api_key or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else None
        super().__init__(
            base, model, timeout, retries, backoff, max_backoff, client, sleep, rng, headers
        )
        self.options = dict(options or {})

    def check(self) -> dict[str, Any]:
        """Check the server is up and lists the model; return its `/v1/models` entry."""
        try:
            r = self.client.get(self.url + "/v1/models")
        except httpx.TransportError:
            raise TeacherError(f"cannot reach the OpenAI-compatible server at {self.url}") from None
        if r.status_code != 200:
            raise TeacherError(
                f"{self.url}/v1/models answered HTTP {r.status_code}: {_error_text(r)}"
            )
        data = r.json().get("data") or []
        found = next((m for m in data if m.get("id") == self.model), None)
        if found is None:
            ids = ", ".join(m.get("id", "?") for m in data) or "none"
            raise TeacherError(f"model {self.model} is not served at {self.url} (served: {ids})")
        return found

    def chat(
        self, messages: list[dict[str, Any]], seed: int | None = None, **options: Any
    ) -> TeacherReply:
        """One chat turn; `seed` and `options` override the teacher's options for this call."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            **self.options,
            **options,
        }
        if seed is not None:
            body["seed"] = seed
        t0 = time.perf_counter()
        where = f"{self.url}/v1/chat/completions"
        out, reasons = self._post(
            "/v1/chat/completions", body, False, lambda r: _json_body(r, where, retry=True)
        )
        if "error" in out:
            raise TeacherError(f"{self.url}/v1/chat/completions: {out['error']}")
        choice = (out.get("choices") or [{}])[0]
        msg = choice.get("message") or {}
        thinking = msg.get("reasoning") or msg.get("reasoning_content") or ""
        content, thinking = split_think(msg.get("content") or "", thinking)
        usage = out.get("usage") or {}
        return TeacherReply(
            content=content,
            thinking=thinking,
            model=out.get("model", self.model),
            eval_count=usage.get("completion_tokens"),
            prompt_eval_count=usage.get("prompt_tokens"),
            latency_s=time.perf_counter() - t0,
            attempts=len(reasons) + 1,
            retry_reasons=reasons,
            done_reason=choice.get("finish_reason"),
        )


class OracleTeacher:
    """Offline teacher: `reply_fn(task)` is the task generator's own verified answer."""

    def __init__(self, reply_fn: Callable[[Any], str], model: str = "oracle"):
        self.reply_fn = reply_fn
        self.model = model

    def check(self) -> dict[str, Any]:
        """Always fine: nothing to reach."""
        return {"model": self.model}

    def chat(self, task: Any, seed: int | None = None, **_: Any) -> TeacherReply:
        """The oracle answer for `task` (whatever object `reply_fn` takes)."""
        t0 = time.perf_counter()
        content = self.reply_fn(task)
        return TeacherReply(content=content, model=self.model, latency_s=time.perf_counter() - t0)

    def close(self) -> None:
        pass


def make_teacher(kind: str = "ollama", **kw: Any):
    """Build a teacher: "ollama" (url/model default to OLLAMA_URL / OLLAMA_MODEL), "openai"
    (needs `base_url` and `model`) or "oracle" (needs `reply_fn`)."""
    if kind == "ollama":
        return OllamaTeacher(**kw)
    if kind == "openai":
        if not kw.get("base_url"):
            raise ValueError("--teacher openai needs --base_url URL")
        kw.setdefault("model", os.environ.get("OLLAMA_MODEL") or DEFAULT_MODEL)
        return OpenAITeacher(**kw)
    if kind == "oracle":
        if "reply_fn" not in kw:
            raise ValueError("--teacher oracle needs reply_fn (the task generator's answer)")
        return OracleTeacher(**kw)
    raise ValueError(f"unknown teacher {kind!r}: use ollama, openai or oracle")
