"""Answer extraction and scoring; every scorer returns `(valid, correct)`."""

from __future__ import annotations

import re

from minillm.eval.verify import (  # noqa: F401  (strip_thinking, extract_*: old import path)
    answer_string,
    clean,
    extract_ints,
    extract_json,
    final_section,
    same_number,
    strip_thinking,
)

LETTERS = "ABCD"
_L = r"[\(（\[【]?\s*([A-Da-d])(?![A-Za-z0-9])\s*[\)）\]】]?"
_MARKED = re.compile(
    r"(?:answer|option|choice|choose|pick|select)\s*(?:is|should be|would be)?\s*[:：]?\s*(?:option\s*)?" + _L
    + r"|(?:答案|选项|答)\s*(?:是|为|应为|应该是)?\s*[:：]?\s*(?:选项)?\s*" + _L
    + r"|选(?:择)?\s*" + _L,
    re.I,
)  # fmt: skip
_BARE = re.compile(r"(?m)^\s*[\(（\[【]?\s*([A-D])(?![A-Za-z0-9])\s*[\)）\]】]?")
_LOWER_END = re.compile(r"\s*(?:$|[.。,，;；!！)）\n])")
_HEDGE = re.compile(r"\s*(?:or|and|或|和|/|、|,|，)\s*[\(（]?[A-D](?![A-Za-z0-9])", re.I)


def _norm(s: str) -> str:
    return re.sub(r"[\s\"'`“”‘’。.,，!！]+", "", s).lower()


def extract_choice(text: str, options: list[str] | None = None) -> str | None:
    """The chosen letter A-D, or None when there is no clear single answer.

    A letter counts when it is explicitly marked ("Answer: B", "答案是B", "选B") or stands alone
    at the start of a line ("B", "B.", "(B)", "B) 42"); an uppercase A-D followed by a word, as
    in "A cat is...", never does, nor do lowercase letters outside a marker. Otherwise the
    output must match exactly one option's text or number.
    """
    t = re.sub(r"\\boxed\{\s*([A-Da-d])\s*\}", r"answer: \1", clean(text))
    marked = []
    for m in _MARKED.finditer(t):
        letter = next(g for g in m.groups() if g)
        if letter.islower() and not _LOWER_END.match(t, m.end()):
            continue  # "the answer is a cat"
        marked.append(m)
    bare = [
        m
        for m in _BARE.finditer(t)
        # "A cat is ...": a capital followed by a lowercase word is prose, not a choice
        if not (m.group(0).rstrip().endswith(m.group(1)) and re.match(r"\s*[a-z]", t[m.end() :]))
    ]
    if not marked and len({m.group(1) for m in bare}) > 1:
        return None  # several lines start with different letters: the options echoed back
    for m in marked[-1:] or bare[:1]:
        if _HEDGE.match(t, m.end()):
            return None  # "A or B"
        return next(g for g in m.groups() if g).upper()
    if not options:
        return None
    n = _norm(t)
    exact = [L for L, o in zip(LETTERS, options, strict=False) if _norm(o) == n]
    if len(exact) == 1:
        return exact[0]
    hits = []
    for L, o in zip(LETTERS, options, strict=False):
        pat = (
            rf"(?<![\w.-]){re.escape(o)}(?![\w]|\.\d)"
            if re.fullmatch(r"-?[\d.,]+", o)
            else re.escape(o)
        )
        if re.search(pat, t, re.I):
            hits.append(L)
    return hits[0] if len(hits) == 1 else None


def score_choice(text: str, answer: str, options: list[str] | None = None) -> tuple[bool, bool]:
    got = extract_choice(text, options)
    return got is not None, got == answer


def score_int_list(text: str, answer: list[int]) -> tuple[bool, bool]:
    got = extract_ints(text)
    return bool(got), got == list(answer)


def score_json(text: str, answer: dict) -> tuple[bool, bool]:
    got = extract_json(text)
    if got is None:
        return False, False
    return True, all(k in got and same_number(got[k], v) for k, v in answer.items())


def score_string(text: str, answer: str) -> tuple[bool, bool]:
    t = answer_string(text)
    return bool(t), t == answer


def score(item: dict, text: str) -> tuple[bool, bool]:
    """Score `text` against a bench item by its answer_type."""
    kind = item["answer_type"]
    if kind == "choice":
        return score_choice(text, item["answer"], item.get("options"))
    if kind == "int_list":
        return score_int_list(text, item["answer"])
    if kind == "json":
        return score_json(text, item["answer"])
    if kind == "string":
        return score_string(text, item["answer"])
    raise ValueError(f"unknown answer_type {kind!r}")
