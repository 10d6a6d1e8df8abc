"""Answer extraction and scoring; every scorer returns `(valid, correct)`."""

from __future__ import annotations

import json
import re
from typing import Any

LETTERS = "ABCD"
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S)
_FENCE = re.compile(r"```[a-zA-Z]*\n?(.*?)```", re.S)
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
_SEP = re.compile(r"[\s,，、;；\[\]]*")
_INT = re.compile(r"(?<![\w.])-?\d+(?!\w|\.\d)")


def strip_thinking(text: str) -> str:
    """Drop `<think>...</think>` blocks (an unclosed one runs to the end) and any text before
    a lone `</think>` (templates that open the block in the prompt)."""
    text = _THINK.sub("", text or "")
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    return text.strip()


def _clean(text: str) -> str:
    return strip_thinking(text).replace("**", "").replace("−", "-").strip()


def _norm(s: str) -> str:
    return re.sub(r"[\s\"'`“”‘’。.,，!！]+", "", s).lower()


def extract_choice(text: str, options: list[str] | None = None) -> str | None:
    """The chosen letter A-D, or None when there is no clear single answer.

    A letter counts when it is explicitly marked ("Answer: B", "答案是B", "选B") or stands alone
    at the start of a line ("B", "B.", "(B)", "B) 42"); an uppercase A-D followed by a word, as
    in "A cat is...", never does, nor do lowercase letters outside a marker. Otherwise the
    output must match exactly one option's text or number.
    """
    t = re.sub(r"\\boxed\{\s*([A-Da-d])\s*\}", r"answer: \1", _clean(text))
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


def final_section(text: str) -> str:
    """The last line that contains a digit, or the run of such lines ending the output."""
    t = _clean(text)
    fence = _FENCE.findall(t)
    if fence:
        t = fence[-1]
    lines = [ln for ln in t.splitlines() if ln.strip()]
    block: list[str] = []
    for ln in reversed(lines):
        if not re.search(r"\d", ln):
            if block:
                break
            continue
        block.insert(0, ln)
        if re.search(r"\d\D+\d", ln):  # a whole list on one line: this is the answer line
            break
    return "\n".join(re.split(r"[:：]", ln)[-1] for ln in block)


def extract_ints(text: str) -> list[int]:
    """The integers of the answer: the last run of 2+ list-separated integers in the final
    section ("(3 numbers) is -5, 1, 3" -> [-5, 1, 3]), else its last integer."""
    t = final_section(text)
    runs: list[list[int]] = []
    end = None
    for m in _INT.finditer(t):
        if end is not None and _SEP.fullmatch(t[end : m.start()]):
            runs[-1].append(int(m.group()))
        else:
            runs.append([int(m.group())])
        end = m.end()
    long = [r for r in runs if len(r) > 1]
    return long[-1] if long else runs[-1][-1:] if runs else []


def score_int_list(text: str, answer: list[int]) -> tuple[bool, bool]:
    got = extract_ints(text)
    return bool(got), got == list(answer)


def extract_json(text: str) -> dict | None:
    """The last JSON object in the output (fences and surrounding prose are skipped)."""
    t = _clean(text)
    fence = _FENCE.findall(t)
    if fence:
        t = fence[-1]
    dec = json.JSONDecoder()
    found = None
    for m in re.finditer(r"\{", t):
        try:
            obj, _ = dec.raw_decode(t, m.start())
        except ValueError:
            continue
        if isinstance(obj, dict):
            found = obj
    return found


def _same(a: Any, b: Any) -> bool:
    return type(a) is not bool and type(b) is not bool and isinstance(a, int | float) and a == b


def score_json(text: str, answer: dict) -> tuple[bool, bool]:
    got = extract_json(text)
    if got is None:
        return False, False
    return True, all(k in got and _same(got[k], v) for k, v in answer.items())


def score_string(text: str, answer: str) -> tuple[bool, bool]:
    t = _clean(text)
    fence = _FENCE.findall(t)
    if fence:
        t = fence[-1]
    t = t.strip().strip("`\"'“”‘’").strip()
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
