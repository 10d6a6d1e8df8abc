"""Check that every `minillm ...` command in README.md's code blocks parses.

    python launch/check_readme.py [README.md]

Each command line of a ```bash block (continuations joined, `&&` chains split, comments and
leading `VAR=value` settings dropped) that starts with `minillm <verb>` or
`python -m minillm.<verb>` is handed to that verb's own argument parser, which checks its
flags, choices and value types; nothing runs (the parser is stopped right after it parses).
Prints one line per command and exits 1 when any of them fails to parse.

It also checks the README's generated tables (between `<!-- table:NAME -->` and
`<!-- /table:NAME -->`): the flags of `minillm distill` and `minillm rl`, made from their
config dataclasses, and the environment variables (minillm/config/env.py). `--write`
regenerates them in place.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\s*$")


class Parsed(Exception):
    """Raised in place of running a verb once its arguments parsed."""


def commands(text: str) -> list[tuple[int, list[str]]]:
    """(line number, argv starting at the verb) of every MiniLLM command in bash blocks."""
    out, lang, buf, start = [], None, "", 0
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line.strip())
        if m:
            lang = None if lang is not None else (m.group(1) or "text")
            continue
        if lang not in ("bash", "sh", "shell"):
            continue
        if not buf:
            start = n
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        for part in re.split(r"&&|;|\|\|", buf):
            argv = minillm_argv(part)
            if argv:
                out.append((start, argv))
        buf = ""
    return out


def minillm_argv(part: str) -> list[str] | None:
    try:
        words = shlex.split(part, comments=True)
    except ValueError:
        return None
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value settings
        words.pop(0)
    if words[:1] == ["minillm"] and len(words) > 1:
        return words[1:]
    if len(words) > 2 and words[0] in ("python", "python3") and words[1] == "-m":
        mod = words[2]
        if mod.startswith("minillm."):
            return [mod.split(".", 1)[1], *words[3:]]
    return None


def check(argv: list[str]) -> str | None:
    """None when `argv` (verb first) parses; else the parser's error."""
    import importlib

    verb, rest = argv[0], argv[1:]
    if verb in ("-h", "--help"):
        return None
    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        real(self, args, namespace)
        raise Parsed

    from minillm.cli import MODULES

    err = io.StringIO()
    try:
        main = importlib.import_module(MODULES.get(verb, f"minillm.{verb}")).main
    except ModuleNotFoundError as e:
        return f"no verb {verb!r} ({e})"
    argparse.ArgumentParser.parse_args = parse_then_stop
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(rest)
    except Parsed:
        return None
    except SystemExit as e:
        if e.code in (0, None):
            return None
        return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else str(e)
    except Exception as e:  # noqa: BLE001 - reported as this command's failure
        return f"{type(e).__name__}: {e}"
    finally:
        argparse.ArgumentParser.parse_args = real
    return "ran to the end without parsing its arguments"


def flag_table(verb: str) -> str:
    """| flag | default | accepts | meaning | of a run verb, from its config dataclass."""
    from minillm.config.flags import _base, flag_fields, rule, show

    if verb == "train":
        from minillm.config.job import NO_FLAG
        from minillm.config.job import TrainJob as cls
        from minillm.train.config import TrainConfig

        keep = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in NO_FLAG)
        include = {"train": keep, "model": None, "data": None}
    elif verb == "distill":
        from minillm.config.distill import TRAIN_FLAGS
        from minillm.config.distill import DistillConfig as cls

        include = {"train": TRAIN_FLAGS, "model": None}
    else:
        from minillm.config.rl import TRAIN_FLAGS
        from minillm.config.rl import RLConfig as cls

        include = {"train": TRAIN_FLAGS}
    rows = ["| flag | default | accepts | meaning |", "|---|---|---|---|"]
    for _, f, tp, value in flag_fields(cls(), include):
        names = ", ".join(f"`--{n}`" for n in (f.name, *f.metadata.get("aliases", ())))
        meaning = f.metadata.get("help", "").replace("|", "/")
        accepts = rule(f.metadata).replace("|", "/") or ("yes / no" if _base(tp) is bool else "")
        rows.append(f"| {names} | {show(value)} | {accepts} | {meaning} |")
    return "\n".join(rows)


def tables() -> dict[str, str]:
    from minillm.config.env import table

    return {
        "train-flags": flag_table("train"),
        "distill-flags": flag_table("distill"),
        "rl-flags": flag_table("rl"),
        "env": table(),
    }


def refresh(text: str) -> tuple[str, list[str]]:
    """`text` with every generated table regenerated, and the names of those that changed
    (or whose markers are missing)."""
    stale = []
    for name, body in tables().items():
        start, end = f"<!-- table:{name} -->", f"<!-- /table:{name} -->"
        if start not in text or end not in text:
            stale.append(f"{name} (markers missing)")
            continue
        a, b = text.index(start) + len(start), text.index(end)
        if text[a:b].strip() != body:
            stale.append(name)
            text = text[:a] + "\n" + body + "\n" + text[b:]
    return text, stale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("readme", nargs="?", default=str(ROOT / "README.md"))
    p.add_argument("--write", action="store_true", help="regenerate the README's tables")
    ns = p.parse_args(argv)
    path = Path(ns.readme)
    new, stale = refresh(path.read_text(encoding="utf-8"))
    if ns.write and stale:
        path.write_text(new, encoding="utf-8")
        print(f"[check_readme] regenerated: {', '.join(stale)}")
        stale = [s for s in stale if "missing" in s]
    for name in stale:
        print(f"FAIL README.md table {name} is out of date: python launch/check_readme.py --write")
    cmds = commands(path.read_text(encoding="utf-8"))
    bad = 0
    for line, cmd in cmds:
        why = check(cmd)
        bad += why is not None
        print(f"{'FAIL' if why else 'ok  '} README.md:{line}: minillm {shlex.join(cmd)}"
              + (f"\n      {why}" if why else ""))  # fmt: skip
    print(f"[check_readme] {len(cmds) - bad}/{len(cmds)} commands parse")
    return 1 if bad or stale else 0


if __name__ == "__main__":
    sys.exit(main())
