"""Seeded synthetic distillation tasks (zh + en), each with a machine-checkable verifier."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ..eval.verify import answer_string, clean, extract_ints, extract_json, same_number
from .tasks_fmt import gen_copy, gen_json, gen_knowledge, gen_sort
from .tasks_reason import gen_logic, gen_math, gen_multihop

GENERATORS: dict[str, Callable] = {
    "math": gen_math,
    "logic": gen_logic,
    "multihop": gen_multihop,
    "knowledge": gen_knowledge,
    "sort": gen_sort,
    "json": gen_json,
    "copy": gen_copy,
}
CATEGORIES = tuple(GENERATORS)

_FORMAT = {
    "sort": ("the sorted numbers, comma-separated", "用逗号分隔的排序结果"),
    "json": ("the JSON object", "JSON 对象"),
    "copy": ("the exact text", "原样文本"),
}


def system_prompt(category: str, lang: str) -> str:
    en, zh = _FORMAT.get(category, ("your final answer", "最终答案"))
    if lang == "en":
        return f"You are a careful assistant. Reason briefly, then end with a final line 'Answer: <{en}>'."
    return f"你是一个严谨的助手。请简要推理，最后单独一行写“答案：<{zh}>”。"


@dataclass
class Task:
    """One generated task; `answer` is the canonical ground truth and `meta` its structured form."""

    category: str
    subtype: str
    lang: str
    prompt: str
    system: str
    answer: str
    meta: dict = field(default_factory=dict)
    id: str = ""

    def __post_init__(self):
        if not self.id:
            self.id = hashlib.sha1(f"{self.system}\n{self.prompt}".encode()).hexdigest()

    def to_dict(self) -> dict:
        return asdict(self)


def make_task(category: str, rng: random.Random, lang: str) -> Task:
    """Generate one task of `category` in `lang` ("en" | "zh") from `rng`."""
    subtype, prompt, answer, work, meta = GENERATORS[category](rng, lang)
    meta = {**meta, "work": work}
    return Task(category, subtype, lang, prompt, system_prompt(category, lang), answer, meta)


_ANSWER_LINE = re.compile(r"(?:答案|(?<![A-Za-z])answer)\s*(?:是|为|is)?\s*[:：]\s*(.*\S)", re.I)
_NUM = re.compile(r"-?\d+(?:\.\d+)?")
_NUMERIC = re.compile(r"-?\d+(?:\.\d+)?")
_YESNO = {"yes": "yes", "no": "no", "是": "是", "是的": "是", "否": "否", "不是": "否", "不": "否"}


def extract_answer(text: str) -> str | None:
    """The final answer: the last "Answer:"/"答案：" line, else `#### x`, else the last `\\boxed{x}`."""
    t = clean(text)
    hits = _ANSWER_LINE.findall(t)
    if hits:
        return hits[-1].strip()
    hits = re.findall(r"####\s*(.*\S)", t)
    if hits:
        return hits[-1].strip()
    hits = re.findall(r"\\boxed\{([^{}]*)\}", t)
    return hits[-1].strip() if hits else None


def _tokens(s: str) -> list[str]:
    s = s.strip().strip("$`\"'“”‘’").lower()
    return [w for w in re.split(r"[\s,，、>＞;；。!！\"'“”《》]+|\.(?!\d)", s) if w and w != "the"]


def _match(got: str, answer: str) -> bool:
    if _NUMERIC.fullmatch(answer):
        nums = _NUM.findall(got.replace(",", ""))
        return bool(nums) and all(float(n) == float(answer) for n in nums)
    g, a = _tokens(got), _tokens(answer)
    if len(a) == 1 and a[0] in _YESNO:
        return len(g) == 1 and _YESNO.get(g[0]) == _YESNO[a[0]]
    return g == a


def verify(task: Task, text: str) -> bool:
    """Whether reply `text` (thinking blocks ignored) states the task's ground-truth answer."""
    if task.category == "json":
        got = extract_json(text)
        want = task.meta["object"]
        if got is None or set(got) != set(want):
            return False
        return all(
            same_number(got[k], v) if not isinstance(v, str) else got[k] == v
            for k, v in want.items()
        )
    line = extract_answer(text)
    if task.category == "sort":
        got = extract_ints(line) if line is not None else extract_ints(text)
        return got == task.meta["output"]
    if task.category == "copy":
        if line is None:
            return answer_string(text) == task.answer
        return line.strip("`\"'“”‘’") == task.answer
    return line is not None and _match(line, task.answer)


def oracle_reply(task: Task) -> str:
    """A correct worked reply in the task's language, accepted by `verify`."""
    work = str(task.meta.get("work", "")).rstrip("。.")
    if task.lang == "en":
        return f"Let me work it out: {work}.\nAnswer: {task.answer}"
    return f"推理：{work}。\n答案：{task.answer}"


def _seed_rng(*parts) -> random.Random:
    h = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(h[:8], "little"))


class TaskSource:
    """Deterministic task stream: `draw(index)` depends only on `(seed, index)`.

    `weights` maps category -> relative weight (default: all categories equally);
    `lang` is "en", "zh" or "both".
    """

    def __init__(self, seed: int = 0, weights: dict[str, float] | None = None, lang: str = "both"):
        weights = weights or {c: 1.0 for c in CATEGORIES}
        unknown = set(weights) - set(CATEGORIES)
        if unknown:
            raise ValueError(
                f"unknown task categories {sorted(unknown)}; known: {list(CATEGORIES)}"
            )
        if lang not in ("en", "zh", "both"):
            raise ValueError(f"lang must be 'en', 'zh' or 'both', not {lang!r}")
        self.seed, self.lang = seed, lang
        self._cats = [c for c, w in weights.items() if w > 0]
        self._weights = [weights[c] for c in self._cats]
        if not self._cats:
            raise ValueError("all task weights are zero")

    def categories(self) -> list[str]:
        """The categories this source draws from."""
        return list(self._cats)

    def draw(self, index: int) -> Task:
        """The task at `index`."""
        rng = _seed_rng("minillm-tasks", self.seed, index)
        cat = rng.choices(self._cats, self._weights)[0]
        lang = rng.choice(["en", "zh"]) if self.lang == "both" else self.lang
        return make_task(cat, rng, lang)

    def __iter__(self):
        i = 0
        while True:
            yield self.draw(i)
            i += 1


def dumps(task: Task) -> str:
    """The task as one JSON line."""
    return json.dumps(task.to_dict(), ensure_ascii=False)


def task_records(spec: str, n: int, split: str = "train", lang: str = "both") -> list[dict]:
    """`n` RL records `{"question", "answer", "target", "system"}` from the task generators:
    `spec` is `tasks:CATEGORY[:SUBTYPE_PREFIX]` (e.g. `tasks:math:word`, the arithmetic word
    problems). Only tasks with a numeric answer qualify (the RL reward compares numbers). The
    `train` and `test` splits are disjoint by prompt hash (one task in ten is `test`), so
    held-out problems are never trained on."""
    head, _, rest = spec.partition(":")
    category, _, prefix = rest.partition(":")
    if head != "tasks" or category not in GENERATORS:
        raise ValueError(
            f"task spec {spec!r}: use tasks:CATEGORY[:SUBTYPE_PREFIX] with a category of "
            f"{', '.join(CATEGORIES)} (e.g. tasks:math:word)"
        )
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    src, out, i = TaskSource(7, {category: 1.0}, lang), [], 0
    while len(out) < n:
        if i > 200 * n + 10_000:
            raise ValueError(
                f"task spec {spec!r}: no numeric-answer tasks of subtype {prefix!r}* found"
            )
        t = src.draw(i)
        i += 1
        if not t.subtype.startswith(prefix) or not _NUMERIC.fullmatch(t.answer):
            continue
        if (int(t.id[:8], 16) % 10 == 0) != (split == "test"):
            continue
        out.append({"question": t.prompt, "answer": oracle_reply(t), "target": t.answer,
                    "system": t.system})  # fmt: skip
    return out
