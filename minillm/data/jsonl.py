"""Streaming JSONL reading and per-task record validation.

Lines are read as bytes with their byte offsets, so a reader can seek back to any line (the
data cursor of a resumed run), decoded as strict UTF-8 and parsed as JSON objects. A bad line
raises `ValueError("file:line: reason; ...")`, or with `skip_bad_lines=True` is counted per
reason in `JsonlReader.skipped`.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TASKS = ("pretrain", "sft", "dpo")
ROLES = ("system", "user", "assistant", "tool")
REMOTE_PREFIXES = ("http://", "https://", "minimind:")

Ref = tuple[int, int, int]  # (file index, byte offset, 1-based line number)

# A longer line is a "line too long" bad line (an error, or a counted skip) read in chunks, never
# held in memory: one 50 MB line would otherwise take gigabytes to tokenize and pack. Change it
# with --max_line_mb (or MINILLM_MAX_LINE_MB), which every data-reading verb takes.
MAX_LINE_MB = 16.0


def _max_line_mb(text: str) -> float:
    try:
        mb = float(text)
    except ValueError:
        raise ValueError(f"--max_line_mb {text!r} is not a number of MiB") from None
    if not mb > 0:
        raise ValueError(f"--max_line_mb must be > 0, got {mb:g}")
    return mb


def max_line_bytes() -> int:
    raw = os.environ.get("MINILLM_MAX_LINE_MB", "")
    return int((_max_line_mb(raw) if raw else MAX_LINE_MB) * 2**20)


def _set_max_line_mb(text: str) -> float:
    """argparse type of --max_line_mb. It also runs on the (string) default when the flag is
    absent, so every parse sets MINILLM_MAX_LINE_MB: a later call in the same process never
    keeps an earlier call's limit, and worker processes inherit this one."""
    try:
        mb = _max_line_mb(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    os.environ["MINILLM_MAX_LINE_MB"] = str(mb)
    return mb


def add_max_line_flag(parser) -> None:
    """`--max_line_mb`: sets MINILLM_MAX_LINE_MB for this process and its workers."""
    parser.add_argument(
        "--max_line_mb",
        type=_set_max_line_mb,
        default=str(MAX_LINE_MB),
        help=f"longest JSONL line accepted, in MiB (default {MAX_LINE_MB:g}); a longer one is a "
        "bad line (an error, or skipped with --skip_bad_lines)",
    )


def too_long(nbytes: int, limit: int) -> BadLine:
    return BadLine("line too long", f"{nbytes / 2**20:.1f} MiB > --max_line_mb {limit / 2**20:g}")


def read_line(f, limit: int) -> tuple[bytes | None, int]:
    """One line of binary file `f`: `(raw, nbytes)`, or `(None, nbytes)` when it is longer than
    `limit` bytes (then read through in 1 MiB chunks, so the offset stays right)."""
    raw = f.readline(limit + 1)
    if len(raw) <= limit or raw.endswith(b"\n"):
        return raw, len(raw)
    n = len(raw)
    while raw and not raw.endswith(b"\n"):
        raw = f.readline(2**20)
        n += len(raw)
    return None, n


class BadLine(Exception):
    """A line that fails validation: `kind` is the counted reason, `detail` says more."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(kind)
        self.kind, self.detail = kind, detail

    def message(self, where: str) -> str:
        reason = f"{self.kind}: {self.detail}" if self.detail else self.kind
        return f"{where}: {reason}; fix the line or pass --skip_bad_lines"


def resolve_paths(spec: str | Sequence[str | Path]) -> list[Path]:
    """Expand a comma list (or a list) of files, directories and globs into JSONL files.

    A directory gives its `*.jsonl` files, sorted; a glob gives its sorted matches. An entry
    that matches nothing is an error naming it. Remote entries (URLs, `minimind:*`) must be
    downloaded first by the hub module; here only local paths are accepted.
    """
    entries = (
        [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s) for s in spec]
    )
    entries = [e for e in entries if e]
    if not entries:
        raise ValueError("empty --data_path; give JSONL files, directories or globs")
    out: list[Path] = []
    for e in entries:
        if e.startswith(REMOTE_PREFIXES):
            raise ValueError(
                f"data path {e!r} is remote; resolve it to local files first "
                "(minillm.data.hub) or pass a local path"
            )
        p = Path(e).expanduser()
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:
                raise FileNotFoundError(f"data path {e!r}: directory has no *.jsonl files")
            out += found
        elif p.is_file():
            out.append(p)
        elif glob.has_magic(e):
            found = sorted(Path(m) for m in glob.glob(str(p)) if Path(m).is_file())
            if not found:
                raise FileNotFoundError(f"data path {e!r}: glob matches no files")
            out += found
        else:
            raise FileNotFoundError(f"data path {e!r} does not exist")
    return out


def _check_ids(ids: Any, vocab_size: int, name: str = "ids") -> np.ndarray:
    if not isinstance(ids, list) or not ids:
        raise BadLine("bad ids", f"'{name}' must be a non-empty list of ints")
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise BadLine("bad ids", f"'{name}' must be a flat list of ints")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= vocab_size:
        raise BadLine(
            "bad ids", f"'{name}' has id {lo if lo < 0 else hi} outside [0, {vocab_size})"
        )
    return arr.astype(np.int32)


def _check_conversation(conv: Any, need_assistant: bool) -> list[dict]:
    if not isinstance(conv, list):
        raise BadLine("bad conversation", "'conversations' must be a list of turns")
    if not conv:
        raise BadLine("empty conversation")
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise BadLine("bad conversation", f"turn {i} needs 'role' and 'content'")
        if turn["role"] not in ROLES:
            raise BadLine(
                "bad conversation",
                f"turn {i} role {turn['role']!r} is not one of {'/'.join(ROLES)}",
            )
        if not isinstance(turn["content"], str):
            raise BadLine("bad conversation", f"turn {i} content is not a string")
    if need_assistant and not any(t["role"] == "assistant" for t in conv):
        raise BadLine("bad conversation", "no assistant turn to train on")
    return conv


def _check_dpo(obj: dict) -> dict:
    """A DPO pair as `{"prompt": [turns], "chosen": str, "rejected": str}`."""
    if "chosen" not in obj or "rejected" not in obj:
        raise BadLine(
            "missing field",
            "dpo needs 'chosen' and 'rejected' (turn lists, or strings with a 'prompt' string)",
        )
    chosen, rejected = obj["chosen"], obj["rejected"]
    if isinstance(chosen, str) and isinstance(rejected, str):
        prompt = obj.get("prompt")
        if not isinstance(prompt, str):
            raise BadLine("bad dpo pair", "string 'chosen'/'rejected' need a 'prompt' string")
        return {
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": chosen,
            "rejected": rejected,
        }
    if not isinstance(chosen, list) or not isinstance(rejected, list):
        raise BadLine(
            "bad dpo pair", "'chosen' and 'rejected' must both be turn lists or both strings"
        )
    out = {}
    for name, conv in (("chosen", chosen), ("rejected", rejected)):
        try:
            _check_conversation(conv, need_assistant=True)
        except BadLine as e:
            raise BadLine(e.kind, f"'{name}': {e.detail or e.kind}") from None
        if conv[-1]["role"] != "assistant":
            raise BadLine("bad dpo pair", f"the last turn of '{name}' must be the assistant's")
        out[name] = conv[-1]["content"]
    key = [[(t["role"], t["content"]) for t in c[:-1]] for c in (chosen, rejected)]
    if key[0] != key[1]:
        i = next(
            (i for i, (a, b) in enumerate(zip(*key, strict=False)) if a != b), min(map(len, key))
        )
        raise BadLine(
            "prompt mismatch",
            f"'chosen' and 'rejected' must share the turns before the last assistant turn; "
            f"they differ at turn {i}",
        )
    return {"prompt": [dict(t) for t in chosen[:-1]], **out}


def validate(obj: Any, task: str, vocab_size: int) -> dict:
    """Check one parsed line for `task`; return the normalised record or raise `BadLine`.

    pretrain: `ids` (ints in [0, vocab)), else `text` (non-empty str), else `conversations`
    (rendered with the chat template). sft: `ids` (+ optional 0/1 `mask` of the same length),
    else `conversations` (role in system/user/assistant/tool, at least one assistant turn).
    The first field present wins, so pretokenized files with `--keep_fields` use their `ids`.
    dpo: `chosen`/`rejected` turn lists that end with an assistant turn and share the turns
    before it (the prompt), or `prompt`/`chosen`/`rejected` strings; normalised to
    `{"prompt": [turns], "chosen": str, "rejected": str}`.
    """
    if not isinstance(obj, dict):
        raise BadLine("not a JSON object", f"got {type(obj).__name__}")
    if task == "dpo":
        return _check_dpo(obj)
    if "ids" in obj:
        rec = {"ids": _check_ids(obj["ids"], vocab_size)}
        if task == "sft" and obj.get("mask") is not None:
            mask = obj["mask"]
            if not isinstance(mask, list) or len(mask) != len(rec["ids"]):
                raise BadLine("bad mask", "'mask' must be a list as long as 'ids'")
            m = np.asarray(mask)
            if m.dtype.kind not in "iub" or ((m != 0) & (m != 1)).any():
                raise BadLine("bad mask", "'mask' must hold only 0 and 1")
            rec["mask"] = m.astype(np.int8)
        return rec
    if task == "pretrain" and "text" in obj:
        if not isinstance(obj["text"], str):
            raise BadLine("bad text", "'text' must be a string")
        if not obj["text"]:
            raise BadLine("empty text")
        return {"text": obj["text"]}
    if "conversations" in obj:
        return {"conversations": _check_conversation(obj["conversations"], task == "sft")}
    need = "'text', 'conversations' or 'ids'" if task == "pretrain" else "'conversations' or 'ids'"
    raise BadLine("missing field", f"{task} needs {need}")


def parse_line(raw: bytes, task: str, vocab_size: int) -> dict | None:
    """Decode, parse and validate one raw line; None for a blank line; raises `BadLine`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadLine(
            "invalid UTF-8", f"byte {raw[e.start]:#04x} at column {e.start + 1}"
        ) from None
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        msg = e.msg.removesuffix(" at")  # "Invalid control character at" + " at column N"
        raise BadLine("bad JSON", f"{msg} at column {e.colno}") from None
    return validate(obj, task, vocab_size)


class JsonlReader:
    """Sequential, seekable reader of validated records over several JSONL files.

    `next()` returns `(ref, record)` or None at the end of the last file, where
    `ref = (file_idx, byte_offset, line_no)`; `read_at(ref)` re-reads one line. `position`
    is the ref of the next line to read; `seek(position)` returns there.
    """

    def __init__(
        self, paths: Sequence[str | Path], task: str, vocab_size: int, skip_bad_lines: bool = False
    ):
        if task not in TASKS:
            raise ValueError(f"task {task!r} is not one of {'/'.join(TASKS)}")
        self.paths = [Path(p) for p in paths]
        self.task, self.vocab_size, self.skip_bad_lines = task, vocab_size, skip_bad_lines
        self.skipped: dict[str, int] = {}
        self.max_line = max_line_bytes()
        self.count_skips = True
        self._f = None
        self._random_f: dict[int, Any] = {}
        self.seek((0, 0, 1))

    def seek(self, position: Sequence[int]) -> None:
        self.close()
        self.file_idx, self.offset, self.line_no = (int(x) for x in position)

    @property
    def position(self) -> Ref:
        return (self.file_idx, self.offset, self.line_no)

    def _parse(self, raw: bytes | None, ref: Ref, nbytes: int = 0) -> dict | None:
        try:
            if raw is None:
                raise too_long(nbytes, self.max_line)
            return parse_line(raw, self.task, self.vocab_size)
        except BadLine as e:
            if not self.skip_bad_lines:
                raise ValueError(e.message(f"{self.paths[ref[0]]}:{ref[2]}")) from None
            if self.count_skips:
                self.skipped[e.kind] = self.skipped.get(e.kind, 0) + 1
            return None

    def next(self) -> tuple[Ref, dict] | None:
        while self.file_idx < len(self.paths):
            if self._f is None:
                self._f = open(self.paths[self.file_idx], "rb")  # noqa: SIM115
                self._f.seek(self.offset)
            raw, n = read_line(self._f, self.max_line)
            if not n:
                self.close()
                self.file_idx, self.offset, self.line_no = self.file_idx + 1, 0, 1
                continue
            ref = self.position
            self.offset += n
            self.line_no += 1
            if ref[1] == 0 and raw is not None:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            rec = self._parse(raw, ref, n)
            if rec is not None:
                return ref, rec
        return None

    def read_at(self, ref: Sequence[int]) -> dict:
        fi, off, line = (int(x) for x in ref)
        f = self._random_f.get(fi)
        if f is None:
            f = self._random_f[fi] = open(self.paths[fi], "rb")  # noqa: SIM115
        f.seek(off)
        raw, n = read_line(f, self.max_line)
        if off == 0 and raw is not None:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        rec = self._parse(raw, (fi, off, line), n)
        if rec is None:
            raise ValueError(
                f"{self.paths[fi]}:{line}: line changed since it was read; "
                "resume needs the same data files"
            )
        return rec

    def close(self) -> None:
        """Close open files (a later `next()` or `read_at()` reopens them)."""
        for f in [getattr(self, "_f", None), *getattr(self, "_random_f", {}).values()]:
            if f is not None:
                f.close()
        self._f, self._random_f = None, {}

    __del__ = close

    def __iter__(self) -> Iterator[tuple[Ref, dict]]:
        while (item := self.next()) is not None:
            yield item


def format_skipped(skipped: dict[str, int]) -> str:
    """One line summarising skipped bad lines, e.g. `skipped 3 bad lines (bad JSON: 2, ...)`."""
    if not skipped:
        return "skipped 0 bad lines"
    parts = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))
    return f"skipped {sum(skipped.values())} bad lines ({parts})"
