"""Evaluation: how good a model's answers are.

perplexity.py  `minillm eval`: token-weighted loss and perplexity on JSONL data
verify.py      the one rule for `<think>` blocks, answer extraction and number comparison,
               used by the task verifier, the teacher, the evaluator and the bench
"""


def main(argv: list[str] | None = None) -> int:
    """`minillm eval` (minillm/eval/perplexity.py)."""
    from minillm.eval.perplexity import main as _main

    return _main(argv)
