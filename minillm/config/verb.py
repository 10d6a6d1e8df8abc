"""Parsing a run's command line into its typed config, the same way for `minillm distill` and
`minillm rl`: defaults < environment table < `--config FILE` (or, with `--resume`, the
settings the run saved in its folder) < the flags typed."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minillm.config.env import apply_env
from minillm.config.flags import add_flags, apply, from_dict, read_json


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (the usage of ~70 flags is --help's)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class RunParser:
    """The parser of a run verb: one flag per config field plus `--config`."""

    def __init__(
        self,
        verb: str,
        default: Callable[[], Any],
        prog: str,
        description: str,
        include: dict[str, tuple | None],
        groups: dict[str, str],
        extra: Callable[[argparse.ArgumentParser], None] | None = None,
        saved: bool = True,
    ):
        """`saved`: `--resume` reuses the settings the run wrote to `<out_dir>/<verb>.json`
        (distill, RL; `train --resume` takes the settings typed, and checks them against the
        run's)."""
        self.verb, self.default, self.saved = verb, default, saved
        # every flag, a verb's `extra` ones (old spellings such as `--no_dynamic_sampling`)
        # too, stays out of the namespace unless typed, so it never overrides `--config FILE`
        p = OneLineParser(
            prog=prog, description=description, argument_default=argparse.SUPPRESS,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        p.add_argument(
            "--config",
            default=None,
            help=f"JSON file of settings (nested as in a run's saved {verb}.json); flags typed "
            "on the command line override it",
        )
        self.paths = add_flags(p, default(), include, groups)
        if extra:
            extra(p)
        self.parser = p

    def parse(self, argv: list[str] | None) -> Any:
        given = vars(self.parser.parse_args(argv))
        base = apply_env(self.default(), self.verb)
        if given.get("config"):
            base = from_dict(base, read_json(given["config"]), given["config"])
        elif given.get("resume") and self.saved:
            out = Path(given.get("out_dir", base.out_dir))
            saved = out / f"{self.verb}.json"
            if saved.is_file():  # the run's own settings, then what was typed now
                base = from_dict(self.default(), read_json(saved), str(saved))
        return apply(base, given, self.paths)

    def over(self, base: Any, argv: list[str]) -> Any:
        """`base` with the flags in `argv` laid over (the pipeline's `-- --compile`)."""
        return apply(base, vars(self.parser.parse_args(argv)), self.paths)
