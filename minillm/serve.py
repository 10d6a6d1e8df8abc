"""`minillm serve`: an Ollama-compatible (and OpenAI-compatible) HTTP server for a checkpoint.

    minillm serve --checkpoint out/sft [--host 127.0.0.1] [--port 11434]

Concurrent requests are decoded together in batches (see `minillm.serve_engine`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from minillm import __version__
from minillm.serve_engine import (
    ApiError,
    Busy,
    Engine,
    Request,
    ThinkSplitter,
    add_json_hint,
    is_json,
    make_sampling,
    now_iso,
    openai_chunk,
    openai_error,
    openai_usage,
    parse_json,
    parse_messages,
    parse_options,
)

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "minillm-serve"

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

    def read_body(self) -> dict[str, Any]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ApiError(400, "chunked request bodies are not supported; send Content-Length")
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "invalid Content-Length") from None
        if n > self.app.max_body:
            self.close_connection = True
            if n <= 16 * self.app.max_body:  # drain it so that the client reads the answer
                self.rfile.read(n)
            raise ApiError(
                413, f"request body of {n} bytes exceeds the limit of {self.app.max_body} bytes"
            )
        return parse_json(self.rfile.read(n) if n > 0 else b"")

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

    def tags(self) -> None:
        size = self.app.params * 4
        m = {
            "name": self.app.name,
            "model": self.app.name,
            "modified_at": self.app.modified,
            "size": size,
            "digest": self.app.digest,
            "details": self.app.details(),
        }
        self.send(200, {"models": [m]})

    def ps(self) -> None:
        m = {
            "name": self.app.name,
            "model": self.app.name,
            "size": self.app.params * 4,
            "digest": self.app.digest,
            "details": self.app.details(),
            "size_vram": 0,
        }
        self.send(200, {"models": [m]})

    def show(self) -> None:
        body = self.read_body()
        self.app.check_model(body.get("model") or body.get("name"))
        a = self.app.model.args
        caps = ["completion", "thinking"] if self.app.thinking else ["completion"]
        self.send(
            200,
            {
                "modelfile": f"# served by minillm serve\nFROM {self.app.name}\n",
                "parameters": "temperature 0.8\ntop_p 0.9\ntop_k 40",
                "template": self.app.tokenizer.chat_template,
                "license": "",
                "details": self.app.details(),
                "model_info": {
                    "general.architecture": "llama",
                    "general.parameter_count": self.app.params,
                    "llama.context_length": a.max_position_embeddings,
                    "llama.block_count": a.num_hidden_layers,
                    "llama.embedding_length": a.hidden_size,
                    "llama.attention.head_count": a.num_attention_heads,
                    "llama.attention.head_count_kv": a.num_key_value_heads,
                    "llama.vocab_size": a.vocab_size,
                },
                "capabilities": caps,
                "modified_at": self.app.modified,
            },
        )

    def generate(self, chat: bool) -> None:
        app, body = self.app, self.read_body()
        app.check_model(body.get("model"))
        think = body.get("think")
        if body.get("tools"):
            raise ApiError(400, f'"{app.name}" does not support tools')
        if think not in (None, False) and not app.thinking:
            raise ApiError(400, f'"{app.name}" does not support thinking')
        fmt = body.get("format")
        if fmt not in (None, "", "json") and not isinstance(fmt, dict):
            raise ApiError(400, f'invalid format {fmt!r}: use "json" or a JSON schema')
        body["format"] = fmt or None
        if chat:
            messages = body.get("messages")
            empty = not messages
            messages = None if empty else parse_messages(messages)
        else:
            prompt = body.get("prompt") or ""
            if not isinstance(prompt, str):
                raise ApiError(400, "prompt must be a string")
            empty = not prompt
            system = body.get("system")
            if system is not None and not isinstance(system, str):
                raise ApiError(400, "system must be a string")
            if body.get("raw"):
                messages = None
            else:
                messages = ([{"role": "system", "content": system}] if system else []) + [
                    {"role": "user", "content": prompt}
                ]
        base = {"model": app.name, "created_at": now_iso()}
        if empty:  # Ollama: an empty prompt just loads the model
            out = {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
            self.send(200, {**base, **out, "done": True, "done_reason": "load"})
            return
        req = app.prepare(body, messages, None if messages is not None else prompt)

        def piece(kind: str, text: str) -> dict:
            if chat:
                return {"message": {"role": "assistant", "content": "", **{kind: text}}}
            return {"response": "", **{kind: text}}

        stream = body.get("stream", True) is not False
        parts: dict[str, list[str]] = {"thinking": [], "content": []}
        try:
            if stream:
                self.start_stream("application/x-ndjson")
            try:
                for kind, val in events(req, think):
                    if kind == "done":
                        info = val
                        break
                    parts[kind].append(val)
                    if stream:
                        key = kind if chat or kind == "thinking" else "response"
                        self.chunk(
                            self.line(
                                {**base, "created_at": now_iso(), **piece(key, val), "done": False}
                            )
                        )
            except ApiError as e:
                if not stream:
                    raise
                self.chunk(self.line({"error": str(e)}))
                self.chunk(b"")
                return
        except (BrokenPipeError, ConnectionResetError):
            req.cancel()
            raise
        self.tokens = info["eval_count"]
        content = "".join(parts["content"])
        if body["format"] and not is_json(content) and app.log:
            print(
                "[serve] format=json requested but the reply is not valid JSON",
                file=sys.stderr,
                flush=True,
            )
        final = {**base, "created_at": now_iso(), "done": True, **info}
        if stream:
            final.update(piece("content" if chat else "response", ""))
            self.chunk(self.line(final))
            self.chunk(b"")
            return
        thinking = "".join(parts["thinking"])
        if chat:
            msg = {"role": "assistant", "content": content}
            final["message"] = {**msg, "thinking": thinking} if thinking else msg
        else:
            final.update(response=content, **({"thinking": thinking} if thinking else {}))
        self.send(200, final)

    @staticmethod
    def line(obj: dict) -> bytes:
        return json.dumps(obj).encode() + b"\n"

    def v1_models(self) -> None:
        created = int(time.time())
        m = {"id": self.app.name, "object": "model", "created": created, "owned_by": "minillm"}
        self.send(200, {"object": "list", "data": [m]})

    def v1_chat(self) -> None:
        app, body = self.app, self.read_body()
        app.check_model(body.get("model"))
        messages = parse_messages(body.get("messages"))
        opts = {"temperature": 1.0, "top_p": 1.0}
        for k, o in (
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("seed", "seed"),
            ("max_tokens", "num_predict"),
            ("max_completion_tokens", "num_predict"),
        ):
            if body.get(k) is not None:
                opts[o] = body[k]
        rf = body.get("response_format")
        rf = rf if isinstance(rf, dict) else {}
        body = {
            **body,
            "options": opts,
            "format": "json" if rf.get("type", "text") != "text" else None,
        }
        req = app.prepare(body, messages, None)
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        stream = bool(body.get("stream"))
        parts: dict[str, list[str]] = {"thinking": [], "content": []}
        if stream:
            self.start_stream("text/event-stream")
        try:
            try:
                for kind, val in events(req, None):
                    if kind == "done":
                        info = val
                        break
                    parts[kind].append(val)
                    if stream:
                        key = "reasoning" if kind == "thinking" else "content"
                        delta = {"role": "assistant", key: val}
                        self.chunk(self.sse(openai_chunk(cid, app.name, delta, None)))
            except ApiError as e:
                if not stream:
                    raise
                self.chunk(self.sse(openai_error(e.status, str(e))))
                self.chunk(b"")
                return
        except (BrokenPipeError, ConnectionResetError):
            req.cancel()
            raise
        self.tokens = info["eval_count"]
        finish = "length" if info["done_reason"] == "length" else "stop"
        if stream:
            self.chunk(self.sse(openai_chunk(cid, app.name, {}, finish)))
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = openai_chunk(cid, app.name, {}, None)
                usage.update(choices=[], usage=openai_usage(info))
                self.chunk(self.sse(usage))
            self.chunk(b"data: [DONE]\n\n")
            self.chunk(b"")
            return
        msg = {"role": "assistant", "content": "".join(parts["content"])}
        if parts["thinking"]:
            msg["reasoning"] = "".join(parts["thinking"])
        self.send(
            200,
            {
                "id": cid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": app.name,
                "system_fingerprint": "fp_minillm",
                "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                "usage": openai_usage(info),
            },
        )

    @staticmethod
    def sse(obj: dict) -> bytes:
        return b"data: " + json.dumps(obj).encode() + b"\n\n"


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def serve_app(app: App, host: str = "127.0.0.1", port: int = 11434) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server for `app`; call `serve_forever()` on it."""
    server = Server((host, port), Handler)
    server.daemon_threads = True
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
    p.add_argument("--quiet", action="store_true", help="no per-request log lines")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    for k in ("max_batch", "max_pending", "max_num_predict", "max_body"):
        if getattr(ns, k) < 1:
            raise ValueError(f"--{k}={getattr(ns, k)} must be >= 1")
    if not 0 <= ns.port < 65536:
        raise ValueError(f"--port={ns.port} must be in 0..65535")

    from minillm.infer import load_with_adapters

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


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
