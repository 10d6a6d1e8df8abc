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
    from minillm.eval.greedy import greedy_replies

    convs = [[{"role": "system", "content": t.system}, {"role": "user", "content": t.prompt}] for t in tasks]  # fmt: skip
    gens = greedy_replies(model, tok, convs, max_new_tokens, batch_size)
    ok, n = Counter(), Counter()
    for t, g in zip(tasks, gens, strict=True):
        n[t.category] += 1
        ok[t.category] += bool(verify(t, g.text))
    total = sum(n.values())
    return {
        "accuracy": sum(ok.values()) / max(total, 1),
        "n": total,
        "per_category": {c: ok[c] / n[c] for c in sorted(n)},
    }


def score_gsm8k(model, tok, records: list[dict], max_new_tokens: int = 256, batch_size: int = 64,
                lang: str = "en") -> dict:  # fmt: skip
    """Greedy GSM8K accuracy: the extracted final number equals the record's target."""
    from minillm.data.gsm8k import extract_answer, record_messages, same_number
    from minillm.eval.greedy import greedy_replies

    convs = [record_messages(r, lang) for r in records]
    gens = greedy_replies(model, tok, convs, max_new_tokens, batch_size)
    ok = sum(
        same_number(extract_answer(g.text), r["target"]) for r, g in zip(records, gens, strict=True)
    )
    return {"gsm8k_accuracy": ok / max(len(records), 1), "gsm8k_n": len(records)}


class Evaluator:
    """Scores checkpoints on one fixed held-out suite (built once) and, when given, GSM8K
    test records."""

    def __init__(
        self,
        n: int = 64,
        seed: int = 10_000,
        weights: dict | None = None,
        lang: str = "both",
        max_new_tokens: int = 64,
        exclude: set[str] | None = None,
        gsm8k: list[dict] | None = None,
        gsm8k_max_new_tokens: int = 256,
        batch_size: int = 64,
        gpu_memory: float | None = None,
    ):
        from minillm.gpu_memory import cap

        cap(gpu_memory, "eval_gpu_memory")
        self.tasks = held_out_suite(n, seed, weights, lang, exclude) if n else []
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.gsm8k, self.gsm8k_max_new_tokens = gsm8k or [], gsm8k_max_new_tokens
        self.metrics = Metrics()

    def evaluate(self, checkpoint: str) -> dict:
        """Accuracy of `checkpoint` (a folder); the step is read from its state.json if any."""
        import json

        import mlx.core as mx

        from minillm.checkpoint import load

        path = Path(checkpoint)
        model, tok = load(path)
        model.eval()
        bs = self.batch_size
        res = score(model, tok, self.tasks, self.max_new_tokens, bs) if self.tasks else {}
        if self.gsm8k:
            res.update(score_gsm8k(model, tok, self.gsm8k, self.gsm8k_max_new_tokens, bs))
            self.metrics.set("minillm_gsm8k_accuracy", res["gsm8k_accuracy"])
        del model
        mx.clear_cache()  # idle between checkpoints: leave the GPU to the learner
        state = path / "state.json"
        step = json.loads(state.read_text())["step"] if state.is_file() else None
        if "accuracy" in res:
            self.metrics.set("minillm_eval_accuracy", res["accuracy"], category="all")
        for c, a in res.get("per_category", {}).items():
            self.metrics.set("minillm_eval_accuracy", a, category=c)
        return {"checkpoint": str(path), "step": step, **res}
