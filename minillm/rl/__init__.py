"""Reinforcement learning core (no Ray): rollouts with behaviour log-probs, GRPO loss."""


def main(argv: list[str] | None = None) -> int:
    """`minillm rl` (minillm/rl/cli.py)."""
    from minillm.rl.cli import main as rl_main

    return rl_main(argv)
