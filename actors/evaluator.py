"""`Evaluator`: greedy accuracy of a checkpoint on a held-out synthetic suite.

The suite is drawn from the same task generators with another seed (`eval_seed`), so its
prompts are not the training prompts (and any that collide by chance are left out when the
training shards are given), and scored by each task's verifier.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from actors.metrics import Metrics
from minillm.data.tasks import Task, TaskSource, verify


def held_out_suite(
    n: int,
    seed: int,
    weights: dict | None = None,
    lang: str = "both",
    exclude: set[str] | None = None,
) -> list[Task]:
    """`n` tasks of `TaskSource(seed)` whose prompt hash is not in `exclude`."""
    src, out, i = TaskSource(seed, weights, lang), [], 0
    while len(out) < n:
        t = src.draw(i)
        i += 1
        if not exclude or t.id not in exclude:
            out.append(t)
    return out


def score(model, tok, tasks: list[Task], max_new_tokens: int = 64, batch_size: int = 16) -> dict:
    """Greedy replies to `tasks` (system + user prompt); accuracy overall and per category."""
    from minillm.generate import generate

    ok, n = Counter(), Counter()
    for b in range(0, len(tasks), batch_size):
        chunk = tasks[b : b + batch_size]
        prompts = [
            tok.apply_chat_template(
                [{"role": "system", "content": t.system}, {"role": "user", "content": t.prompt}],
                add_generation_prompt=True,
                tokenize=True,
            )
            for t in chunk
        ]
        gens = generate(model, tok, prompts, max_new_tokens=max_new_tokens, temperature=0.0)
        for t, g in zip(chunk, gens, strict=True):
            n[t.category] += 1
            ok[t.category] += bool(verify(t, g.text))
    total = sum(n.values())
    return {
        "accuracy": sum(ok.values()) / max(total, 1),
        "n": total,
        "per_category": {c: ok[c] / n[c] for c in sorted(n)},
    }


class Evaluator:
    """Scores checkpoints on one fixed held-out suite (built once)."""

    def __init__(
        self,
        n: int = 64,
        seed: int = 10_000,
        weights: dict | None = None,
        lang: str = "both",
        max_new_tokens: int = 64,
        exclude: set[str] | None = None,
    ):
        self.tasks = held_out_suite(n, seed, weights, lang, exclude)
        self.max_new_tokens = max_new_tokens
        self.metrics = Metrics()

    def evaluate(self, checkpoint: str) -> dict:
        """Accuracy of `checkpoint` (a folder); the step is read from its state.json if any."""
        import json

        from minillm.checkpoint import load

        path = Path(checkpoint)
        model, tok = load(path)
        model.eval()
        res = score(model, tok, self.tasks, self.max_new_tokens)
        state = path / "state.json"
        step = json.loads(state.read_text())["step"] if state.is_file() else None
        self.metrics.set("minillm_eval_accuracy", res["accuracy"], category="all")
        for c, a in res["per_category"].items():
            self.metrics.set("minillm_eval_accuracy", a, category=c)
        return {"checkpoint": str(path), "step": step, **res}
