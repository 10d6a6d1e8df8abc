"""GRPO in one process, without Ray: the same `RolloutWorker`, `ReplayBuffer`, `RLLearner` and
`Evaluator` classes as the actor system, driven in turn (roll out with the newest weights, then
train on those groups), so every step is on-policy.

This is `python launch/rl.py --local`: for a single GPU box without a Ray install, for quick
experiments, and for the learning test. Rollout and training do not overlap here; the Ray run
(`actors/rl.py`) is the one that overlaps them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from actors.rl import RLConfig, prepare


class LocalRollouts:
    """The learner's `buffer`: `take(n, version)` rolls out fresh groups with the newest
    published weights until `n` informative groups are buffered, then hands them over. At each
    iteration boundary it scores the checkpoint the learner just saved."""

    def __init__(self, cfg: RLConfig, worker, buffer, evaluator=None, consumed=()):
        self.cfg, self.worker, self.buffer, self.evaluator = cfg, worker, buffer, evaluator
        self.learner = None  # set by run_local before training starts
        self.consumed = set(consumed)
        self.next_prompt = 0
        self.rollout_stats: list[dict] = []
        self.evals: list[dict] = []
        self.evaluated: set[int] = set()
        self.warned = False
        self.log = None

    def take_prompts(self, n: int) -> list[int]:
        out = []
        while len(out) < n:
            i = self.next_prompt
            self.next_prompt += 1
            if i not in self.consumed:
                out.append(i)
        return out

    def take(self, n: int, version: int, timeout: float = 0.0) -> dict:
        self.maybe_eval(version)
        while self.buffer.depth() < n:
            pub_version, weights = self.learner.weights()
            k = min(self.cfg.prompts_per_rollout, n - self.buffer.depth())
            table, st = self.worker.rollout(self.take_prompts(k), weights, pub_version)
            self.rollout_stats.append(st)
            info = self.buffer.add(table)
            self.warn_flat(info)
        return self.buffer.take(n, version, 0.0)

    def warn_flat(self, info: dict) -> None:
        flat, added = info["flat"], info["added"]
        if added >= 20 * self.cfg.groups_per_step and flat / added > 0.9 and not self.warned:
            self.warned = True
            print(
                f"[rl] warning: {flat} of {added} groups had equal rewards and were dropped; the "
                "policy is too weak for this task: warm it up (--warmup_steps) or pass "
                "--no_dynamic_sampling",
                flush=True,
            )

    def maybe_eval(self, step: int, final: bool = False) -> None:
        from minillm.train.state import list_checkpoints

        if self.evaluator is None or step in self.evaluated or step == 0:
            return
        if not final and step % self.cfg.steps_per_iter:
            return
        path = dict(list_checkpoints(self.cfg.out_dir)).get(step)
        if path is None:
            return
        self.evaluated.add(step)
        res = self.evaluator.evaluate(str(path))
        self.evals.append(res)
        parts = [f"step={res['step']}"]
        if "gsm8k_accuracy" in res:
            parts.append(f"gsm8k={res['gsm8k_accuracy']:.3f} (n={res['gsm8k_n']})")
        if "accuracy" in res:
            parts.append(f"bench={res['accuracy']:.3f} (n={res['n']})")
        print("[eval] " + " ".join(parts), flush=True)
        if self.log is not None:
            self.log.write({"event": "eval", **res, "time": time.time()})


def run_local(cfg: RLConfig, eval_before: bool = False) -> dict:
    """An on-policy GRPO run to `max_steps` in this process (no Ray)."""
    from actors.buffer import ReplayBuffer
    from actors.evaluator import Evaluator
    from actors.rl_learner import RLLearner
    from actors.rollout import RolloutWorker
    from minillm.train.loop import MetricsLog
    from minillm.train.state import find_checkpoint, load_state

    records, eval_records, before = prepare(cfg, eval_before)
    consumed = set()
    start = find_checkpoint(cfg.out_dir) if cfg.resume else None
    if start is not None:
        consumed = set((load_state(start).cursor or {}).get("consumed", []))
    t0 = time.time()
    worker = RolloutWorker(
        0, cfg.init_from, records, cfg.samples_per_prompt, cfg.max_new_tokens, cfg.temperature,
        cfg.top_p, cfg.format_weight, cfg.seed, cfg.lang,
    )  # fmt: skip
    buffer = ReplayBuffer(cfg.samples_per_prompt, cfg.max_staleness, cfg.dynamic_sampling)
    evaluator = None
    if cfg.run_eval or cfg.run_bench:
        evaluator = Evaluator(
            cfg.bench_samples if cfg.run_bench else 0, 10_000, None, "both", 64, None,
            eval_records if cfg.run_eval else None, cfg.eval_max_new_tokens,
        )  # fmt: skip
    source = LocalRollouts(cfg, worker, buffer, evaluator, consumed)
    source.log = MetricsLog(Path(cfg.out_dir))
    learner = RLLearner(
        source, cfg.train, cfg.grpo(), cfg.init_from, cfg.groups_per_step,
        cfg.train["max_steps"], cfg.ref_from, cfg.resume,
    )  # fmt: skip
    source.learner = learner
    result = learner.run()
    source.maybe_eval(result["step"], final=True)
    rollout_s = sum(s["seconds"] for s in source.rollout_stats)
    res = {
        "learner": {k: v for k, v in result.items() if k != "losses"},
        "losses": result["losses"],
        "evals": source.evals,
        "rollout_tok_s": sum(s["tokens"] for s in source.rollout_stats) / max(rollout_s, 1e-9),
        "rollouts": source.rollout_stats,
        "reissued": 0,
        "seconds": time.time() - t0,
        "before": before,
    }
    try:
        from minillm.rl.plots import plot_rl

        res["plots"] = [str(p) for p in plot_rl(Path(cfg.out_dir))]
    except (FileNotFoundError, ValueError) as e:
        print(f"[rl] no plots: {e}", file=sys.stderr)
    return res
