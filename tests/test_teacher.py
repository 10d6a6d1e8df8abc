"""Teacher clients against the in-process `minillm serve` and a scripted stub HTTP server."""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import served_checkpoint

from minillm.teacher import (
    OllamaTeacher,
    OpenAITeacher,
    OracleTeacher,
    TeacherError,
    TeacherReply,
    make_teacher,
    split_think,
)
from tests.conftest import free_port

MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def srv(tiny_ckpt):
    with served_checkpoint(tiny_ckpt, max_num_predict=32) as url:
        yield url


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_chat(srv, stream):
    t = OllamaTeacher(srv, "tiny", options={"num_predict": 5, "temperature": 0}, stream=stream)
    r = t.chat(MSG)
    assert isinstance(r, TeacherReply) and isinstance(r.content, str)
    assert r.model == "tiny:latest" and r.attempts == 1 and r.latency_s > 0
    assert 1 <= r.eval_count <= 5 and r.prompt_eval_count > 0
    assert r.done_reason in ("stop", "length")
    assert t.chat(MSG).content == r.content
    assert t.chat(MSG, num_predict=2).eval_count <= 2


def test_ollama_seed(srv):
    t = OllamaTeacher(srv, "tiny:latest", options={"num_predict": 12, "temperature": 1.5})
    a, b = t.chat(MSG, seed=7), t.chat(MSG, seed=7)
    assert a.content == b.content
    others = {t.chat(MSG, seed=s).content for s in range(8, 14)}
    assert len(others | {a.content}) > 1


def test_ollama_check(srv):
    info = OllamaTeacher(srv, "tiny").check()
    assert info["model"]["name"] == "tiny:latest" and info["version"]
    with pytest.raises(TeacherError, match=r"model qwen3:0.6b is not pulled .*ollama pull qwen3"):
        OllamaTeacher(srv, "qwen3:0.6b").check()
    port = free_port()
    with pytest.raises(TeacherError, match="cannot reach Ollama .*start it with `ollama serve`"):
        OllamaTeacher(f"http://127.0.0.1:{port}", retries=0).check()


def test_ollama_4xx_from_server(srv):
    t = OllamaTeacher(srv, "tiny", sleep=lambda s: pytest.fail("retried"))
    with pytest.raises(TeacherError, match="HTTP 400: num_predict 1000 exceeds"):
        t.chat(MSG, num_predict=1000)
    with pytest.raises(TeacherError, match="HTTP 404"):
        OllamaTeacher(srv, "other").chat(MSG)


def test_openai_teacher(srv):
    t = OpenAITeacher(srv + "/v1", "tiny:latest", options={"max_tokens": 4, "temperature": 0})
    assert t.check()["id"] == "tiny:latest"
    r = t.chat(MSG)
    assert 1 <= r.eval_count <= 4 and r.prompt_eval_count > 0 and r.thinking == ""
    assert r.content == t.chat(MSG).content
    with pytest.raises(TeacherError, match="not served"):
        OpenAITeacher(srv, "nope").check()


class Stub:
    """Scripted server: each request pops the next (status, body, delay) step."""

    def __init__(self, steps):
        self.steps = list(steps)
        self.requests: list[dict] = []
        stub = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                stub.requests.append(json.loads(self.rfile.read(n)))
                status, body, delay = stub.steps.pop(0)
                if delay:
                    time.sleep(delay)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


OK = {
    "model": "m:latest",
    "message": {"role": "assistant", "content": "42"},
    "done": True,
    "done_reason": "stop",
    "eval_count": 3,
    "prompt_eval_count": 9,
}


def stub_teacher(steps, **kw):
    stub = Stub(steps)
    slept: list[float] = []
    t = OllamaTeacher(stub.url, "m", sleep=slept.append, rng=random.Random(0), **kw)
    return stub, t, slept


def test_retry_503_then_ok():
    stub, t, slept = stub_teacher([(503, {"error": "busy"}, 0), (503, {}, 0), (200, OK, 0)])
    r = t.chat(MSG, seed=3)
    stub.close()
    assert r.content == "42" and r.attempts == 3 and r.eval_count == 3
    assert len(slept) == 2 and 0 < slept[0] < slept[1]
    body = stub.requests[0]
    assert body["think"] is False and body["stream"] is False
    assert body["options"] == {"num_ctx": 4096, "seed": 3}


def test_500_gives_up():
    stub, t, slept = stub_teacher([(500, {"error": "oops"}, 0)] * 4, retries=3)
    with pytest.raises(TeacherError, match="after 4 attempts.*HTTP 500: oops") as e:
        t.chat(MSG)
    stub.close()
    assert e.value.attempts == 4
    assert len(stub.requests) == 4 and len(slept) == 3
    assert slept == sorted(slept)


def test_backoff_capped():
    t = OllamaTeacher("http://x", backoff=1.0, max_backoff=4.0, rng=random.Random(1))
    ds = [t.delay(a) for a in range(1, 8)]
    assert all(0.5 <= d <= 4.0 for d in ds) and max(ds[4:]) <= 4.0 and min(ds[4:]) >= 2.0


def test_400_not_retried():
    stub, t, slept = stub_teacher([(400, {"error": "bad option"}, 0), (200, OK, 0)])
    with pytest.raises(TeacherError, match="HTTP 400: bad option"):
        t.chat(MSG)
    stub.close()
    assert len(stub.requests) == 1 and slept == []


def test_stream_error_line():
    lines = [
        {"model": "m", "message": {"role": "assistant", "content": "hel"}, "done": False},
        {"error": "model runner crashed"},
    ]
    data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    good = json.dumps(OK).encode() + b"\n"
    stub, t, slept = stub_teacher([(200, data, 0), (200, good, 0)], stream=True)
    r = t.chat(MSG)  # a runner that crashed mid-reply is asked again
    assert r.content == "42" and r.retry_reasons == ("stream",) and len(slept) == 1
    stub.close()
    assert stub.requests[0]["stream"] is True
    stub, t, slept = stub_teacher([(200, data, 0)] * 4, stream=True)
    with pytest.raises(TeacherError, match="giving up after 4 attempts.*error in stream: model"):
        t.chat(MSG)
    stub.close()


def test_stream_thinking_and_content():
    chunks = [
        {"message": {"role": "assistant", "content": "", "thinking": "hmm"}, "done": False},
        {"message": {"role": "assistant", "content": "4"}, "done": False},
        {"message": {"role": "assistant", "content": "2"}, "done": False},
        {**OK, "message": {"role": "assistant", "content": ""}},
    ]
    data = b"".join(json.dumps(x).encode() + b"\n" for x in chunks)
    stub, t, _ = stub_teacher([(200, data, 0)], stream=True, think=True)
    r = t.chat(MSG)
    stub.close()
    assert (r.content, r.thinking, r.eval_count) == ("42", "hmm", 3)
    assert stub.requests[0]["think"] is True


def test_think_leak_split():
    leak = {
        **OK,
        "message": {"role": "assistant", "content": "<think>\nlet me see\n</think>\n\n42"},
    }
    stub, t, _ = stub_teacher([(200, leak, 0)])
    r = t.chat(MSG)
    stub.close()
    assert (r.content, r.thinking) == ("42", "let me see")
    assert split_think("no think here") == ("no think here", "")
    assert split_think("a <think>x</think>") == ("a", "x")
    assert split_think("a <think>x</think> b <think>y", "t") == ("a  b", "t\nx\ny")
    assert split_think("plan</think>42") == ("42", "plan")


def test_read_timeout_retried():
    stub, t, slept = stub_teacher([(200, OK, 1.0), (200, OK, 0)], timeout=0.3)
    r = t.chat(MSG)
    assert r.content == "42" and r.attempts == 2 and len(slept) == 1
    time.sleep(0.8)
    stub.close()


def test_openai_reasoning_and_retry():
    body = {
        "model": "m",
        "choices": [
            {
                "message": {"role": "assistant", "content": "42", "reasoning_content": "think"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    stub = Stub([(502, {"error": {"message": "bad gateway"}}, 0), (200, body, 0)])
    slept: list[float] = []
    t = OpenAITeacher(stub.url, "m", api_key="k", sleep=slept.append)
    r = t.chat(MSG, seed=1, temperature=0.5)
    stub.close()
    assert (r.content, r.thinking, r.eval_count, r.attempts) == ("42", "think", 2, 2)
    assert stub.requests[1]["seed"] == 1 and stub.requests[1]["temperature"] == 0.5


def test_oracle_and_factory(monkeypatch):
    t = make_teacher("oracle", reply_fn=lambda task: str(task["a"] + task["b"]))
    assert isinstance(t, OracleTeacher) and t.chat({"a": 2, "b": 3}).content == "5"
    assert t.check()["model"] == "oracle"
    monkeypatch.setenv("OLLAMA_URL", "http://10.0.0.1:1234/")
    monkeypatch.setenv("OLLAMA_MODEL", "llama3")
    o = make_teacher("ollama")
    assert (o.url, o.model) == ("http://10.0.0.1:1234", "llama3")
    monkeypatch.delenv("OLLAMA_URL")
    monkeypatch.delenv("OLLAMA_MODEL")
    o = make_teacher()
    assert (o.url, o.model) == ("http://127.0.0.1:11434", "qwen3:0.6b")
    oa = make_teacher("openai", base_url="http://h:8000/v1", model="x")
    assert isinstance(oa, OpenAITeacher) and oa.url == "http://h:8000"
    with pytest.raises(ValueError, match="base_url"):
        make_teacher("openai")
    with pytest.raises(ValueError, match="unknown teacher"):
        make_teacher("vllm")


def test_non_json_body_is_a_teacher_error():
    import httpx

    from minillm.teacher import TeacherError, _json_body

    r = httpx.Response(200, text="<html>proxy error</html>")
    with pytest.raises(TeacherError, match="not JSON"):
        _json_body(r, "http://x/api/chat")


def test_generator_counts_retries_and_failures():
    """Retried requests (503 then OK) and requests that fail for good are both counted."""
    from actors.generator import TeacherGenerator

    stub = Stub([(503, {"error": "busy"}, 0), (200, OK, 0)] + [(500, {"error": "oops"}, 0)] * 4)
    spec = {"kind": "ollama", "url": stub.url, "model": "m", "retries": 3, "backoff": 0.0}
    tasks = {"seed": 3, "weights": {"logic": 1.0}, "lang": "en", "lease_size": 2}
    g = TeacherGenerator(0, spec, tasks, inflight=1)
    table, stats = g.generate(0, 0, 2)
    stub.close()
    assert stats["retries"] == 1 + 3  # one retry before the answer, three before giving up
    assert stats["errors"] == {"http_5xx": 1} and len(stub.requests) == 6
    assert len(table) == 0 and sum(stats["rejected"].values()) == 1  # "42" is not the answer
