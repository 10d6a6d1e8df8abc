"""`minillm serve`: an Ollama-compatible (and OpenAI-compatible) HTTP server for a checkpoint.

    minillm serve --checkpoint out/sft [--host 127.0.0.1] [--port 11434]

Concurrent requests are decoded together in batches (see `minillm.serve.engine`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from minillm import __version__
from minillm.serve.engine import Busy, Engine, Request
from minillm.serve.ollama import OllamaRoutes
from minillm.serve.openai import OpenAIRoutes
from minillm.serve.parse import (
    ApiError,
    add_json_hint,
    make_sampling,
    now_iso,
    openai_error,
    parse_json,
    parse_options,
)

RETRY_AFTER_S = 1  # what a 503 asks the client to wait, in seconds
UNSUPPORTED = ("/api/pull", "/api/push", "/api/create", "/api/delete", "/api/copy", "/api/blobs")


class App:
    """Everything the handlers share: the engine, the model's name and metadata, the limits."""

    def __init__(
        self,
        model,
        tokenizer,
        name: str,
        *,
        max_num_predict: int = 2048,
        max_prompt_tokens: int | None = None,
        max_body: int = 1 << 20,
        max_batch: int = 8,
        max_pending: int = 32,
        log: bool = True,
        **engine_kw,
    ):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.ctx = model.args.max_position_embeddings
        self.max_num_predict = max_num_predict
        self.max_prompt_tokens = min(max_prompt_tokens or self.ctx, self.ctx - 1)
        self.max_body, self.log = max_body, log
        self.engine = Engine(model, tokenizer, max_batch, max_pending, **engine_kw)
        self.modified = now_iso()
        self.digest = hashlib.sha256(f"{name}:{self.modified}".encode()).hexdigest()
        self.thinking = tokenizer.token_to_id("<think>") is not None
        self.params = sum(v.size for _, v in _flat(model.parameters()))

    def check_model(self, model: Any) -> None:
        if not isinstance(model, str) or not model:
            raise ApiError(400, "model is required")
        if (model if ":" in model else f"{model}:latest") != self.name:
            raise ApiError(404, f"model '{model}' not found")

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "safetensors",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": f"{self.params / 1e6:.1f}M",
            "quantization_level": "F32",
        }

    def prepare(self, body: dict, messages: list[dict] | None, prompt: str | None) -> Request:
        """A queued engine `Request` for a chat (`messages`) or a completion (`prompt`)."""
        opts, stop = parse_options(body.get("options"), body.get("stop"))
        sampling = make_sampling(opts)
        if body.get("format") is not None and messages is not None:
            messages = add_json_hint(messages)
        if messages is not None:
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True
            )
        else:
            ids = self.tokenizer.encode(prompt or "")
        ids = [int(t) for t in ids]
        ctx = min(opts.get("num_ctx") or self.ctx, self.ctx)
        if not ids:
            raise ApiError(400, "the prompt encodes to no tokens")
        if len(ids) > self.max_prompt_tokens or len(ids) >= ctx:
            limit = min(self.max_prompt_tokens, ctx - 1)
            raise ApiError(400, f"prompt has {len(ids)} tokens, more than the limit of {limit}")
        n = opts.get("num_predict")
        if n is not None and n > self.max_num_predict:
            raise ApiError(
                400, f"num_predict {n} exceeds the server limit of {self.max_num_predict}"
            )
        if n == 0:
            raise ApiError(400, "num_predict must be >= 1 (or -1 for the server limit)")
        n = self.max_num_predict if n is None or n < 0 else n
        req = Request(ids, sampling, min(n, ctx - len(ids)), stop)
        # format "json" or a JSON schema: decoding is constrained to a JSON object (the
        # schema itself is not enforced).
        req.json = body.get("format") is not None
        try:
            return self.engine.submit(req)
        except Busy as e:
            raise ApiError(503, str(e)) from None


def _flat(params):
    from mlx.utils import tree_flatten

    return tree_flatten(params)


class Handler(OllamaRoutes, OpenAIRoutes, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "minillm-serve"
    timeout = 300  # seconds a socket read or write may stall before the connection is dropped

    @property
    def app(self) -> App:
        return self.server.app

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_one_request(self) -> None:
        self.t0, self.status, self.tokens = time.perf_counter(), 0, 0
        super().handle_one_request()
        if self.status and self.app.log:
            ms = (time.perf_counter() - self.t0) * 1e3
            print(
                f"[serve] {self.command} {self.path} {self.status} {self.tokens} tok {ms:.0f} ms",
                file=sys.stderr,
                flush=True,
            )

    def send(self, status: int, obj: Any, ctype: str = "application/json") -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if status == 503:
            self.send_header("Retry-After", str(RETRY_AFTER_S))
        if self.close_connection:  # say so, so that a client never reuses a closed connection
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def start_stream(self, ctype: str) -> None:
        self.status = 200
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def take_body(self) -> None:
        """Read the request body before any route runs, so that no error path leaves it on a
        keep-alive connection to be parsed as the next request; an unreadable or oversized
        body closes the connection (413/400, sent with `Connection: close`)."""
        self.body, self.body_error = b"", None
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            self.body_error = ApiError(
                400, "chunked request bodies are not supported; send Content-Length"
            )
            return
        try:
            n = int(self.headers.get("Content-Length") or 0)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self.body_error = ApiError(400, "invalid Content-Length")
            return
        if n > self.app.max_body:
            self.close_connection = True
            if n <= 16 * self.app.max_body:  # drain it so that the client reads the answer
                self.rfile.read(n)
            self.body_error = ApiError(
                413, f"request body of {n} bytes exceeds the limit of {self.app.max_body} bytes"
            )
            return
        self.body = self.rfile.read(n) if n > 0 else b""
        if len(self.body) < n:
            self.close_connection = True
            self.body_error = ApiError(
                400, f"request body ended after {len(self.body)} of {n} bytes"
            )

    def read_body(self) -> dict[str, Any]:
        if self.body_error is not None:
            raise self.body_error
        return parse_json(self.body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_DELETE(self) -> None:
        self.route({})

    def do_GET(self) -> None:
        self.route(
            {
                "/": lambda: self.send(200, b"Ollama is running", "text/plain; charset=utf-8"),
                "/api/version": lambda: self.send(200, {"version": __version__}),
                "/api/tags": self.tags,
                "/api/ps": self.ps,
                "/v1/models": self.v1_models,
                "/debug/stats": lambda: self.send(200, self.app.engine.stats()),
            }
        )

    def do_POST(self) -> None:
        self.route(
            {
                "/api/chat": lambda: self.generate(chat=True),
                "/api/generate": lambda: self.generate(chat=False),
                "/api/show": self.show,
                "/v1/chat/completions": self.v1_chat,
            }
        )

    def route(self, routes: dict) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        openai = path.startswith("/v1/")
        try:
            self.take_body()
            if self.server.over_limit():
                self.close_connection = True
                raise ApiError(503, f"server busy: more than {self.server.max_conns} connections")
            if path in routes:
                routes[path]()
            elif path.startswith(UNSUPPORTED):
                raise ApiError(
                    501,
                    f"{path} is not supported: minillm serve only serves the "
                    f"checkpoint it was started with ({self.app.name})",
                )
            else:
                raise ApiError(404, f"{self.command} {path}: no such endpoint")
        except ApiError as e:
            if self.status == 0:
                self.send(e.status, openai_error(e.status, str(e)) if openai else {"error": str(e)})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:
            if self.status == 0:
                self.send(500, {"error": f"internal error: {e}"})


class Server(ThreadingHTTPServer):
    """One thread per connection, at most `max_conns` of them doing work: the rest get a
    clean 503. The listen backlog holds every connection a burst of clients opens at once,
    so none is reset before it can be answered."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, addr, handler, max_conns: int = 256):
        self.max_conns, self.conns, self.lock = max_conns, 0, threading.Lock()
        super().__init__(addr, handler)

    def over_limit(self) -> bool:
        return self.conns > self.max_conns

    def process_request_thread(self, request, client_address) -> None:
        with self.lock:
            self.conns += 1
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.conns -= 1

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def serve_app(app: App, host: str = "127.0.0.1", port: int = 11434) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server for `app`; call `serve_forever()` on it."""
    server = Server((host, port), Handler, max_conns=max(64, 4 * app.engine.max_pending))
    server.app = app
    return server


def default_name(checkpoint: str) -> str:
    return f"{Path(checkpoint).resolve().name}:latest"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minillm serve", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="checkpoint or run folder to serve")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: local only)")
    p.add_argument("--port", type=int, default=11434)
    p.add_argument("--model_name", default=None, help="default: the folder's name + ':latest'")
    p.add_argument("--tokenizer_path", default=None)
    p.add_argument("--adapter_path", default=None, help="LoRA adapters fused at load")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16")
    p.add_argument("--max_batch", type=int, default=8, help="requests decoded together")
    p.add_argument(
        "--max_pending", type=int, default=32, help="requests queued or running before 503"
    )
    p.add_argument(
        "--max_num_predict",
        type=int,
        default=2048,
        help="largest num_predict / max_tokens accepted (and the default)",
    )
    p.add_argument(
        "--max_prompt_tokens",
        type=int,
        default=None,
        help="longest prompt accepted (default: the model's context - 1)",
    )
    p.add_argument("--max_body", type=int, default=1 << 20, help="request body limit (bytes)")
    p.add_argument(
        "--batch_wait_ms",
        type=float,
        default=10.0,
        help="how long a new batch waits for more requests to join it",
    )
    p.add_argument(
        "--gpu_memory",
        type=float,
        default=None,
        help="on CUDA, the share of the GPU's memory this server keeps to (when it shares one)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-request log lines")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    for k in ("max_batch", "max_pending", "max_num_predict", "max_body"):
        if getattr(ns, k) < 1:
            raise ValueError(f"--{k}={getattr(ns, k)} must be >= 1")
    if not 0 <= ns.port < 65536:
        raise ValueError(f"--port={ns.port} must be in 0..65535")

    from minillm.checkpoint import load_with_adapters
    from minillm.gpu_memory import cap

    cap(ns.gpu_memory, "--gpu_memory")

    model, tokenizer = load_with_adapters(
        ns.checkpoint, ns.tokenizer_path, ns.dtype, ns.adapter_path
    )
    name = ns.model_name or default_name(ns.checkpoint)
    if ":" not in name:
        name += ":latest"
    app = App(
        model,
        tokenizer,
        name,
        max_num_predict=ns.max_num_predict,
        max_prompt_tokens=ns.max_prompt_tokens,
        max_body=ns.max_body,
        max_batch=ns.max_batch,
        max_pending=ns.max_pending,
        log=not ns.quiet,
        batch_wait=max(ns.batch_wait_ms, 0.0) / 1e3,
    )
    try:
        server = serve_app(app, ns.host, ns.port)
    except OSError as e:
        app.engine.close()
        raise ValueError(
            f"cannot listen on {ns.host}:{ns.port} ({e.strerror}); pick another --port"
        ) from None
    host, port = server.server_address[:2]
    print(f"[serve] {name} on http://{host}:{port} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("[serve] stopping", file=sys.stderr, flush=True)
    finally:
        server.server_close()
        app.engine.close()
    return 0
