"""`minillm distill` (= `python -m minillm.distill` = `python launch/distill.py`): streaming
distillation on Ray: teacher generators -> Arrow shards -> the MLX learner, scored by the
evaluator, on a local Ray (or --address).

    minillm distill --workers 8                       # the Ollama teacher at OLLAMA_URL
    minillm distill --teacher oracle --preset tiny    # offline: the tasks' own answers
    minillm distill --config run.json                 # settings from a file (flags override)
    minillm distill --out_dir D --resume              # continue a stopped run, its settings too

Every setting is checked before Ray starts. Environment variables of the predecessor's script
(OLLAMA_URL, GEN_WORKERS, SEQ_LEN, ...; README "Environment variables") set defaults.
"""

from __future__ import annotations

import argparse
import sys

from minillm.config.distill import TRAIN_FLAGS, DistillConfig
from minillm.config.verb import RunParser

GROUPS = {
    "teacher": "teacher",
    "generation": "generation",
    "train": "learner",
    "model": "model (a fresh run)",
    "evaluation": "evaluation",
    "ray": "ray",
}


def extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generate_only", dest="learner", action="store_false",
                   help="= --no-learner")  # fmt: skip


def parser(prog: str = "minillm distill") -> RunParser:
    return RunParser(
        "distill", DistillConfig, prog, __doc__, {"train": TRAIN_FLAGS, "model": None}, GROUPS,
        extra,
    )  # fmt: skip


def config_from(argv: list[str] | None, prog: str = "minillm distill") -> DistillConfig:
    """The run's config from the command line, checked (nothing started yet)."""
    cfg = parser(prog).parse(argv)
    cfg.check()
    return cfg


def main(argv: list[str] | None = None, prog: str = "minillm distill") -> int:
    cfg = config_from(argv, prog)
    from actors.distill import launch

    return launch(cfg, sys.argv[1:] if argv is None else argv, prog)


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
