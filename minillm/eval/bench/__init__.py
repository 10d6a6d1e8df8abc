"""`minillm bench`: seeded synthetic suites (zh/en) scored against MiniLLM checkpoints,
Ollama and OpenAI-compatible servers."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from minillm.eval.bench.__main__ import main as _main

    return _main(argv)
