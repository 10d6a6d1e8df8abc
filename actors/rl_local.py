"""GRPO in one process, without Ray: the same `RolloutWorker`, `ReplayBuffer`, `RLLearner` and
`Evaluator` classes as the actor system, driven in turn (roll out with the newest weights, then
train on those groups), so every step is on-policy.

This is `python launch/rl.py --local`: for a single GPU box without a Ray install, for quick
experiments, and for the learning test. Rollout and training do not overlap here; the Ray run
(`actors/rl.py`) is the one that overlaps them.
"""

from __future__ import annotations

import time
from pathlib import Path

from actors.driver import add_plots
from actors.rl import (
    FlatWarning,
    PromptCursor,
    RLConfig,
    consumed_at_resume,
    eval_line,
    evaluator_args,
    learner_args,
    prepare,
    worker_args,
)


class LocalRollouts:
    """The learner's `buffer`: `take(n, version)` rolls out fresh groups with the newest
    published weights until `n` informative groups are buffered, then hands them over. At each
    iteration boundary it scores the checkpoint the learner just saved."""

    def __init__(self, cfg: RLConfig, worker, buffer, evaluator=None, consumed=()):
        self.cfg, self.worker, self.buffer, self.evaluator = cfg, worker, buffer, evaluator
        self.learner = None  # set by run_local before training starts
        self.prompts = PromptCursor(consumed)
        self.rollout_stats: list[dict] = []
        self.evals: list[dict] = []
        self.evaluated: set[int] = set()
        self.warn_flat = FlatWarning(cfg.groups_per_step)
        self.log = None

    def take(self, n: int, version: int, timeout: float = 0.0) -> dict:
        self.maybe_eval(version)
        while self.buffer.depth() < n:
            pub_version, weights = self.learner.weights()
            k = min(self.cfg.prompts_per_rollout, n - self.buffer.depth())
            table, st = self.worker.rollout(self.prompts.take(k), weights, pub_version)
            self.rollout_stats.append(st)
            info = self.buffer.add(table)
            self.warn_flat(info)
        return self.buffer.take(n, version, 0.0)

    def maybe_eval(self, step: int, final: bool = False) -> None:
        from minillm.checkpoint import list_checkpoints

        if self.evaluator is None or step in self.evaluated or step == 0:
            return
        if not final and step % self.cfg.every:
            return
        path = dict(list_checkpoints(self.cfg.out_dir)).get(step)
        if path is None:
            return
        self.evaluated.add(step)
        res = self.evaluator.evaluate(str(path))
        self.evals.append(res)
        print(f"[eval] {eval_line(res)}", flush=True)
        if self.log is not None:
            self.log.write({"event": "eval", **res, "time": time.time()})


def run_local(cfg: RLConfig, eval_before: bool = False) -> dict:
    """An on-policy GRPO run to `max_steps` in this process (no Ray)."""
    from actors.buffer import ReplayBuffer
    from actors.evaluator import Evaluator
    from actors.rl_learner import RLLearner
    from actors.rollout import RolloutWorker
    from minillm.rl.plots import plot_rl
    from minillm.train.metrics import MetricsLog

    records, eval_records, before = prepare(cfg, eval_before)
    t0 = time.time()
    worker = RolloutWorker(*worker_args(cfg, 0, records))
    buffer = ReplayBuffer(cfg.samples_per_prompt, cfg.max_staleness, cfg.dynamic_sampling)
    evaluator = None
    if cfg.run_eval or cfg.run_bench:
        evaluator = Evaluator(*evaluator_args(cfg, eval_records))
    source = LocalRollouts(cfg, worker, buffer, evaluator, consumed_at_resume(cfg))
    source.log = MetricsLog(Path(cfg.out_dir))
    learner = RLLearner(*learner_args(cfg, source))
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
    add_plots(res, lambda: plot_rl(Path(cfg.out_dir)), "rl")
    return res
