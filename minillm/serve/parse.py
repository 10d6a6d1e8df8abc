"""Request parsing of `minillm serve`: JSON bodies, options and their bounds, messages, the
`<think>` split and the event stream both APIs answer from."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from typing import Any

from minillm.serve.engine import Request, Sampling

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
