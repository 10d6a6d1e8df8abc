"""Generation: cached == uncached, batched == alone, sampling options, and the infer/chat verbs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import pytest
from conftest import make_tiny

from minillm.chat import Conversation
from minillm.generate import (
    StreamingDetokenizer,
    Token,
    apply_repetition_penalty,
    generate,
    sample,
    stream_generate,
    top_k_filter,
    top_p_filter,
)
from minillm.infer import build_prompt, chat_prompt
from minillm.model import init_weights
from minillm.rl.rollout import rollout
from minillm.sampling import SamplingParams

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["hi", "Hello there, how are you doing today?", "请介绍一下自己。" * 3]


@pytest.fixture(scope="module")
def tiny():
    """A model whose greedy continuations depend on the context: at the default init std
    a random model mostly repeats its input's last token, which would hide masking bugs."""
    model, tok = make_tiny(seed=0)
    init_weights(model, 0, std=0.2)
    mx.eval(model.parameters())
    return model, tok


@pytest.fixture(scope="module")
def prompts(tiny):
    _, tok = tiny
    ps = [build_prompt(tok, t) for t in TEXTS]
    assert len({len(p) for p in ps}) == len(ps)
    return ps


def reference(model, prompt, n, penalty=1.0, window=None):
    """Greedy decoding by full recomputation, no cache, no padding."""
    seq, out = list(prompt), []
    for _ in range(n):
        logits = model(mx.array([seq]))[0, -1]
        if penalty != 1.0:
            for t in set(seq[-window:] if window else seq):
                v = logits[t].item()
                logits[t] = v / penalty if v > 0 else v * penalty
        out.append(int(mx.argmax(logits).item()))
        seq.append(out[-1])
    return out


class Biased:
    """Wraps a model and adds a fixed bias to its logits."""

    def __init__(self, model, bias):
        self.model, self.bias, self.args = model, bias, model.args

    def make_cache(self):
        return self.model.make_cache()

    def hidden(self, ids, cache=None, pad=None):
        return self.model.hidden(ids, cache=cache, pad=pad)

    def logits(self, h):
        return self.model.logits(h) + self.bias


def biased(tiny, token, value):
    model, _ = tiny
    bias = mx.zeros(model.args.vocab_size)
    bias[token] = value
    return Biased(model, bias)


def test_greedy_deterministic(tiny, prompts):
    model, tok = tiny
    a = generate(model, tok, prompts[:1], max_new_tokens=10, stop_ids=[], seed=1)
    b = generate(model, tok, prompts[:1], max_new_tokens=10, stop_ids=[], seed=2)
    assert a[0].tokens == b[0].tokens and len(a[0].tokens) == 10


def test_cached_matches_recompute_single(tiny, prompts):
    model, tok = tiny
    g = generate(model, tok, [prompts[1]], max_new_tokens=12, stop_ids=[])[0]
    assert g.tokens == reference(model, prompts[1], 12)
    assert g.finish_reason == "length" and g.prompt_tokens == len(prompts[1])


def test_batch_matches_each_alone(tiny, prompts):
    model, tok = tiny
    batch = generate(model, tok, prompts, max_new_tokens=10, stop_ids=[])
    for p, g in zip(prompts, batch, strict=True):
        alone = generate(model, tok, [p], max_new_tokens=10, stop_ids=[])[0]
        assert g.tokens == alone.tokens == reference(model, p, 10)
        assert g.prompt_tokens == len(p)


def test_repetition_penalty_batched_matches_reference(tiny, prompts):
    model, tok = tiny
    for window in (None, 4):
        batch = generate(
            model,
            tok,
            prompts,
            max_new_tokens=8,
            stop_ids=[],
            repetition_penalty=1.5,
            repetition_context_size=window,
        )
        for p, g in zip(prompts, batch, strict=True):
            assert g.tokens == reference(model, p, 8, penalty=1.5, window=window)


def test_repetition_penalty_ignores_padding(tiny, prompts):
    _, tok = tiny
    likes_pad = biased(tiny, tok.pad_id, 50.0)
    assert all(tok.pad_id not in p for p in prompts)
    batch = generate(
        likes_pad, tok, prompts, max_new_tokens=1, repetition_penalty=1000.0, stop_ids=[]
    )
    assert [g.tokens for g in batch] == [[tok.pad_id]] * len(prompts)


def test_repetition_context_size(tiny, prompts):
    _, tok = tiny
    im_start = prompts[0][0]
    assert all(p[-3] == im_start for p in prompts)  # "<|im_start|>assistant\n"
    likes_it = biased(tiny, im_start, 50.0)
    kw = dict(max_new_tokens=1, repetition_penalty=1000.0, stop_ids=[])
    for window, expect in ((2, True), (3, False), (None, False)):
        batch = generate(likes_it, tok, prompts, repetition_context_size=window, **kw)
        assert [g.tokens == [im_start] for g in batch] == [expect] * len(prompts)


def test_repetition_penalty_math():
    logits = mx.array([[2.0, -1.0, 0.5, 3.0, -4.0], [2.0, -1.0, 0.5, 3.0, -4.0]])
    context = mx.array([[0, 1, 1, -1], [-1, -1, 4, 3]])
    out = apply_repetition_penalty(logits, context, 2.0).tolist()
    assert out[0] == [1.0, -2.0, 0.5, 3.0, -4.0]
    assert out[1] == [2.0, -1.0, 0.5, 1.5, -8.0]


def test_top_k_and_top_p_filters():
    x = mx.array([[1.0, 5.0, 3.0, 2.0]])
    assert top_k_filter(x, 2).tolist() == [[-float("inf"), 5.0, 3.0, -float("inf")]]
    assert top_k_filter(x, 0).tolist() == x.tolist()
    logits = mx.log(mx.array([[0.15, 0.5, 0.05, 0.3]]))
    keep = lambda p: mx.isfinite(top_p_filter(logits, p))[0].tolist()  # noqa: E731
    assert keep(1e-9) == [False, True, False, False]
    assert keep(0.6) == [False, True, False, True]
    assert keep(0.9) == [True, True, False, True]
    assert keep(1.0) == [True, True, True, True]


def test_sample_respects_filters():
    logits = mx.broadcast_to(mx.array([0.0, 0.1, 0.2, 0.3, 0.4]), (400, 5))
    keys = mx.stack([mx.random.key(i) for i in range(400)])
    y, _ = sample(logits, keys, temperature=1.0, top_k=2)
    assert set(y.tolist()) == {3, 4}
    y, new_keys = sample(logits, keys, temperature=1.0)
    assert set(y.tolist()) == {0, 1, 2, 3, 4}
    assert not mx.array_equal(keys, new_keys)


def test_seeds(tiny, prompts):
    model, tok = tiny
    kw = dict(max_new_tokens=16, stop_ids=[], temperature=1.0)
    a = generate(model, tok, prompts[:2], seed=7, **kw)
    b = generate(model, tok, prompts[:2], seed=7, **kw)
    c = generate(model, tok, prompts[:2], seed=8, **kw)
    assert [g.tokens for g in a] == [g.tokens for g in b]
    assert a[0].tokens != c[0].tokens
    # row i samples with seed + i whatever else is in the batch
    assert generate(model, tok, prompts[1:2], seed=8, **kw)[0].tokens == a[1].tokens


def test_top_k_1_and_tiny_top_p_are_greedy(tiny, prompts):
    model, tok = tiny
    greedy = generate(model, tok, prompts, max_new_tokens=10, stop_ids=[])
    for kw in (dict(top_k=1), dict(top_p=1e-6)):
        got = generate(
            model, tok, prompts, max_new_tokens=10, stop_ids=[], temperature=1.5, seed=3, **kw
        )
        assert [g.tokens for g in got] == [g.tokens for g in greedy]


def test_stop_and_min_new_tokens(tiny, prompts):
    _, tok = tiny
    eager = biased(tiny, tok.eos_id, 100.0)
    g = generate(eager, tok, prompts[:1], max_new_tokens=10)[0]
    assert g.tokens == [] and g.finish_reason == "stop" and g.text == ""
    g = generate(eager, tok, prompts[:1], max_new_tokens=10, min_new_tokens=4)[0]
    assert len(g.tokens) == 4 and tok.eos_id not in g.tokens and g.finish_reason == "stop"
    never = biased(tiny, tok.eos_id, -100.0)
    g = generate(never, tok, prompts[:1], max_new_tokens=6)[0]
    assert len(g.tokens) == 6 and g.finish_reason == "length"


def test_stop_on_custom_stop_id(tiny, prompts):
    model, tok = tiny
    kw = dict(max_new_tokens=12, temperature=1.0, seed=0)
    full = generate(model, tok, [prompts[0]], stop_ids=[], **kw)[0].tokens
    k = next(i for i in range(1, 12) if full[i] not in full[:i])
    g = generate(model, tok, [prompts[0]], stop_ids=[full[k]], **kw)[0]
    assert g.tokens == full[:k] and g.finish_reason == "stop"


def test_max_seq_len_and_bad_args(tiny, prompts):
    model, tok = tiny
    p = prompts[1]
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(model, tok, [p], max_seq_len=len(p))
    g = generate(model, tok, [p], max_seq_len=len(p) + 3, max_new_tokens=50, stop_ids=[])[0]
    assert len(g.tokens) == 3 and g.finish_reason == "length"
    with pytest.raises(ValueError, match="empty"):
        generate(model, tok, [p, []])
    with pytest.raises(ValueError, match="temperature"):
        generate(model, tok, [p], temperature=-1)
    assert generate(model, tok, []) == []


def test_sampling_params_are_one_set_of_options_for_every_decoder(tiny, prompts):
    model, tok = tiny
    params = SamplingParams(max_new_tokens=6, temperature=0.9, top_p=0.8, seed=4)
    by_params = generate(model, tok, prompts, params)
    assert [g.tokens for g in by_params] == [
        g.tokens
        for g in generate(
            model, tok, prompts, max_new_tokens=6, temperature=0.9, top_p=0.8, seed=4
        )  # fmt: skip
    ]
    # A keyword overrides the params; an unknown one is named.
    assert (
        len(generate(model, tok, prompts[:1], params, max_new_tokens=2, stop_ids=[])[0].tokens) == 2
    )
    with pytest.raises(TypeError, match="temprature"):
        generate(model, tok, prompts, temprature=1.0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    # RL rollouts run the same decode loop: same seed and options, same token ids (rollouts
    # keep the stop token).
    groups = rollout(model, tok, prompts, 2, max_new_tokens=6, temperature=0.9, top_p=0.8, seed=4)
    rows = [p for p in prompts for _ in range(2)]
    gens = generate(model, tok, rows, params)
    for s, g in zip([s for grp in groups for s in grp], gens, strict=True):
        assert s.tokens[: len(g.tokens)] == g.tokens and s.finish_reason == g.finish_reason


def test_detokenizer_holds_partial_characters(tiny):
    _, tok = tiny
    text = "你好，世界！🙂 naïve café 请介绍一下自己。"
    detok = StreamingDetokenizer(tok)
    deltas = [detok.add(t) for t in tok.encode(text)] + [detok.flush()]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


def test_stream_deltas_concatenate_to_text(tiny, prompts):
    model, tok = tiny
    events, results = [], None
    for item in stream_generate(
        model, tok, prompts, max_new_tokens=40, temperature=1.0, seed=0, stop_ids=[]
    ):
        if isinstance(item, list):
            results = item
        else:
            assert isinstance(item, Token)
            events.append(item)
    assert results is not None and len(results) == len(prompts)
    for i, g in enumerate(results):
        mine = [e for e in events if e.index == i]
        assert "".join(e.text for e in mine) == g.text == tok.decode(g.tokens)
        assert [e.token for e in mine] == g.tokens
        assert [e.finish_reason for e in mine][-1] == "length"
    again = generate(model, tok, prompts, max_new_tokens=40, temperature=1.0, seed=0, stop_ids=[])
    assert [g.tokens for g in again] == [g.tokens for g in results]


def test_conversation_history_and_trimming(tiny):
    _, tok = tiny
    conv = Conversation(tok, system="be brief")
    first = conv.prompt("hello")
    assert first == chat_prompt(
        tok, [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    )
    conv.add("hello", "hi there")
    second = conv.prompt("how are you")
    assert tok.decode(second).count("hi there") == 1 and len(second) > len(first)
    conv.max_tokens = len(second) - 1
    trimmed = conv.prompt("how are you")
    assert conv.turns == [] and conv.dropped == 1 and "hi there" not in tok.decode(trimmed)
    conv.max_tokens = 3
    with pytest.raises(ValueError, match="shorter"):
        conv.prompt("how are you")


def run_cli(*args, stdin=None):
    env = {k: v for k, v in os.environ.items() if k != "MINILLM_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_infer_cli(tiny_ckpt):
    args = (
        "minillm.infer",
        "--checkpoint",
        tiny_ckpt,
        "--prompt",
        "请介绍一下自己。",
        "--max_new_tokens",
        "8",
        "--min_new_tokens",
        "8",
    )
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\n") and len(r.stdout) > 1
    assert "generated 8 tok" in r.stderr and "finish: length" in r.stderr
    s = run_cli(*args, "--stream")
    assert s.returncode == 0 and s.stdout == r.stdout


def test_infer_cli_errors():
    r = run_cli("minillm.infer", "--checkpoint", "/nonexistent")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "/nonexistent" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("minillm.infer", "--checkpoint", "/nonexistent", "--top_p", "0")
    assert r.returncode == 2 and "top_p" in r.stderr and "Traceback" not in r.stderr


def test_chat_cli(tiny_ckpt):
    model, tok = make_tiny(seed=0)
    r = run_cli(
        "minillm.chat",
        "--checkpoint",
        tiny_ckpt,
        "--max_new_tokens",
        "6",
        "--min_new_tokens",
        "6",
        "--verbose",
        stdin="hello\nhow are you\n/reset\nhi\n/exit\n",
    )
    assert r.returncode == 0, r.stderr
    turns = re.findall(r"prompt (\d+) tok.*generated (\d+) tok.*?(\d+) turns in history", r.stderr)
    assert len(turns) == 3, r.stderr
    (p1, n1, h1), (p2, _, h2), (p3, _, h3) = [tuple(map(int, t)) for t in turns]
    assert (h1, h2, h3) == (1, 2, 1) and n1 == 6
    first = build_prompt(tok, "hello")
    reply = generate(model, tok, [first], max_new_tokens=6, min_new_tokens=6)[0].text
    second = chat_prompt(
        tok,
        [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": reply},
            {"role": "user", "content": "how are you"},
        ],
    )
    assert (p1, p2, p3) == (len(first), len(second), len(build_prompt(tok, "hi")))
    assert "Traceback" not in r.stderr and ">>>" not in r.stdout


def test_greedy_replies_keep_order_across_budget_batches(tiny):
    from minillm.eval.greedy import greedy_replies

    model, tok = tiny
    convs = [[{"role": "user", "content": t}] for t in TEXTS * 2]
    budgets = [3, 5, 3, 5, 3, 4]
    seen = []
    gens = greedy_replies(model, tok, convs, budgets, batch_size=2, done=lambda i, g, n: seen.append((i, n)))  # fmt: skip
    assert sorted(i for i, _ in seen) == list(range(6)) and max(n for _, n in seen) == 2
    for c, b, g in zip(convs, budgets, gens, strict=True):
        ids = tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True)
        assert g.tokens == generate(model, tok, [ids], max_new_tokens=b)[0].tokens
    with pytest.raises(ValueError, match="budgets"):
        greedy_replies(model, tok, convs, [1], batch_size=2)
