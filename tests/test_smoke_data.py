"""Embedded smoke-test data: shipped files match the generator, records validate, answers are
right, both languages are present, and the batch iterator reads the files."""

from __future__ import annotations

import json
import re

import pytest

from minillm.data import smoke
from minillm.data.batching import Batches
from minillm.data.jsonl import validate

CJK = re.compile(r"[\u4e00-\u9fff]")
OPS = [
    ("乘以", "*"),
    ("×", "*"),
    ("*", "*"),
    ("times", "*"),
    ("Multiply", "*"),
    ("减", "-"),
    ("-", "-"),
    ("minus", "-"),
    ("Subtract", "-"),
    ("加", "+"),
    ("+", "+"),
    ("plus", "+"),
    ("Add", "+"),
]


@pytest.fixture(scope="module")
def tok():
    from minillm.tokenizer import load_tokenizer

    return load_tokenizer()


def _load(task: str) -> list[dict]:
    path = smoke.SMOKE_DIR / smoke.FILES[task]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _qa(rec: dict) -> tuple[str, str]:
    turns = rec["conversations"]
    user = [t["content"] for t in turns if t["role"] == "user"]
    answer = [t["content"] for t in turns if t["role"] == "assistant"]
    assert len(user) == len(answer) == 1
    return user[0], answer[0]


def _arith(q: str) -> int | None:
    nums = [int(x) for x in re.findall(r"\d+", q)]
    op = next((sym for word, sym in OPS if word in q), None)
    if op is None or len(nums) != 2:
        return None
    a, b = nums if not q.startswith("Subtract") else nums[::-1]
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def test_regeneration_is_byte_identical(tmp_path):
    paths = smoke.write_smoke_data(tmp_path, seed=0)
    assert set(paths) == {"pretrain", "sft"}
    for task, path in paths.items():
        shipped = smoke.SMOKE_DIR / smoke.FILES[task]
        assert path.read_bytes() == shipped.read_bytes(), (
            f"{shipped} is out of date: python -m minillm.data.smoke --out_dir minillm/assets/data"
        )
        assert shipped.stat().st_size <= 1_500_000


def test_records_validate(tok):
    for task in ("pretrain", "sft"):
        recs = _load(task)
        assert len(recs) >= 1000
        for obj in recs:
            validate(obj, task, tok.vocab_size)
    assert all(set(r) == {"text"} for r in _load("pretrain"))


def test_sft_categories_answers_and_languages():
    bank = smoke.fact_bank()
    assert len({f.zh_a for f in bank}) >= 60 and len({f.en_a for f in bank}) >= 60
    facts = {q: f.zh_a for f in bank for q in f.zh_q} | {q: f.en_a for f in bank for q in f.en_q}
    ident = set(smoke.identity_questions("zh")) | set(smoke.identity_questions("en"))
    assert {"请介绍一下自己。", "Who are you?", "你是谁？", "What is your name?"} <= ident
    counts: dict[tuple[str, str], int] = {}
    asked_ident, asked_facts = set(), set()
    for rec in _load("sft"):
        q, a = _qa(rec)
        lang = "zh" if CJK.search(q + a) else "en"
        if q in ident:
            kind = "identity"
            assert "MiniLLM" in a
            asked_ident.add(q)
        elif q in facts:
            kind = "fact"
            assert a == facts[q]
            asked_facts.add(facts[q])
        else:
            kind, r = "arithmetic", _arith(q)
            assert r is not None, f"unclassified question {q!r}"
            assert r >= 0 and int(re.findall(r"\d+", a)[-1]) == r, (q, a)
        counts[kind, lang] = counts.get((kind, lang), 0) + 1
    assert {"请介绍一下自己。", "Who are you?"} <= asked_ident
    assert len(asked_facts) >= 100  # nearly every fact, in both languages, is asked
    for kind in ("identity", "arithmetic", "fact"):
        for lang in ("zh", "en"):
            assert counts.get((kind, lang), 0) >= 100, (kind, lang, counts)


def test_pretrain_languages_and_topics():
    texts = [r["text"] for r in _load("pretrain")]
    zh = sum(bool(CJK.search(t)) for t in texts)
    assert zh >= len(texts) // 3 and len(texts) - zh >= len(texts) // 3
    assert sum("MiniLLM" in t for t in texts) >= 100
    sums = re.compile(
        r"(\d+) ?(\+|-|×|加|减|乘以|plus|minus|times) ?(\d+) ?(?:=|等于|equals) ?(\d+)"
    )
    n = 0
    for a, op, b, r in (m.groups() for t in texts for m in sums.finditer(t)):
        sym = dict(OPS)[op]
        assert int(r) == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[sym]
        n += 1
    assert n >= 1000


def test_generators_are_deterministic():
    assert list(smoke.sft_records(seed=1, n=50)) == list(smoke.sft_records(seed=1, n=50))
    assert list(smoke.sft_records(seed=1, n=50)) != list(smoke.sft_records(seed=2, n=50))
    assert list(smoke.pretrain_records(seed=3, n=20)) == list(smoke.pretrain_records(seed=3, n=20))


@pytest.mark.parametrize("task", ["pretrain", "sft"])
def test_batches_read_shipped_files(tok, task):
    path = smoke.SMOKE_DIR / smoke.FILES[task]
    batches = Batches(str(path), tok, task=task, seq_len=128, batch_size=8)
    n = 0
    for b in batches:
        assert b.inputs.shape[0] == 8 and b.inputs.shape[1] <= 128
        n += 1
    assert n > 0 and n == batches.num_batches()
    assert not batches.skipped and batches.dropped == 0
