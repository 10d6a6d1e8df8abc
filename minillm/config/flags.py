"""One CLI pattern for every run: typed, documented dataclasses -> argparse flags -> configs.

A setting is a dataclass field made with `setting(default, help, ...)`. `add_flags` adds one
flag per field (nested dataclass fields, e.g. a run's `train: TrainConfig`, become flat flags
of the same name); every flag's argparse default is SUPPRESS, so the parsed namespace holds
only what the user typed and `apply` lays exactly that over a base config (the defaults, the
environment table, a `--config` file or a resumed run's saved config). `from_dict` reads a
JSON config and names the file, key and fix for anything it cannot use.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import operator
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any


def setting(default: Any = dataclasses.MISSING, help: str = "", **meta: Any) -> Any:
    """A config field: `help` for the flag, plus optional metadata: `choices`, `aliases`
    (old spellings of the flag), `parse` (str -> value for list/dict fields), `flag=False`
    (no flag: derived or internal), `factory` (a default_factory), and the field's own check
    (`check_fields`): bounds `ge`/`gt`/`le`/`lt`, `fix` (what to set instead), `check` (a
    function of the value that raises ValueError)."""
    factory = meta.pop("factory", None)
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


def ints(s: str) -> list[int]:
    """ "64,128,256" -> [64, 128, 256]."""
    try:
        return [int(x) for x in str(s).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"bad list {s!r}: use comma-separated integers") from None


def weights(s: str) -> dict[str, float]:
    """ "math=2,logic=1" -> {"math": 2.0, "logic": 1.0}."""
    out = {}
    for part in str(s).split(","):
        k, sep, v = part.partition("=")
        try:
            out[k.strip()] = float(v) if sep else 1.0
        except ValueError:
            raise ValueError(f"bad weight {part!r}: use name=number") from None
    return out


BOUNDS = (("ge", operator.ge, ">="), ("gt", operator.gt, ">"),
          ("le", operator.le, "<="), ("lt", operator.lt, "<"))  # fmt: skip


def check_value(name: str, v: Any, meta: Any) -> None:
    """One field's own check: ValueError `--name must be ..., got v; fix`."""
    if v is None:
        return
    fix = f"; {meta['fix']}" if "fix" in meta else ""
    if "choices" in meta and v not in meta["choices"]:
        raise ValueError(
            f"--{name} {v!r} is not one of {', '.join(map(str, meta['choices']))}; set "
            f"--{name} to one of them"
        )
    for key, ok, word in BOUNDS:
        if key in meta and isinstance(v, (int, float)) and not ok(v, meta[key]):
            raise ValueError(f"--{name} must be {word} {meta[key]}, got {v}{fix}")
    if "check" in meta:
        try:
            meta["check"](v)
        except ValueError as e:
            raise ValueError(f"--{name} {show(v)}: {e}") from None


def rule(meta: Any) -> str:
    """What a field accepts, in a few words (the README's flag tables)."""
    parts = []
    if "choices" in meta:
        parts.append(" / ".join(map(str, meta["choices"])))
    lo = next((f"{w} {meta[k]}" for k, _, w in BOUNDS[:2] if k in meta), "")
    hi = next((f"{w} {meta[k]}" for k, _, w in BOUNDS[2:] if k in meta), "")
    if lo or hi:
        parts.append(", ".join(x for x in (lo, hi) if x))
    if "check" in meta:
        fn = meta["check"]
        parts.append(getattr(fn, "rule", fn.__name__.replace("_", " ")))
    return "; ".join(parts)


def check_fields(cfg: Any) -> None:
    """Every field's own check (nested configs check themselves when they are made)."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if not dataclasses.is_dataclass(v):
            check_value(f.name, v, f.metadata)


def text(v: str) -> None:
    """Any text (a prompt, a model name): only not empty."""
    if not str(v).strip():
        raise ValueError("is empty; give a value or leave the setting out")


def path(v: str) -> None:
    """A file or folder name: not empty, no NUL byte (checked for existence where it is read)."""
    text(v)
    if "\0" in v:
        raise ValueError("has a NUL byte; give a file or folder name")


def url(v: str) -> None:
    """An http(s) URL with a host."""
    from urllib.parse import urlsplit

    u = urlsplit(str(v))
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError("is not an http(s) URL; give one like http://127.0.0.1:11434")


def host(v: str) -> None:
    """A host name or address to bind (no scheme, no port)."""
    text(v)
    if "/" in v or " " in v:
        raise ValueError("is not a host; give an address like 127.0.0.1 or 0.0.0.0")


def positive_ints(v: list[int]) -> None:
    """A list of integers, each >= 1 (batch widths, buckets)."""
    if not v or any(not isinstance(x, int) or x < 1 for x in v):
        raise ValueError("must be integers >= 1, e.g. 128,256")


def fraction(v: float) -> None:
    """A share in (0, 1]."""
    if not 0 < v <= 1:
        raise ValueError("must be a fraction in (0, 1], e.g. 0.5")


text.rule, path.rule, url.rule, host.rule = "text", "a path", "http(s) URL", "host address"
positive_ints.rule, fraction.rule = "integers >= 1", "in (0, 1]"


def truthy(v: str) -> bool:
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{v!r} is not a yes/no value: use 1 or 0")


def _hints(cls: type) -> dict[str, Any]:
    import sys

    mod = sys.modules.get(cls.__module__)
    return typing.get_type_hints(cls, vars(mod) if mod else None)


def _base(tp: Any) -> Any:
    """`int` of `int | None`, `list` of `list[int]`."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else str
    return typing.get_origin(tp) or tp


def converter(f: dataclasses.Field, tp: Any):
    """str -> value for the field (flags and environment variables)."""
    if "parse" in f.metadata:
        return f.metadata["parse"]
    base = _base(tp)
    if base is bool:
        return truthy
    if base is list:
        return ints
    if base is dict:
        return weights
    if base is tuple:
        return str  # "a,b": the dataclass splits it
    return base if base in (int, float) else str


def _typed(parse):
    def conv(s: str):
        try:
            return parse(s)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    conv.__name__ = getattr(parse, "__name__", "value")
    return conv


def nested(cfg: Any) -> dict[str, Any]:
    """The dataclass-valued fields of `cfg` (flattened into its flags)."""
    return {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if dataclasses.is_dataclass(getattr(cfg, f.name))
    }


def flag_fields(cfg: Any, include: dict[str, tuple | None] | None = None):
    """(dotted path, field, type, current value) of every flag of `cfg`; `include` maps a
    nested field name to the names of its fields that get flags (None: all)."""
    include = include or {}
    out = []
    hints = _hints(type(cfg))
    subs = nested(cfg)
    for f in dataclasses.fields(cfg):
        if f.name in subs:
            keep = include.get(f.name)
            sub = subs[f.name]
            sh = _hints(type(sub))
            for g in dataclasses.fields(sub):
                if g.metadata.get("flag", True) and (keep is None or g.name in keep):
                    out.append((f"{f.name}.{g.name}", g, sh[g.name], getattr(sub, g.name)))
        elif f.metadata.get("flag", True):
            out.append((f.name, f, hints[f.name], getattr(cfg, f.name)))
    return out


def show(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    if isinstance(v, dict):
        return ",".join(f"{k}={x}" for k, x in v.items())
    return str(v)


def add_flags(
    p: argparse.ArgumentParser,
    cfg: Any,
    include: dict[str, tuple | None] | None = None,
    groups: dict[str, str] | None = None,
    skip: tuple | set = (),
    suppress: bool = True,
) -> dict[str, str]:
    """One flag per field of `cfg` (nested fields flat); returns {dest: dotted path}.
    `groups` maps a path prefix (`train`, `model`) or a field's `group` metadata to a title.
    With `suppress` (the default) a flag not typed is absent from the namespace (see
    `apply`); without, its default is `cfg`'s value (verbs that read the namespace)."""
    paths: dict[str, str] = {}
    made: dict[str, argparse._ArgumentGroup] = {}
    for path, f, tp, value in flag_fields(cfg, include):
        name = f.name
        if name in skip:
            continue
        if name in paths:
            raise TypeError(f"two settings would both be --{name}: {paths[name]} and {path}")
        paths[name] = path
        title = (groups or {}).get(f.metadata.get("group") or path.split(".")[0])
        target = p
        if title:
            target = made.get(title) or made.setdefault(title, p.add_argument_group(title))
        kw: dict[str, Any] = {"default": argparse.SUPPRESS if suppress else value, "dest": name}
        if not suppress and _base(tp) is tuple and value is not None:
            kw["default"] = show(value)
        kw["help"] = f"{f.metadata.get('help', '')} [default: {show(value)}]".replace("%", "%%")
        flags = [f"--{name}", *(f"--{a}" for a in f.metadata.get("aliases", ()))]
        if _base(tp) is bool and "parse" not in f.metadata:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _typed(converter(f, tp))
            kw["metavar"] = name.upper()
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
                kw.pop("metavar")
        target.add_argument(*flags, **kw)
    return paths


def replace_path(cfg: Any, path: str, value: Any) -> Any:
    """A copy of `cfg` with the dotted `path` set to `value`."""
    head, _, rest = path.partition(".")
    if rest:
        return dataclasses.replace(cfg, **{head: replace_path(getattr(cfg, head), rest, value)})
    return dataclasses.replace(cfg, **{head: value})


def apply(cfg: Any, values: dict[str, Any], paths: dict[str, str]) -> Any:
    """`cfg` with each given flag value (a namespace's dict) set at its path; a nested config
    is replaced in one step, so its cross-field checks see all its new values together."""
    top: dict[str, Any] = {}
    subs: dict[str, dict[str, Any]] = {}
    for dest, value in values.items():
        if dest not in paths:
            continue
        head, _, rest = paths[dest].partition(".")
        if rest:
            subs.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    for head, over in subs.items():
        top[head] = dataclasses.replace(getattr(cfg, head), **over)
    return dataclasses.replace(cfg, **top) if top else cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready nested dict of a config (tuples as lists)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def _check_type(v: Any, tp: Any, where: str) -> Any:
    base = _base(tp)
    if v is None:
        return v
    ok = {
        bool: isinstance(v, bool),
        int: isinstance(v, int) and not isinstance(v, bool),
        float: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: isinstance(v, str),
        list: isinstance(v, list),
        tuple: isinstance(v, (list, tuple)),
        dict: isinstance(v, dict),
    }.get(base, True)
    if not ok:
        raise ValueError(f"{where}: {v!r} is not a {getattr(base, '__name__', base)}")
    return tuple(v) if base is tuple else float(v) if base is float else v


def from_dict(cls_or_cfg: Any, d: dict[str, Any], where: str = "config") -> Any:
    """A config of `cls_or_cfg`'s type: its values (a class: its defaults) with `d` laid over,
    nested dicts into nested configs; an unknown key or a wrong type names `where`, the key
    and the nearest known name."""
    cfg = cls_or_cfg() if isinstance(cls_or_cfg, type) else cls_or_cfg
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a JSON object of settings, got {type(d).__name__}")
    hints = _hints(type(cfg))
    names = [f.name for f in dataclasses.fields(cfg)]
    subs = nested(cfg)
    over = {}
    for k, v in d.items():
        if k not in names:
            near = difflib.get_close_matches(k, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(names)}"
            raise ValueError(f"{where}: unknown setting {k!r}{hint}")
        if k in subs:
            over[k] = from_dict(subs[k], v, f"{where}: {k}")
        else:
            over[k] = _check_type(v, hints[k], f"{where}: {k}")
    return dataclasses.replace(cfg, **over)


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON config file (a saved run's `{"config": {...}}` too), errors naming the line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--config {path}: no such file")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if isinstance(d, dict) and set(d) <= {"verb", "config"} and "config" in d:
        d = d["config"]
    return d
