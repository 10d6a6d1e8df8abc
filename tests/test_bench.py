"""minillm bench: suites, scorers, runners (minillm serve + a flaky stub) and the report."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from minillm.eval.bench.__main__ import build_parser, make_items
from minillm.eval.bench.knowledge import facts
from minillm.eval.bench.run import MLXRunner, OllamaRunner, OpenAIRunner, run_items
from minillm.eval.bench.score import score, score_choice, score_int_list, score_json, score_string
from minillm.eval.bench.suites import SUITES, build, gen_suite, knowledge_order

OPTS = ["12", "34", "56", "78"]


@pytest.mark.parametrize(
    "text, valid, correct",
    [
        ("B", True, True),
        ("B.", True, True),
        ("(B)", True, True),
        ("答案：B", True, True),
        ("Answer: B", True, True),
        ("the answer is B", True, True),
        ("选B", True, True),
        ("**B**", True, True),
        ("<think>A looks right... no, it's C</think>\nB", True, True),
        ("Let me check.\nB) 34", True, True),
        ("A and C are wrong, so the answer is B", True, True),
        ("It is 34.", True, True),  # unique option value
        ("\\boxed{B}", True, True),
        ("I'd choose b.", True, True),
        ("The correct answer is: C. 56\nWait, the answer is B", True, True),
        ("A cat is not a number, I think", False, False),
        ("I think so", False, False),
        ("a", False, False),
        ("The answer is a cat.", False, False),
        ("A or B", False, False),
        ("A. 12\nB. 34\nC. 56\nD. 78", False, False),  # options echoed
        ("Answer: B or C", False, False),
        ("<think>The answer is B</think>", False, False),
        ("12 + 22 = 34", False, False),  # two options mentioned
        ("A", True, False),
        ("答案是C", True, False),
    ],
)
def test_score_choice(text, valid, correct):
    assert score_choice(text, "B", OPTS) == (valid, correct)


@pytest.mark.parametrize(
    "text, valid, correct",
    [
        ("-5, 1, 3", True, True),
        ("[−5, 1, 3]", True, True),
        ("Sorted:\n-5\n1\n3", True, True),
        ("<think>3, 1, -5 -> hmm</think>-5, 1, 3", True, True),
        ("```\n-5, 1, 3\n```", True, True),
        ("Input: 3, 1, -5\nOutput: -5, 1, 3", True, True),
        ("The sorted list (3 numbers) is -5, 1, 3.", True, True),
        ("-5, 1", True, False),  # cut off
        ("-5, 1, 3, 3", True, False),
        ("3, 1, -5", True, False),  # not sorted
        ("-5, 1.5, 3", True, False),
        ("<think>-5, 1, 3</think>", False, False),
        ("I cannot sort these.", False, False),
    ],
)
def test_score_int_list(text, valid, correct):
    assert score_int_list(text, [-5, 1, 3]) == (valid, correct)


JS = {"sum": 3, "diff": 1, "prod": 2}


@pytest.mark.parametrize(
    "text, valid, correct",
    [
        ('{"sum": 3, "diff": 1, "prod": 2}', True, True),
        ('```json\n{"sum": 3, "diff": 1, "prod": 2}\n```', True, True),
        ('Sure! {"sum":3,"diff":1,"prod":2} Hope it helps.', True, True),
        ('<think>{"sum": 0}</think>{"sum": 3, "diff": 1, "prod": 2, "note": "x"}', True, True),
        ('{"sum": "3", "diff": 1, "prod": 2}', True, False),  # string, not int
        ('{"sum": true, "diff": 1, "prod": 2}', True, False),
        ('{"sum": 3, "diff": 1}', True, False),  # missing key
        ('{"sum": 3, "diff": 1, "prod": 2', False, False),  # truncated
        ("{sum: 3, diff: 1, prod: 2}", False, False),
        ('<think>{"sum": 3, "diff": 1, "prod": 2}</think>', False, False),
    ],
)
def test_score_json(text, valid, correct):
    assert score_json(text, JS) == (valid, correct)


@pytest.mark.parametrize(
    "text, valid, correct",
    [
        ("abc_1", True, True),
        ('"abc_1"', True, True),
        ("`abc_1`", True, True),
        ("  abc_1\n", True, True),
        ("```\nabc_1\n```", True, True),
        ("<think>copy it</think>abc_1", True, True),
        ("abc_1.", True, False),
        ("ABC_1", True, False),
        ("Here it is: abc_1", True, False),
        ("abc_", True, False),
        ("", False, False),
        ("<think>abc_1</think>", False, False),
    ],
)
def test_score_string(text, valid, correct):
    assert score_string(text, "abc_1") == (valid, correct)


def test_score_dispatch():
    item = dict(answer_type="choice", answer="C", options=OPTS)
    assert score(item, "C") == (True, True)
    with pytest.raises(ValueError):
        score(dict(answer_type="int"), "1")


def test_knowledge_bank():
    bank = facts()
    assert len(bank) >= 200
    for lang in ("zh", "en"):
        assert len({f[lang][0] for f in bank}) == len(bank)
        assert all(len(set(f[lang][1])) == 4 for f in bank)
    assert len(set(knowledge_order(random.Random(0), 200))) == 200  # no repeats within a pass
    items = gen_suite("knowledge", 10_000, seed=0, langs=["en"])
    counts = Counter(it["prompt"].split("\n")[0] for it in items)
    assert len(counts) >= 200
    top200 = sum(c for _, c in counts.most_common(200))
    assert top200 >= 0.95 * 10_000  # the draws spread over >= 200 facts ...
    assert max(counts.values()) <= 1.05 * 10_000 / len(bank) + 1  # ... evenly


@pytest.mark.parametrize("suite", ["math_mcq", "qa", "logic", "knowledge"])
def test_letters_balanced(suite):
    items = gen_suite(suite, 4000, seed=3, langs=["en"])
    counts = Counter(it["answer"] for it in items)
    assert set(counts) == set("ABCD")
    assert all(abs(c / 4000 - 0.25) <= 0.03 for c in counts.values())
    for it in items[:200]:
        assert it["options"][" ABCD".index(it["answer"]) - 1] in it["prompt"]
    if suite == "logic":  # boolean items no longer only A/B
        bools = Counter(it["answer"] for it in items if it["category"] == "bool")
        assert all(bools[L] > 300 for L in "ABCD")


def test_math_answers_right():
    for it in gen_suite("math_mcq", 200, seed=1, langs=["en"]):
        a, op, b = (
            it["prompt"].split("\n")[0].removeprefix("Compute: ").removesuffix(" = ?").split()
        )
        a, b = int(a), int(b)
        want = {"+": a + b, "-": a - b, "×": a * b, "÷": a // b}[op]
        assert it["options"]["ABCD".index(it["answer"])] == str(want)
        assert len(set(it["options"])) == 4


def test_determinism_and_langs():
    a, b, c = build(7, "both"), build(7, "both"), build(8, "both")
    assert a == b and a != c
    assert len(a) == 2 * 50 * len(SUITES)
    zh = [it for it in a if it["lang"] == "zh"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in zh[0]["prompt"])
    by_lang = Counter((it["suite"], it["lang"]) for it in a)
    assert set(by_lang.values()) == {50}


def test_selection_and_budgets():
    from minillm.tokenizer import load_tokenizer

    ns = build_parser().parse_args(
        ["--suite", "qa,sort,json", "--n_qa", "3", "--n_sort", "5", "--n_json", "4", "--lang", "en"]
    )
    items = make_items(ns)
    assert Counter(it["suite"] for it in items) == {"qa": 3, "sort": 5, "json": 4}
    tok = load_tokenizer()
    for it in items:
        if it["answer_type"] == "int_list":
            text = ", ".join(map(str, it["answer"]))
        elif it["answer_type"] == "json":
            text = json.dumps(it["answer"])
        else:
            continue
        assert len(tok.encode(text)) + 4 <= it["max_new_tokens"], (text, it["max_new_tokens"])
    ns = build_parser().parse_args(["--suite", "copy", "--n_copy", "2", "--max_new_tokens", "7"])
    assert {it["max_new_tokens"] for it in make_items(ns)} == {7}
    with pytest.raises(ValueError, match="unknown suite"):
        make_items(build_parser().parse_args(["--suite", "nope"]))


SMALL = ["--n_" + s + "=" + ("2" if s != "knowledge" else "4") for s in SUITES]


def test_end_to_end_tiny(tiny_ckpt, tmp_path, capsys):
    from minillm.cli import main as cli_main

    with pytest.raises(SystemExit) as e:
        cli_main(["bench", "--checkpoint", tiny_ckpt, "--no_ollama", "--out_dir", str(tmp_path),
                  "--no-progress", "--max_new_tokens", "6", *SMALL])  # fmt: skip
    assert e.value.code == 0
    table = capsys.readouterr().out
    assert "overall" in table and "minillm:tiny" in table and "knowledge/" in table
    report = json.loads((tmp_path / "bench.json").read_text())
    run = report["runs"]["minillm:tiny"]
    assert run["summary"]["overall"]["n"] == 2 * (2 * 6 + 4)
    assert set(run["summary"]["suite"]) == set(SUITES)
    assert all(r["tokens"] > 0 for r in run["records"])
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def served():
    from conftest import make_tiny, served_app

    from minillm.serve import App

    model, tok = make_tiny(seed=0)
    with served_app(App(model, tok, "tiny:latest", log=False, max_num_predict=64)) as url:
        yield url, model, tok


def test_ollama_and_openai_vs_minillm_serve(served, tiny_ckpt):
    url, _, _ = served
    items = build(1, "en", {s: 1 for s in SUITES})
    for it in items:
        it["max_new_tokens"] = 5
    local, _ = run_items(MLXRunner(tiny_ckpt), items)
    for runner in (OllamaRunner(url, "tiny", parallel=3), OpenAIRunner(url + "/v1", "tiny", parallel=3)):  # fmt: skip
        outs, _ = run_items(runner, items)
        assert not any(o.get("error") for o in outs), outs
        assert all(o["tokens"] == 5 and o["attempts"] == 1 for o in outs)
        assert [o["text"] for o in outs] == [o["text"] for o in local]  # same greedy decode
    OllamaRunner(url, "tiny").check()
    with pytest.raises(ValueError, match="no_ollama"):
        OllamaRunner("http://127.0.0.1:9", "x", timeout=2).check()


class Flaky(BaseHTTPRequestHandler):
    """503 on each request's first attempt; answers "B" (content) with thinking "A"."""

    seen: Counter = Counter()

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = (self.path, body["messages"][-1]["content"])
        Flaky.seen[key] += 1
        Flaky.bodies.append(body)
        if Flaky.seen[key] == 1:
            self.send_response(503)
            self.end_headers()
            return
        if self.path == "/api/chat":
            out = {"message": {"role": "assistant", "content": "B", "thinking": "A"},
                   "eval_count": 1, "eval_duration": 1_000_000, "done": True}  # fmt: skip
        else:
            out = {"choices": [{"message": {"role": "assistant", "content": "<think>A</think>B"}}],
                   "usage": {"completion_tokens": 1}}  # fmt: skip
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_retry_after_503_and_thinking_not_scored():
    Flaky.bodies = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    items = [dict(prompt=f"q{i}", system="s", max_new_tokens=16, answer_type="choice",
                  answer="B", options=OPTS) for i in range(4)]  # fmt: skip
    try:
        for runner in (
            OllamaRunner(url, "m", think=True, think_budget=100, backoff=0.01, parallel=2),
            OpenAIRunner(url, "m", backoff=0.01, api_key="k"),
        ):
            outs, _ = run_items(runner, items)
            assert [o["attempts"] for o in outs] == [2] * 4
            assert all(
                score(it, o["text"]) == (True, True) for it, o in zip(items, outs, strict=True)
            )
        ollama = Flaky.bodies[1]
        assert ollama["think"] is True and ollama["stream"] is False
        assert ollama["options"] == dict(temperature=0, top_p=1, num_predict=116, seed=1337, num_ctx=4096)  # fmt: skip
        outs, _ = run_items(OllamaRunner(url, "m", retries=0), items[:1] + [dict(items[0], prompt="new")])  # fmt: skip
        assert "503" in outs[1]["error"] and outs[1]["text"] == ""
    finally:
        srv.shutdown()
        srv.server_close()
    dead, _ = run_items(OllamaRunner("http://127.0.0.1:9", "m", retries=1, backoff=0), items[:1])
    assert "ConnectError" in dead[0]["error"] and dead[0]["attempts"] == 2


def test_gold_answers_score_correct():
    for it in build(2, "both", {s: 40 for s in SUITES}):
        a, kind = it["answer"], it["answer_type"]
        text = (
            ", ".join(map(str, a)) if kind == "int_list" else json.dumps(a) if kind == "json" else a
        )
        assert score(it, text) == (True, True), (it, text)
