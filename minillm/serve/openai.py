"""OpenAI-compatible routes of `minillm serve`: `POST /v1/chat/completions` (JSON or SSE) and
`GET /v1/models`, as a mixin of the server's request handler."""

from __future__ import annotations

import json
import time
import uuid

from minillm.serve.parse import (
    ApiError,
    events,
    openai_chunk,
    openai_error,
    openai_usage,
    parse_messages,
)


class OpenAIRoutes:
    """Needs the handler's `app`, `read_body`, `send`, `start_stream` and `chunk`."""

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
