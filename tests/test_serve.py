"""`minillm serve`: driven through the official `ollama` and `openai` clients on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import ollama
import openai
import pytest
from conftest import served_app

from minillm.generate import Token
from minillm.serve import App, build_parser
from minillm.serve.engine import split_stop
from minillm.serve.parse import ThinkSplitter, split_thinking

MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def srv(tiny_ckpt):
    from minillm.checkpoint import load

    model, tok = load(tiny_ckpt)
    app = App(
        model,
        tok,
        "tiny:latest",
        max_num_predict=64,
        max_prompt_tokens=200,
        max_body=16384,
        max_batch=8,
        max_pending=6,
        log=False,
    )
    with served_app(app) as url:
        yield app, url


def think_generate(model, tokenizer, prompts, params):
    pieces = ["<thi", "nk>", "let me ", "see</th", "ink>", "hello", " world"]
    for n, text in enumerate(pieces):
        last = n == len(pieces) - 1
        for i in range(len(prompts)):
            yield Token(i, 5, text, "stop" if last else None)
        if params.max_new_tokens == 13 and n == 3:  # a failure after streaming started
            raise RuntimeError("boom")
    yield []


@pytest.fixture(scope="module")
def think_srv(tiny_ckpt):
    from minillm.checkpoint import load

    model, tok = load(tiny_ckpt)
    app = App(model, tok, "thinker:latest", log=False, generate_fn=think_generate)
    with served_app(app) as url:
        yield url


def test_ollama_chat_and_generate(srv):
    app, url = srv
    c = ollama.Client(host=url)
    r = c.chat(model="tiny", messages=MSG, stream=False, options={"num_predict": 5})
    assert r.done and r.done_reason in ("stop", "length") and r.message.role == "assistant"
    assert 0 < r.eval_count <= 5 and r.prompt_eval_count > 0 and r.eval_duration > 0
    assert r.total_duration >= r.eval_duration
    parts = list(c.chat(model="tiny:latest", messages=MSG, options={"num_predict": 6}, stream=True))
    assert parts[-1].done and not any(p.done for p in parts[:-1]) and parts[-1].eval_count <= 6
    g = c.generate(model="tiny", prompt="once upon", options={"num_predict": 4, "temperature": 0})
    assert g.done and g.eval_count <= 4
    gs = list(
        c.generate(
            model="tiny",
            prompt="once upon",
            stream=True,
            options={"num_predict": 4, "temperature": 0},
        )
    )
    assert "".join(p.response for p in gs) == g.response and gs[-1].done_reason == g.done_reason


def test_tags_show_version(srv):
    _, url = srv
    c = ollama.Client(host=url)
    assert [m.model for m in c.list().models] == ["tiny:latest"]
    s = c.show("tiny")
    assert s.modelinfo["llama.block_count"] == 2 and "completion" in s.capabilities
    assert httpx.get(url).text == "Ollama is running"
    assert "version" in httpx.get(f"{url}/api/version").json()


def test_options_honoured(srv):
    _, url = srv
    c = ollama.Client(host=url)
    r = c.generate(model="tiny", prompt="the", options={"num_predict": 3, "temperature": 0.7})
    assert r.eval_count <= 3
    greedy = {"num_predict": 24, "temperature": 0}
    a, b = (c.generate(model="tiny", prompt="the cat", options=greedy) for _ in range(2))
    assert a.response == b.response and len(a.response) >= 4
    seeded = {"num_predict": 16, "temperature": 1.0, "seed": 7}
    x, y = (c.generate(model="tiny", prompt="the cat", options=seeded) for _ in range(2))
    assert x.response == y.response
    text = a.response
    cut = text[len(text) // 2 : len(text) // 2 + 2]
    s = c.generate(model="tiny", prompt="the cat", options={**greedy, "stop": [cut]})
    assert s.response == text[: text.find(cut)] and s.done_reason == "stop"


def test_unknown_model_404(srv):
    _, url = srv
    with pytest.raises(ollama.ResponseError) as e:
        ollama.Client(host=url).chat(model="nope", messages=MSG)
    assert e.value.status_code == 404 and "model 'nope' not found" in e.value.error
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="x").chat.completions.create(
            model="nope", messages=MSG
        )


def test_openai(srv):
    _, url = srv
    o = openai.OpenAI(base_url=f"{url}/v1", api_key="x")
    r = o.chat.completions.create(model="tiny", messages=MSG, max_tokens=5, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens <= 5
    chunks = list(
        o.chat.completions.create(
            model="tiny",
            messages=MSG,
            max_tokens=5,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == r.choices[0].message.content and chunks[-1].usage.completion_tokens <= 5
    assert [m.id for m in o.models.list()] == ["tiny:latest"]


def test_errors_and_limits(srv):
    _, url = srv
    r = httpx.post(f"{url}/api/chat", content=b"{not json")
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
    c = ollama.Client(host=url)
    with pytest.raises(ollama.ResponseError) as e:
        c.generate(model="tiny", prompt="x", options={"num_predict": 100})
    assert e.value.status_code == 400 and "num_predict" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        c.generate(model="tiny", prompt="word " * 400)
    assert e.value.status_code == 400 and "prompt has" in e.value.error
    r = httpx.post(f"{url}/api/chat", content=b" " * 40000)
    assert r.status_code == 413 and "exceeds" in r.json()["error"]
    for path in ("/api/pull", "/api/create", "/api/delete", "/api/copy", "/api/push"):
        r = httpx.post(f"{url}{path}", json={"model": "x", "path": "/etc/passwd"})
        assert r.status_code == 501 and "not supported" in r.json()["error"]
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": "tiny", "messages": "x"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def fire(url: str, n: int, results: list) -> list[threading.Thread]:
    def one():
        try:
            c = ollama.Client(host=url)
            results.append(c.generate(model="tiny", prompt="hi", options={"num_predict": 4}))
        except Exception as e:  # noqa: BLE001
            results.append(e)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def wait_for(cond, timeout: float = 10.0) -> None:
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, "timed out"
        time.sleep(0.01)


def test_concurrent_requests_share_a_batch(srv):
    app, url = srv
    results: list = []
    app.engine.pause()
    try:
        threads = fire(url, 4, results)
        wait_for(lambda: app.engine.stats()["waiting"] == 4)
    finally:
        app.engine.resume()
    for t in threads:
        t.join(30)
    assert len(results) == 4 and all(r.done and 0 < r.eval_count <= 4 for r in results)
    assert app.engine.stats()["batch_sizes"][-1] == 4


def test_too_many_requests_503(srv):
    app, url = srv
    results: list = []
    app.engine.pause()
    try:
        threads = fire(url, app.engine.max_pending, results)
        wait_for(lambda: app.engine.stats()["active"] == app.engine.max_pending)
        r = httpx.post(f"{url}/api/generate", json={"model": "tiny", "prompt": "hi"})
        assert r.status_code == 503 and "server busy" in r.json()["error"]
    finally:
        app.engine.resume()
    for t in threads:
        t.join(30)
    assert all(getattr(r, "done", False) for r in results)


def test_think_field(think_srv):
    c = ollama.Client(host=think_srv)
    r = c.chat(model="thinker", messages=MSG, think=True, stream=False)
    assert r.message.thinking == "let me see" and r.message.content == "hello world"
    parts = list(c.chat(model="thinker", messages=MSG, think=True, stream=True))
    thinking = "".join(p.message.thinking or "" for p in parts)
    assert thinking == "let me see" and "".join(p.message.content for p in parts) == "hello world"
    r = c.chat(model="thinker", messages=MSG, think=False)
    assert not r.message.thinking and r.message.content == "hello world"
    g = c.generate(model="thinker", prompt="hi", think=True, stream=False)
    assert g.thinking == "let me see" and g.response == "hello world"


def test_error_after_stream_started(think_srv):
    c = ollama.Client(host=think_srv)
    parts = []
    with pytest.raises(ollama.ResponseError) as e:
        for p in c.chat(model="thinker", messages=MSG, options={"num_predict": 13}, stream=True):
            parts.append(p)
    assert "boom" in e.value.error and parts and parts[0].message.thinking
    r = httpx.post(
        f"{think_srv}/api/chat",
        json={"model": "thinker", "messages": MSG, "stream": False, "options": {"num_predict": 13}},
    )
    assert r.status_code == 500 and "boom" in r.json()["error"]


def test_format_json_num_ctx_tools(srv):
    _, url = srv
    c = ollama.Client(host=url)
    r = c.chat(model="tiny", messages=MSG, format="json", options={"num_predict": 4})
    assert r.done  # 4 tokens may end as a valid prefix; tests/test_json_format.py checks parsing
    assert r.message.content.startswith("{")
    with pytest.raises(ollama.ResponseError) as e:
        c.generate(model="tiny", prompt="one two three four five six", options={"num_ctx": 4})
    assert e.value.status_code == 400 and "prompt has" in e.value.error
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    with pytest.raises(ollama.ResponseError) as e:
        c.chat(model="tiny", messages=MSG, tools=tools)
    assert e.value.status_code == 400 and "tools" in e.value.error


def test_splitters():
    s = ThinkSplitter()
    out = [p for t in ["a<th", "ink>b</", "think>c"] for p in s.feed(t)] + s.feed("", True)
    assert out == [("content", "a"), ("thinking", "b"), ("content", "c")]
    assert split_thinking("<think>x</think>y") == ("x", "y")
    assert split_stop("hello wor", ["world"]) == ("hello ", "wor", False)
    assert split_stop("hello world!", ["world"]) == ("hello ", "", True)


def test_default_host_and_ctrl_c(tiny_ckpt):
    assert build_parser().parse_args(["--checkpoint", "x"]).host == "127.0.0.1"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(
        [sys.executable, "-m", "minillm.serve", "--checkpoint", tiny_ckpt, "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = p.stderr.readline()
        assert "on http://127.0.0.1:" in line and "tiny:latest" in line
        url = line.split(" on ")[1].split()[0]
        assert httpx.get(url).text == "Ollama is running"
        p.send_signal(signal.SIGINT)
        assert p.wait(20) == 0
    finally:
        if p.poll() is None:
            p.kill()


def test_port_in_use_is_one_line_naming_the_fix(tiny_ckpt):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "minillm.serve", "--checkpoint", tiny_ckpt, "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"minillm serve: error: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "pick another --port"
    )


def raw_exchange(url: str, data: bytes) -> bytes:
    """Send raw bytes on one connection, half-close it, and read until the server closes."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_error_paths_consume_the_body(srv):
    """A body that is itself a request is never answered as one (no request smuggling)."""
    _, url = srv
    inner = b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n"
    for path in (b"/api/pull", b"/api/nothing", b"/api/chat"):
        first = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
            path, len(inner), inner)  # fmt: skip
        follow = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        out = raw_exchange(url, first + follow)
        assert out.count(b"HTTP/1.1 ") == 2, out  # the error, then "Ollama is running"
        assert b'"version"' not in out and out.endswith(b"Ollama is running")


def test_oversized_and_bad_bodies_close_the_connection(srv):
    _, url = srv
    r = httpx.post(f"{url}/api/chat", content=b" " * 40000)
    assert r.status_code == 413 and r.headers["connection"] == "close"
    out = raw_exchange(url, b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") and b"Connection: close" in out
    out = raw_exchange(url, b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
    assert out.startswith(b"HTTP/1.1 400") and b"ended after 1 of 50" in out


@pytest.mark.parametrize(
    "body, field",
    [
        (b'{"model": "tiny", "prompt": "hi", "options": {"temperature": NaN}}', "options.temperature"),
        (b'{"model": "tiny", "prompt": "hi", "options": {"top_p": Infinity}}', "options.top_p"),
        (b'{"model": "tiny", "prompt": "hi", "options": {"top_k": 1e400}}', "options.top_k"),
        (b'{"model": "tiny", "prompt": "hi", "options": {"seed": 1e30}}', "option seed"),
        (b'{"model": "tiny", "prompt": "hi", "options": {"repeat_last_n": 1e12}}', "option repeat_last_n"),
        (b'{"model": "tiny", "prompt": "hi", "options": {"num_ctx": -1e300}}', "option num_ctx"),
        (b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1e20}',
         "option num_predict"),
    ],
)  # fmt: skip
def test_invalid_numbers_are_400_naming_the_field(srv, body, field):
    _, url = srv
    path = "/v1/chat/completions" if b"messages" in body else "/api/generate"
    r = httpx.post(f"{url}{path}", content=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert field in (err["message"] if isinstance(err, dict) else err)


def test_seed_minus_one_is_random(srv):
    _, url = srv
    opts = {"seed": -1, "num_predict": 2}
    r = httpx.post(f"{url}/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False,
                                                "options": opts})  # fmt: skip
    assert r.status_code == 200 and r.json()["done"]


def test_200_clients_at_once_get_200_or_503_and_no_reset(srv):
    from launch.bench_serve import flood

    app, url = srv
    r = flood(url, "tiny", 200, num_predict=2)
    assert r["reset"] == 0 and r["other"] == 0, r
    assert r["200"] + r["503"] == 200 and r["200"] >= app.engine.max_pending, r
    assert r["retry_after"] == r["503"], r
