"""An Ollama-protocol teacher (`/api/tags`, `/api/version`, `/api/chat`, JSON or NDJSON stream)
that answers the task generator's own correct reply, wrapped in every fault Ollama is known to
produce. The fault of a request depends only on (prompt, attempt), so a run is reproducible:

    busy503 err500 timeout reset truncated_json stream_error   -> a retry gets a clean answer
    empty                                                        -> "" (rejected: empty)
    thinking_field                                               -> reasoning in `thinking`
    leak_start leak_middle leak_end leak_unclosed leak_lone_close leak_upper
                                                                 -> `<think>` in `content`
    leak_variant                                                 -> `<Think >` (rejected)

`log` holds one (prompt, attempt, fault) per `/api/chat` request; `expected_stored()` is the
set of prompts a correct client stores.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RETRIED = ("busy503", "err500", "timeout", "reset", "truncated_json", "stream_error")
CONTENT = ("empty", "thinking_field", "leak_start", "leak_middle", "leak_end", "leak_unclosed",
           "leak_lone_close", "leak_upper", "leak_variant")  # fmt: skip
FAULTS = RETRIED + CONTENT
STORED = (  # content faults a correct client stores clean
    "ok", "thinking_field", "leak_start", "leak_middle", "leak_end", "leak_unclosed",
          "leak_lone_close", "leak_upper")  # fmt: skip


def wrap(fault: str, answer: str) -> tuple[str, str]:
    """(content, thinking) of a reply carrying `answer` under a content fault."""
    half = len(answer) // 2
    return {
        "empty": ("", ""),
        "thinking_field": (answer, "the user wants the answer"),
        "leak_start": (f"<think>let me see</think>\n{answer}", ""),
        "leak_middle": (f"{answer[:half]}<think>hmm, wait</think>{answer[half:]}", ""),
        "leak_end": (f"{answer}<think>done?</think>", ""),
        "leak_unclosed": (f"{answer}\n<think>and one more thing", ""),
        "leak_lone_close": (f"planning the reply</think>{answer}", ""),
        "leak_upper": (f"<THINK>shouting</THINK>{answer}", ""),
        "leak_variant": (f"{answer} <Think >sneaky</Think >", ""),
    }.get(fault, (answer, ""))


class HostileTeacher(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answer: Callable[[str], str | None], model: str = "hostile:latest",
                 fault_share: float = 0.7, timeout_s: float = 2.0, seed: int = 0):  # fmt: skip
        self.answer, self.model, self.fault_share = answer, model, fault_share
        self.timeout_s, self.seed = timeout_s, seed
        self.force: str | None = None  # every first attempt gets this fault (a test's choice)
        self.lock = threading.Lock()
        self.attempts: Counter = Counter()
        self.log: list[tuple[str, int, str]] = []
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fault(self, prompt: str) -> str:
        with self.lock:
            attempt = self.attempts[prompt]
            self.attempts[prompt] += 1
        h = int.from_bytes(hashlib.sha256(f"{self.seed}:{prompt}".encode()).digest()[:8], "big")
        first = FAULTS[(h // 1000) % len(FAULTS)] if (h % 1000) / 1000 < self.fault_share else "ok"
        first = self.force or first
        # a transport fault is answered cleanly on the retry; a content fault is the reply, so
        # asking again (a re-issued lease, a resumed run) gets the same one, as a seeded teacher
        kind = first if attempt == 0 or first in CONTENT else "ok"
        with self.lock:
            self.log.append((prompt, attempt, kind))
        return kind

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up (timeout fault) leaves a broken pipe: expected here

    def expected_stored(self) -> set[str]:
        """Prompts a correct client stores: all but those whose reply itself is bad (empty,
        a think-tag variant); a transport fault only costs a retry."""
        first = {p: k for p, a, k in reversed(self.log) if a == 0}
        return {p for p, k in first.items() if k not in ("empty", "leak_variant")}

    def injected(self) -> Counter:
        return Counter(k for _, _, k in self.log if k != "ok")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, obj, close: bool = False) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/api/tags":
            self.reply(200, {"models": [{"name": self.server.model, "model": self.server.model}]})
        elif self.path == "/api/version":
            self.reply(200, {"version": "0.12.0-hostile"})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path != "/api/chat":
            return self.reply(404, {"error": "not found"})
        prompt = next((m["content"] for m in body["messages"] if m["role"] == "user"), "")
        answer = self.server.answer(prompt)
        if answer is None:
            return self.reply(500, {"error": f"unknown prompt {prompt[:60]!r}"})
        kind = self.server.fault(prompt)
        stream = body.get("stream", True)  # Ollama streams unless told not to
        if kind == "busy503":
            return self.reply(
                503, {"error": "server busy, please try again.  maximum pending requests exceeded"}
            )
        if kind == "err500" or (kind == "stream_error" and not stream):
            return self.reply(500, {"error": "llama runner process has terminated: exit status 2"})
        if kind == "timeout":
            time.sleep(self.server.timeout_s)
            return self.reply(200, self.done(answer, ""))
        if kind == "reset":  # headers promise a body that never comes: the socket is cut
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "4096")
            self.end_headers()
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return None
        content, thinking = wrap(kind, answer)
        if not stream:
            data = json.dumps(self.done(content, thinking)).encode()
            if kind == "truncated_json":
                data = data[: len(data) // 2]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        lines = [self.part(content[:3], thinking), self.part(content[3:], "")]
        if kind == "stream_error":
            lines = [lines[0], {"error": "an error was encountered while running the model"}]
        else:
            lines.append(self.done("", ""))
        for i, obj in enumerate(lines):
            line = json.dumps(obj).encode() + b"\n"
            if kind == "truncated_json" and i == len(lines) - 1:
                line = line[: len(line) // 2]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.write(b"0\r\n\r\n")
        return None

    def part(self, content: str, thinking: str) -> dict:
        msg = {"role": "assistant", "content": content}
        if thinking:
            msg["thinking"] = thinking
        return {"model": self.server.model, "created_at": "2026-12-07T00:00:00Z",
                "message": msg, "done": False}  # fmt: skip

    def done(self, content: str, thinking: str) -> dict:
        return {**self.part(content, thinking), "done": True, "done_reason": "stop",
                "eval_count": 7, "prompt_eval_count": 11}  # fmt: skip


@contextlib.contextmanager
def hostile_teacher(answer: Callable[[str], str | None], **kw):
    """A running HostileTeacher on 127.0.0.1 at a free port; shut down afterwards."""
    srv = HostileTeacher(answer, **kw)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def task_answers(seed: int, weights: dict | None, lang: str, n: int) -> dict[str, str]:
    """prompt -> the task generator's correct reply, for task indices 0..n-1."""
    from minillm.data.tasks import TaskSource, oracle_reply

    src = TaskSource(seed, weights, lang)
    out = {}
    for i in range(n):
        t = src.draw(i)
        out.setdefault(t.prompt, oracle_reply(t))
    return out
