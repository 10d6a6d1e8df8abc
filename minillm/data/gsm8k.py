"""GSM8K grade-school math: loading, final-answer extraction, rewards and a tiny synthetic set.

Records are `{"question", "answer", "target"}`: `answer` is the full solution text (GSM8K style,
with `<<a+b=c>>` calculator annotations and a final `#### n` line) and `target` the canonical
final number ("18", "-3", "2.5"; thousands separators removed, trailing zeros dropped).

`load_gsm8k("gsm8k:train")` downloads `openai/gsm8k` (config `main`) parquet files from the
Hub through `hub.hub_download`; local `.jsonl` / `.parquet` files with `question` / `answer`
fields work too. A bad record raises `ValueError("file:line: reason; fix")`, or with
`skip_bad=True` is counted per reason in the `skipped` dict the caller passes in.

Pure Python + pyarrow: no mlx, no ray.
"""

from __future__ import annotations

import json
import math
import random
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

from minillm.eval.verify import strip_thinking

GSM8K_REPO = "openai/gsm8k"
SPLIT_FILES = {
    "train": "main/train-00000-of-00001.parquet",
    "test": "main/test-00000-of-00001.parquet",
}
FIX = "fix the record or pass skip_bad=True"

SYSTEM_PROMPTS = {
    "en": (
        "You are a careful math assistant. Reason step by step, then end with a final line "
        "'#### <number>' giving only the numeric answer."
    ),
    "zh": "你是一个严谨的数学助手。请逐步推理，最后单独一行写“#### <数字>”，只给出数值答案。",
}


class GSM8KFileNotFound(FileNotFoundError, ValueError):
    """A GSM8K source file that does not exist (both a FileNotFoundError and a ValueError)."""


# ---------------------------------------------------------------------------------------------
# Final-answer extraction
# ---------------------------------------------------------------------------------------------

# A number: optional sign (not a binary minus such as "45-5"), then digits with proper
# thousands groups ("1,234", not "1,2") or plain digits, then an optional decimal part.
_NUM = re.compile(
    r"(?<![\w)\].])-?(?:\d{1,3}(?:,\d{3})+(?![\d,]\d)|\d+)(?:\.\d+)?(?!\.?\d)"
    r"|(?<![\w)\].])-?\.\d+"
)
_HASH = re.compile(r"####")
_ANSWER_STRICT = re.compile(r"(?:答案|\banswer)\s*[:：]", re.I)
_ANSWER_LOOSE = re.compile(
    r"(?:答案|\banswer)\s*(?:[:：]|是|为|\bis\b)|(?:最终答案|final answer)", re.I
)
_ANNOT = re.compile(r"<<[^<>]*>>")


def _clean(text: str) -> str:
    t = strip_thinking(text)
    return t.replace("**", "").replace("−", "-").replace("\\$", "$").replace("\\%", "%")


def canonical_number(s: str) -> str | None:
    """`"1,234.50"` -> `"1234.5"`, `"3.0"` -> `"3"`, `"-0"` -> `"0"`; None if not a number."""
    s = s.strip().replace(",", "").replace(" ", "").lstrip("$").rstrip("%")
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def _numbers(text: str) -> list[str]:
    return [c for m in _NUM.finditer(text) if (c := canonical_number(m.group())) is not None]


def _segment_number(seg: str) -> str | None:
    """The number a marker segment gives: after its last `=` if any, else its first number."""
    if "=" in seg:
        nums = _numbers(seg.rsplit("=", 1)[1])
        if nums:
            return nums[0]
    nums = _numbers(seg)
    return nums[0] if nums else None


def _boxed(text: str) -> list[str]:
    """Contents of every `\\boxed{...}` (nested braces allowed), in order."""
    out = []
    for m in re.finditer(r"\\boxed\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def _marked(text: str, strict: bool) -> str | None:
    """The number behind an explicit final-answer marker: `####` > `\\boxed{}` > answer line."""
    parts = _HASH.split(text)
    if len(parts) > 1:
        for seg in reversed(parts[1:]):
            if (n := _segment_number(seg.split("\n", 1)[0])) is not None:
                return n
    for seg in reversed(_boxed(text)):
        if (n := _segment_number(seg)) is not None:
            return n
    pattern = _ANSWER_STRICT if strict else _ANSWER_LOOSE
    for m in reversed(list(pattern.finditer(text))):
        line = text[m.end() :].split("\n", 1)[0]
        if (n := _segment_number(line)) is not None:
            return n
    return None


def extract_answer(text: str) -> str | None:
    """The final numeric answer of `text` as a canonical string, or None when it has no number.

    Priority: the last `#### n` line > the last `\\boxed{n}` > the last `答案：n` / `Answer: n`
    (also "the answer is n") line > the last number anywhere. `<think>` blocks are ignored;
    `$`, `%`, units and thousands separators around the number are tolerated.
    """
    t = _clean(text)
    if (n := _marked(t, strict=False)) is not None:
        return n
    nums = _numbers(t)
    return nums[-1] if nums else None


def has_format(text: str) -> bool:
    """Whether the reply (outside `<think>`) gives its answer after an explicit marker:
    `#### n`, `\\boxed{n}`, `答案：n` or `Answer: n`."""
    return _marked(_clean(text), strict=True) is not None


def same_number(a: str | None, b: str | None, rel_tol: float = 1e-6) -> bool:
    """Numeric equality of two number strings ("1,234.0" == "1234") within `rel_tol`."""
    if a is None or b is None:
        return False
    ca, cb = canonical_number(str(a)), canonical_number(str(b))
    if ca is None or cb is None:
        return str(a).strip() == str(b).strip()
    return math.isclose(float(ca), float(cb), rel_tol=rel_tol, abs_tol=1e-9)


def reward(text: str, target: str, format_weight: float = 0.0) -> float:
    """1.0 when the extracted answer equals `target` (else 0.0), plus `format_weight` when the
    reply has an explicit final-answer marker (`has_format`)."""
    r = 1.0 if same_number(extract_answer(text), target) else 0.0
    if format_weight and has_format(text):
        r += format_weight
    return r


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, kind: str, detail: str = ""):
        super().__init__(kind)
        self.kind, self.detail = kind, detail


def _record(obj) -> dict:
    if not isinstance(obj, dict):
        raise _Bad("not an object", "each record must be a JSON object")
    missing = [k for k in ("question", "answer") if not isinstance(obj.get(k), str)]
    if missing or not obj["question"].strip() or not obj["answer"].strip():
        what = " and ".join(f"'{k}'" for k in missing) or "'question'/'answer'"
        raise _Bad("missing question/answer", f"{what} must be a non-empty string")
    target = extract_answer(obj["answer"])
    if target is None:
        raise _Bad("no final number", "the answer must end in a line '#### <number>'")
    return {"question": obj["question"].strip(), "answer": obj["answer"].strip(), "target": target}


def _iter_jsonl(path: Path):
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            where = f"{path}:{i}"
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                yield where, _Bad("bad json", str(e).splitlines()[0])
                continue
            yield where, obj


def _iter_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a non-parquet file
        reason = str(e).strip().split("\n", 1)[0]
        raise ValueError(
            f"{path}: not a readable parquet file ({reason}); pass a GSM8K .parquet or .jsonl"
        ) from None
    names = pf.schema_arrow.names
    missing = [k for k in ("question", "answer") if k not in names]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(names)}); "
            "pass a file with 'question' and 'answer' columns"
        )
    row = 0
    for batch in pf.iter_batches(columns=["question", "answer"], batch_size=4096):
        for obj in batch.to_pylist():
            row += 1
            yield f"{path}:row {row}", obj


def _local_records(path, skip_bad: bool, skipped: dict, limit: int | None, out: list) -> None:
    p = Path(path).expanduser()
    if not p.is_file():
        raise GSM8KFileNotFound(
            f"{p}: no such file; pass gsm8k:train, gsm8k:test or an existing .jsonl/.parquet file"
        )
    if p.suffix == ".parquet":
        it = _iter_parquet(p)
    elif p.suffix in (".jsonl", ".json"):
        it = _iter_jsonl(p)
    else:
        raise ValueError(f"{p}: unknown file type {p.suffix!r}; pass a .jsonl or .parquet file")
    for where, obj in it:
        if limit is not None and len(out) >= limit:
            return
        try:
            if isinstance(obj, _Bad):
                raise obj
            out.append(_record(obj))
        except _Bad as e:
            if not skip_bad:
                reason = f"{e.kind}: {e.detail}" if e.detail else e.kind
                raise ValueError(f"{where}: {reason}; {FIX}") from None
            skipped[e.kind] = skipped.get(e.kind, 0) + 1


def load_gsm8k(
    spec: str,
    *,
    data_dir: str = "dataset/gsm8k",
    hf_endpoint: str | None = None,
    max_download_mb: float = 200,
    progress: bool = True,
    limit: int | None = None,
    skip_bad: bool = False,
    skipped: dict | None = None,
    force_download: bool = False,
    repo_id: str = GSM8K_REPO,
) -> list[dict]:
    """Load GSM8K records `{"question", "answer", "target"}` from a comma-separated spec.

    Entries: `gsm8k:train` / `gsm8k:test` (`gsm8k` alone is train) download the `main` config
    parquet of `repo_id` into `data_dir` (reused when present; `hf_endpoint` / `HF_ENDPOINT`
    picks a mirror, `max_download_mb` caps the size); anything else is a local `.jsonl` or
    `.parquet` file. `limit` caps the total number of records returned.

    Bad records raise `ValueError("file:line: reason; fix")` (`file:row N` for parquet). With
    `skip_bad=True` they are skipped and counted per reason into `skipped` (a dict the caller
    passes and reads afterwards, e.g. `{"bad json": 2, "no final number": 1}`). A missing file
    always raises `GSM8KFileNotFound` (a FileNotFoundError and a ValueError).
    """
    from .hub import DownloadTooLarge, hub_download

    if skipped is None:
        skipped = {}
    out: list[dict] = []
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise ValueError(f"empty GSM8K spec {spec!r}; pass gsm8k:train, gsm8k:test or a file")
    for item in items:
        if limit is not None and len(out) >= limit:
            break
        head, _, split = item.partition(":")
        if head == "gsm8k":
            split = split.strip() or "train"
            if split not in SPLIT_FILES:
                raise ValueError(
                    f"GSM8K spec {item!r}: unknown split {split!r}; use gsm8k:train or gsm8k:test"
                )
            try:
                path = hub_download(
                    repo_id,
                    SPLIT_FILES[split],
                    repo_type="dataset",
                    data_dir=data_dir,
                    endpoint=hf_endpoint,
                    max_mb=max_download_mb,
                    force=force_download,
                    progress=progress,
                )
            except (FileNotFoundError, ValueError) as e:
                cls = next(
                    c for c in (DownloadTooLarge, FileNotFoundError, ValueError) if isinstance(e, c)
                )
                raise cls(f"GSM8K spec {item!r}: {e}") from None
        else:
            path = item
        _local_records(path, skip_bad, skipped, limit, out)
    return out


# ---------------------------------------------------------------------------------------------
# Prompts and SFT records
# ---------------------------------------------------------------------------------------------


def prompt_messages(question: str, lang: str = "en") -> list[dict]:
    """Chat messages for RL rollouts / evaluation: a system prompt asking for step-by-step
    reasoning ending in `#### <number>`, then the question."""
    if lang not in SYSTEM_PROMPTS:
        raise ValueError(f"unknown lang {lang!r}; use one of {', '.join(SYSTEM_PROMPTS)}")
    return [
        {"role": "system", "content": SYSTEM_PROMPTS[lang]},
        {"role": "user", "content": question},
    ]


def record_messages(rec: dict, lang: str = "en") -> list[dict]:
    """The prompt of a record: its own `system` prompt when it has one (records made from the
    task generators, `tasks:*`), else the GSM8K one of `lang`."""
    if rec.get("system"):
        return [
            {"role": "system", "content": rec["system"]},
            {"role": "user", "content": rec["question"]},
        ]
    return prompt_messages(rec["question"], lang)


def clean_solution(answer: str, target: str | None = None) -> str:
    """A GSM8K solution without `<<...>>` annotations, ending in the line `#### <target>`."""
    target = target if target is not None else extract_answer(answer)
    lines = [ln.rstrip() for ln in _ANNOT.sub("", answer).strip().split("\n")]
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("####")):
        lines.pop()
    return "\n".join([*lines, f"#### {target}"])


def sft_record(rec: dict, lang: str = "en") -> dict:
    """MiniMind SFT record `{"conversations": [system, user, assistant]}` from a GSM8K record;
    the assistant turn is the solution without calculator annotations, ending in `#### n`."""
    msgs = prompt_messages(rec["question"], lang)
    sol = clean_solution(rec["answer"], rec.get("target"))
    return {"conversations": [*msgs, {"role": "assistant", "content": sol}]}


# ---------------------------------------------------------------------------------------------
# Synthetic GSM8K-format arithmetic
# ---------------------------------------------------------------------------------------------

_NAMES = (
    "Tom", "Anna", "Ben", "Lily", "Sam", "Mia", "Jack", "Emma", "Leo", "Zoe",
    "Max", "Ella", "Noah", "Ava", "Liam", "Ivy", "Owen", "Ruby", "Eli", "Nora",
)  # fmt: skip
_ITEMS = (
    "apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "shells",
    "balloons", "stamps", "oranges", "toy cars", "buttons", "candies", "flowers", "coins",
)  # fmt: skip
_CONTAINERS = ("boxes", "bags", "jars", "packs", "baskets", "trays")


_SHE = {"Anna", "Lily", "Mia", "Emma", "Zoe", "Ella", "Ava", "Ivy", "Ruby", "Nora"}


def _pron(name: str) -> str:
    return "she" if name in _SHE else "he"


def _add(rng: random.Random, lo: int, hi: int) -> tuple[str, str, int]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    c, he = a + b, _pron(name)
    q = rng.choice(
        (
            f"{name} has {a} {item} and buys {b} more. How many {item} does {he} have now?",
            f"{name} had {a} {item}. A friend gave {name} {b} more {item}. "
            f"How many {item} does {name} have in total?",
            f"There are {a} {item} on a table and {b} {item} on a shelf. "
            f"How many {item} are there altogether?",
            f"{name} collected {a} {item} on Monday and {b} {item} on Tuesday. "
            f"How many {item} did {he} collect in all?",
        )
    )
    sol = f"Add the two amounts: {a} + {b} = <<{a}+{b}={c}>>{c} {item}."
    return q, sol, c


def _sub(rng: random.Random, lo: int, hi: int) -> tuple[str, str, int]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    a = rng.randint(max(lo, 2), hi)
    b = rng.randint(1, a - 1)
    c, he = a - b, _pron(name)
    q = rng.choice(
        (
            f"{name} has {a} {item} and gives away {b}. How many {item} does {he} have left?",
            f"{name} had {a} {item} and lost {b} of them. How many {item} are left?",
            f"A shop had {a} {item}. It sold {b} {item}. How many {item} does it have now?",
        )
    )
    sol = f"Take away the {b}: {a} - {b} = <<{a}-{b}={c}>>{c} {item} are left."
    return q, sol, c


def _mul(rng: random.Random) -> tuple[str, str, int]:
    name, item, box = rng.choice(_NAMES), rng.choice(_ITEMS), rng.choice(_CONTAINERS)
    a, b = rng.randint(2, 9), rng.randint(2, 12)
    c, he = a * b, _pron(name)
    q = rng.choice(
        (
            f"{name} has {a} {box} with {b} {item} in each. How many {item} does {he} have?",
            f"Each of {name}'s {a} {box} holds {b} {item}. How many {item} are there in all?",
        )
    )
    sol = f"There are {a} {box} of {b} {item}, so {a} * {b} = <<{a}*{b}={c}>>{c} {item}."
    return q, sol, c


def _two_step(rng: random.Random) -> tuple[str, str, int]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    a, b = rng.randint(5, 40), rng.randint(1, 30)
    d = rng.randint(1, a + b - 1)
    s, c, he = a + b, a + b - d, _pron(name)
    q = (
        f"{name} has {a} {item}, buys {b} more, and then gives {d} to a friend. "
        f"How many {item} does {he} have now?"
    )
    sol = (
        f"After buying, {name} has {a} + {b} = <<{a}+{b}={s}>>{s} {item}.\n"
        f"After giving some away, {he} has {s} - {d} = <<{s}-{d}={c}>>{c} {item}."
    )
    return q, sol, c


_SUM_NAMES = ["Tom", "Ana", "Li", "Sam", "Mia", "Raj", "Eva", "Kai"]
_SUM_ITEMS = ["apples", "pens", "cards", "books", "coins", "stamps"]


def make_sums_set(n: int, seed: int) -> list[dict]:
    """`n` GSM8K-format one-digit sums whose answers are uniform in 0..9 (`#### s`), for RL
    tests and benchmarks: small enough that a d128 model learns them in minutes on a CPU.
    Deterministic under `seed`; questions repeat (the space is small)."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        s = rng.randint(0, 9)
        a = rng.randint(0, s)
        who, what = rng.choice(_SUM_NAMES), rng.choice(_SUM_ITEMS)
        q = f"{who} has {a} {what} and gets {s - a} more. How many now?"
        out.append({"question": q, "answer": f"{a} + {s - a} = <<{a}+{s - a}={s}>>{s}\n#### {s}"})
    return out


def make_arithmetic_set(n: int, seed: int, kind: str = "add") -> list[dict]:
    """`n` seeded GSM8K-format word problems with small operands, for tests and smoke runs.

    `kind="add"`: one addition of operands in 1..20; `kind="mixed"`: addition, subtraction,
    small multiplication and a two-step add-then-subtract. Each record is
    `{"question", "answer", "target"}` with a GSM8K-style solution (`<<a+b=c>>` annotations,
    final `#### c`). Deterministic under `seed`; duplicates are re-drawn (a few tries), so
    questions are unique unless `n` nears the size of the problem space.
    """
    if kind not in ("add", "mixed"):
        raise ValueError(f"unknown arithmetic kind {kind!r}; use 'add' or 'mixed'")
    rng = random.Random(f"gsm8k-arith:{kind}:{seed}")
    seen: set[str] = set()
    out = []
    for _ in range(n):
        for _try in range(20):
            if kind == "add":
                q, sol, c = _add(rng, 1, 20)
            else:
                op = rng.choice(("add", "sub", "mul", "two"))
                if op == "add":
                    q, sol, c = _add(rng, 1, 50)
                elif op == "sub":
                    q, sol, c = _sub(rng, 2, 60)
                elif op == "mul":
                    q, sol, c = _mul(rng)
                else:
                    q, sol, c = _two_step(rng)
            if q not in seen:
                break
        seen.add(q)
        out.append({"question": q, "answer": f"{sol}\n#### {c}", "target": str(c)})
    return out
