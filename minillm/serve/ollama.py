"""Ollama API routes of `minillm serve`: `/api/chat`, `/api/generate` (NDJSON or one JSON
object), `/api/tags`, `/api/ps`, `/api/show`, as a mixin of the server's request handler."""

from __future__ import annotations

import json
import sys

from minillm.serve.parse import ApiError, events, is_json, now_iso, parse_messages


class OllamaRoutes:
    """Needs the handler's `app`, `read_body`, `send`, `start_stream` and `chunk`."""

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
