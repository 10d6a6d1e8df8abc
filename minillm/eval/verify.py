"""Reading a model's answer: the one rule for `<think>` blocks, and the extraction and
comparison of integers, JSON objects and strings that the task verifier (minillm/data/tasks.py),
the teacher client, the GSM8K scorer and the bench scorers share."""

from __future__ import annotations

import json
import re
from typing import Any

THINK_RE = re.compile(r"<think>(.*?)(?:</think>|$)", re.S | re.I)
CLOSE_RE = re.compile(r"</think>", re.I)
LEAK_RE = re.compile(r"<\s*/?\s*think", re.I)  # `<think `, `<Thinking>`, `</ think>`, ...
FENCE = re.compile(r"```[a-zA-Z]*\n?(.*?)```", re.S)
_INT = re.compile(r"(?<![\w.])-?\d+(?!\w|\.\d)")
_SEP = re.compile(r"[\s,，、;；\[\]]*")


def split_think(content: str, thinking: str = "") -> tuple[str, str]:
    """`(answer, thinking)`: every `<think>…</think>` block of `content`, wherever it is, an
    unclosed `<think>` (to the end) and the text before a lone `</think>` (templates that open
    the block in the prompt) move to `thinking`; what is left is the answer that gets verified
    and stored. Text that still names a think tag after that (`<think ` or `<thinking>`) is
    left as is for `think_leak` to reject."""
    inner: list[str] = [thinking.strip()] if thinking.strip() else []

    def take(m: re.Match) -> str:
        inner.append(m.group(1).strip())
        return ""

    content = THINK_RE.sub(take, content or "")
    *heads, content = CLOSE_RE.split(content)
    inner += [h.strip() for h in heads]
    return content.strip(), "\n".join(t for t in inner if t)


def strip_thinking(text: str) -> str:
    """The answer of `text` without its thinking (`split_think`)."""
    return split_think(text)[0]


def think_leak(content: str) -> bool:
    """Whether `content` still carries think-tag text (after `split_think`), in any case or
    spacing."""
    return LEAK_RE.search(content) is not None


def clean(text: str) -> str:
    """The answer without thinking, bold markers and the Unicode minus."""
    return strip_thinking(text).replace("**", "").replace("−", "-").strip()


def final_section(text: str) -> str:
    """The last line that contains a digit, or the run of such lines ending the output."""
    t = clean(text)
    fence = FENCE.findall(t)
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


def extract_json(text: str) -> dict | None:
    """The last JSON object in the output (fences and surrounding prose are skipped)."""
    t = clean(text)
    fence = FENCE.findall(t)
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


def same_number(a: Any, b: Any) -> bool:
    """Equal numbers, where a bool is not a number (JSON `true` is not 1)."""
    return type(a) is not bool and type(b) is not bool and isinstance(a, int | float) and a == b


def answer_string(text: str) -> str:
    """The answer as one string: the last fenced block if any, quotes and backticks dropped."""
    t = clean(text)
    fence = FENCE.findall(t)
    if fence:
        t = fence[-1]
    return t.strip().strip("`\"'“”‘’").strip()
