"""`minillm rl` (= `python -m minillm.rl` = `python launch/rl.py`): GSM8K GRPO on Ray: rollout
workers, replay buffer, the MLX learner, the evaluator.

    minillm rl --init_from out/sft --data_path gsm8k:train    # GRPO from an SFT'd policy
    minillm rl --init_from BASE --sft_steps 1500 --max_steps 30   # SFT warm-up first
    minillm rl --config run.json                               # settings from a file
    minillm rl --out_dir D --resume                            # continue, its settings too

Every setting is checked before Ray starts. Environment variables of the predecessor's script
(ITERS, NUM_ROLLOUTS, WARMUP_STEPS, ...; README "Environment variables") set defaults.
"""

from __future__ import annotations

import argparse
import sys

from minillm.config.rl import TRAIN_FLAGS, RLConfig
from minillm.config.verb import RunParser

GROUPS = {"train": "learner", "rollout": "rollout", "grpo": "grpo",
          "sft warm-up": "sft warm-up", "evaluation": "evaluation", "ray": "ray"}  # fmt: skip


def extra(p: argparse.ArgumentParser) -> None:
    """The old negative spellings."""
    p.add_argument("--no_std_scaling", dest="scale_std", action="store_false",
                   help="= --no-scale_std")  # fmt: skip
    p.add_argument("--no_dynamic_sampling", dest="dynamic_sampling", action="store_false",
                   help="= --no-dynamic_sampling")  # fmt: skip


def parser(prog: str = "minillm rl") -> RunParser:
    return RunParser("rl", RLConfig, prog, __doc__, {"train": TRAIN_FLAGS}, GROUPS, extra)


def config_from(argv: list[str] | None, prog: str = "minillm rl") -> RLConfig:
    """The run's config from the command line, checked (nothing started yet)."""
    cfg = parser(prog).parse(argv)
    cfg.check()
    return cfg


def main(argv: list[str] | None = None, prog: str = "minillm rl") -> int:
    cfg = config_from(argv, prog)
    from actors.rl_launch import launch

    return launch(cfg, sys.argv[1:] if argv is None else argv, prog)
