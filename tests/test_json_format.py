"""JSON-constrained decoding: the prefix checker, constrained generation on a random tiny
model, and `format="json"` / `response_format` through the official clients."""

from __future__ import annotations

import json

import ollama
import openai
import pytest
from conftest import make_tiny, served_checkpoint

from minillm.generate import Token
from minillm.json_constraint import JsonPrefix, stream_generate_constrained

VALID = [
    '{"a": 1}',
    '{"a": [1, 2.5, -3e10, 0, -0.0, 1E+2, 4e-3], "b": {"c": null}}',
    '{"s": "x\\"y\\\\z\\/\\b\\f\\n\\r\\t\\u00e9\\uABCD", "t": true, "f": false}',
    '{"nested": [[[]], {}, [{"k": "v"}]], "empty": ""}',
    '{"unicode": "héllo 世界 🎉"}',
    '{\n  "a" : [ 1 , 2 ] ,\n\t"b" :{ }\r\n}',
    "{}",
]

INVALID = [
    " {}",  # the reply starts with the value
    "[1]",  # format json: the top-level value is an object
    '"x"',
    "{a",
    '{"a" 1',
    '{"a":}',
    '{"a":1,}',
    '{"a":01',
    '{"a":1.}',
    '{"a":-}',
    '{"a":1e}',
    '{"a":tru ',
    '{"a":nul}',
    '{"a":"\\x"}',
    '{"a":"\\u12G4"}',
    '{"a":"line\nbreak"}',
    '{"a":[1,]}',
    '{"a":[1 2]}',
    '{"a":1]',
    '{"a":[1}',
    "{} ",  # nothing after a complete value
    "{}{}",
    '{"a":' + " " * 21 + "1}",  # whitespace runs are capped
]


def feed_all(text: str, **kw) -> JsonPrefix | None:
    c = JsonPrefix(**kw)
    return c if c.feed(text) else None


@pytest.mark.parametrize("text", VALID)
def test_valid_documents_and_all_prefixes(text):
    assert json.loads(text) is not None
    for i in range(len(text)):
        c = feed_all(text[:i])
        assert c is not None and not c.complete, text[:i]
        # The shortest completion of every prefix is valid JSON (an object).
        assert isinstance(json.loads(text[:i] + c.closing()), dict), text[:i]
        done = c.clone()
        assert done.feed(c.closing()) and done.complete
    c = feed_all(text)
    assert c is not None and c.complete and c.closing() == ""


@pytest.mark.parametrize("text", INVALID)
def test_invalid_continuations(text):
    c = JsonPrefix()
    assert not c.feed(text)


def test_incremental_feed_and_clone():
    text = '{"k": [1, "two", {"x": -1.5e3}], "u": "\\u00e9"}'
    c = JsonPrefix()
    for ch in text:
        before = c.clone()
        assert c.feed(ch)
        # A clone is independent: a rejected continuation leaves the original usable.
        probe = c.clone()
        probe.feed("\x00")
        assert before.clone().feed(ch)
    assert c.complete
    assert not c.clone().feed("x")


def test_any_top_level_value_when_not_object_only():
    for text, complete in (("[1, 2]", True), ('"s"', True), ("true", True), ("12", False)):
        c = feed_all(text, object_only=False)
        assert c is not None and c.complete == complete
        assert json.loads(text + c.closing()) == json.loads(text)
    assert feed_all("12 ", object_only=False).complete
    assert feed_all("12 3", object_only=False) is None


def test_closing_states():
    cases = {
        "": "{}",
        "{": "}",
        '{"ke': '":0}',
        '{"k"': ":0}",
        '{"k":': "0}",
        '{"k":-': "0}",
        '{"k":1.': "0}",
        '{"k":"a\\': 'n"}',
        '{"k":"\\u0': '000"}',
        '{"k":[': "]}",
        '{"k":[1,': "0]}",
        '{"k":fa': "lse}",
        '{"k":1,': '"":0}',
    }
    for prefix, closing in cases.items():
        c = feed_all(prefix)
        assert c is not None and c.closing() == closing, prefix


def run(model, tok, prompt, **kw):
    items = list(stream_generate_constrained(model, tok, [tok.encode(prompt)], **kw))
    gen = items[-1][0]
    steps = [t for t in items[:-1] if isinstance(t, Token)]
    return gen, steps


@pytest.fixture(scope="module")
def tiny():
    return make_tiny(seed=0)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.5])
@pytest.mark.parametrize("max_new_tokens", [8, 64, 100])
def test_constrained_generation_parses(tiny, temperature, max_new_tokens):
    model, tok = tiny
    for seed in range(3):
        gen, steps = run(
            model,
            tok,
            "hello there",
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=40,
            top_p=0.9,
            repetition_penalty=1.1,
            repetition_context_size=64,
            seed=seed,
        )
        assert isinstance(json.loads(gen.text), dict), gen.text
        assert gen.finish_reason == "stop" and len(gen.tokens) <= max_new_tokens
        # The streamed pieces are the reply; the stop token ends the stream.
        assert "".join(t.text for t in steps) == gen.text
        assert steps[-1].finish_reason == "stop" and steps[-1].text == ""
        assert not set(gen.tokens) & tok.eos_ids


def test_constrained_generation_is_seeded(tiny):
    model, tok = tiny
    a, _ = run(model, tok, "hi", max_new_tokens=32, temperature=1.0, seed=7)
    b, _ = run(model, tok, "hi", max_new_tokens=32, temperature=1.0, seed=7)
    assert a.tokens == b.tokens


def test_budget_too_small_is_length(tiny):
    model, tok = tiny
    gen, steps = run(model, tok, "hi", max_new_tokens=1)
    assert gen.finish_reason == "length" and steps[-1].finish_reason == "length"
    assert len(gen.tokens) == 1
    c = JsonPrefix()
    assert c.feed(gen.text) and not c.complete  # a valid but incomplete prefix


def test_constrained_generation_rejects_batches(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="one prompt"):
        list(stream_generate_constrained(model, tok, [[1], [2]]))


# --- through the server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tiny_ckpt):
    with served_checkpoint(tiny_ckpt, max_num_predict=128) as url:
        yield url


MSG = [{"role": "user", "content": "Give me a JSON object describing a cat."}]


def test_ollama_format_json(srv):
    c = ollama.Client(host=srv)
    for seed, temperature in ((0, 0.0), (1, 0.8), (2, 1.2)):
        opts = {"num_predict": 64, "seed": seed, "temperature": temperature}
        r = c.chat(model="tiny", messages=MSG, format="json", options=opts)
        assert isinstance(json.loads(r.message.content), dict), r.message.content
        assert r.done_reason == "stop"
        parts = list(c.chat(model="tiny", messages=MSG, format="json", options=opts, stream=True))
        text = "".join(p.message.content for p in parts)
        assert isinstance(json.loads(text), dict), text
        assert parts[-1].done and parts[-1].done_reason == "stop"
    r = c.generate(model="tiny", prompt="a json object:", format="json", options=opts)
    assert isinstance(json.loads(r.response), dict)
    parts = list(c.generate(model="tiny", prompt="x", format="json", options=opts, stream=True))
    assert isinstance(json.loads("".join(p.response for p in parts)), dict)


def test_ollama_format_schema(srv):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    r = ollama.Client(host=srv).chat(
        model="tiny", messages=MSG, format=schema, options={"num_predict": 64, "seed": 3}
    )
    assert isinstance(json.loads(r.message.content), dict)


def test_openai_json_object(srv):
    o = openai.OpenAI(base_url=f"{srv}/v1", api_key="x")
    for seed in range(2):
        r = o.chat.completions.create(
            model="tiny",
            messages=MSG,
            response_format={"type": "json_object"},
            max_tokens=64,
            seed=seed,
        )
        assert isinstance(json.loads(r.choices[0].message.content), dict)
        assert r.choices[0].finish_reason == "stop"
        chunks = o.chat.completions.create(
            model="tiny",
            messages=MSG,
            response_format={"type": "json_object"},
            max_tokens=64,
            seed=seed,
            stream=True,
        )
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert isinstance(json.loads(text), dict), text
