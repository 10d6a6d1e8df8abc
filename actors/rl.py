"""The GSM8K RL run: rollout workers sample groups with the newest policy while the learner
takes GRPO steps on earlier groups; the evaluator scores its checkpoints.

    driver ── prompt indices + [weights ref, version] ──► rollout-i ── Arrow groups ──► buffer
       ▲                                                                                 │
       └── learner.weights(): newest (version, ref) ◄── learner (GRPO step, publish) ◄───┘
                                             checkpoints ──► evaluator (GSM8K test, bench)

Workers switch to the newest published version between batches; the buffer drops groups more
than `max_staleness` versions old, so rollout and training overlap with bounded off-policyness
(importance ratios against the recorded behaviour log-probs correct for the lag).
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

from actors.driver import Driver, drive, resolve_init_from, wait_ready
from minillm.config.rl import RLConfig


def load_records(cfg: RLConfig, spec: str, limit: int | None, split: str = "train") -> list[dict]:
    """GSM8K records of `spec`, or task-generator problems for `tasks:CATEGORY[:SUBTYPE]`
    (`limit` of them, default 5000; the eval spec draws the disjoint `test` split)."""
    from minillm.data.gsm8k import load_gsm8k

    if spec.startswith("tasks:"):
        from minillm.data.tasks import task_records

        return task_records(spec, limit or 5000, split)
    return load_gsm8k(spec, data_dir=cfg.data_dir, hf_endpoint=cfg.hf_endpoint, limit=limit)


def consumed_at_resume(cfg: RLConfig) -> set[int]:
    """Prompt indices the newest checkpoint's cursor holds (empty unless resuming)."""
    from minillm.train.state import find_checkpoint, load_state

    start = find_checkpoint(cfg.out_dir) if cfg.resume else None
    if start is None:
        return set()
    return set((load_state(start).cursor or {}).get("consumed", []))


class PromptCursor:
    """Prompt-stream indices to roll out next: 0, 1, 2, ... without those already consumed,
    and prompts handed back (their rollout was lost) first."""

    def __init__(self, consumed=()):
        self.consumed = set(consumed)
        self.next = 0
        self.todo: deque[int] = deque()

    def take(self, n: int) -> list[int]:
        out = []
        while len(out) < n:
            if self.todo:
                out.append(self.todo.popleft())
                continue
            i, self.next = self.next, self.next + 1
            if i not in self.consumed:
                out.append(i)
        return out

    def give_back(self, idx: list[int]) -> None:
        """Prompts whose rollout was lost (a dead worker): handed out again first, in order."""
        self.todo.extendleft(reversed([i for i in idx if i not in self.consumed]))


class FlatWarning:
    """Dynamic sampling drops groups whose rewards are all equal (a policy that gets every
    reply of most prompts wrong gives GRPO nothing to learn from). `__call__` takes a
    buffer.add reply: it says so once when > 90% of 20 steps' groups were dropped, and stops
    the run (DistillError, one line) after `limit_steps` steps' worth of groups in a row
    brought no informative one, instead of rolling out forever."""

    def __init__(self, groups_per_step: int, limit_steps: int = 50):
        self.groups_per_step, self.warned = groups_per_step, False
        self.limit = limit_steps * groups_per_step
        self.good, self.good_at = 0, 0  # informative groups so far; `added` when the last came

    def __call__(self, info: dict) -> None:
        from actors.driver import DistillError

        flat, added = info["flat"], info["added"]
        if added - flat > self.good:
            self.good, self.good_at = added - flat, added
        if added >= 20 * self.groups_per_step and flat / added > 0.9 and not self.warned:
            self.warned = True
            print(
                f"[rl] warning: {flat} of {added} groups had equal rewards and were dropped; the "
                "policy is too weak for this task: warm it up (--sft_steps) or pass "
                "--no_dynamic_sampling",
                flush=True,
            )
        if added - self.good_at >= self.limit:
            raise DistillError(
                f"the last {added - self.good_at} rollout groups all had equal rewards (every "
                "reply of each prompt right, or every one wrong), so GRPO has nothing to learn "
                "from; the run stopped. Start from a policy that solves some of the prompts "
                "(--sft_steps N for an SFT warm-up, or a better --init_from), use easier "
                "--data_path prompts, or pass --no_dynamic_sampling"
            )


def eval_line(res: dict) -> str:
    """One line of an evaluator result: step, GSM8K and bench accuracy."""
    parts = [f"step={res['step']}"]
    if "gsm8k_accuracy" in res:
        parts.append(f"gsm8k={res['gsm8k_accuracy']:.3f} (n={res['gsm8k_n']})")
    if "accuracy" in res:
        parts.append(f"bench={res['accuracy']:.3f} (n={res['n']})")
    return " ".join(parts)


def worker_args(cfg: RLConfig, index: int, records) -> tuple:
    """`RolloutWorker` constructor arguments (records: a list, or an object ref to one)."""
    return (index, cfg.init_from, records, cfg.samples_per_prompt, cfg.max_new_tokens,
            cfg.temperature, cfg.top_p, cfg.format_weight, cfg.seed, cfg.lang)  # fmt: skip


def learner_args(cfg: RLConfig, buffer) -> tuple:
    """`RLLearner` constructor arguments (buffer: an actor handle or a local source)."""
    return (buffer, cfg.train_dict(), cfg.grpo(), cfg.init_from, cfg.groups_per_step,
            cfg.max_steps, cfg.ref_from, cfg.resume)  # fmt: skip


def evaluator_args(cfg: RLConfig, eval_records: list[dict]) -> tuple:
    """`Evaluator` constructor arguments: the synthetic bench (RUN_BENCH), GSM8K (RUN_EVAL)."""
    return (cfg.bench_samples if cfg.run_bench else 0, 10_000, None, "both", 64, None,
            eval_records if cfg.run_eval else None, cfg.eval_max_new_tokens)  # fmt: skip


class RLRun(Driver):
    """One RL run inside an initialised Ray (see `run`)."""

    tag = "rl"

    def __init__(self, cfg: RLConfig, records: list[dict], eval_records: list[dict]):
        from actors.buffer import ReplayBuffer
        from actors.evaluator import Evaluator
        from actors.rl_learner import RLLearner
        from actors.rollout import RolloutWorker

        super().__init__(cfg)
        ray = self.ray
        self.buffer = (
            ray.remote(ReplayBuffer)
            .options(name="buffer", num_cpus=0, max_concurrency=8)
            .remote(cfg.samples_per_prompt, cfg.max_staleness, cfg.dynamic_sampling)
        )
        # kept on self: a restarted worker re-reads its constructor arguments from this object
        self.records_ref = recs = ray.put(records)
        self.workers = [
            ray.remote(RolloutWorker)
            .options(name=f"rollout-{i}", num_cpus=0, num_gpus=cfg.worker_gpus, max_restarts=-1)
            .remote(*worker_args(cfg, i, recs), gpu_memory=cfg.worker_gpu_memory)
            for i in range(cfg.workers)
        ]
        self.learner = (
            ray.remote(RLLearner)
            .options(
                name="learner",
                num_cpus=cfg.learner_cpus,
                num_gpus=cfg.learner_gpus,
                max_concurrency=4,
            )
            .remote(*learner_args(cfg, self.buffer), gpu_memory=cfg.learner_gpu_memory)
        )
        if cfg.run_eval or cfg.run_bench:
            self.evaluator = (
                ray.remote(Evaluator)
                .options(name="evaluator", num_cpus=0)
                .remote(*evaluator_args(cfg, eval_records), gpu_memory=cfg.eval_gpu_memory)
            )
        self.actors = [a for a in (self.buffer, *self.workers, self.learner, self.evaluator) if a]
        t = time.time()
        wait_ready(ray, [w.ping.remote() for w in self.workers], "rollout workers", "rl")
        print(f"[rl] {cfg.workers} rollout workers ready in {time.time() - t:.1f}s", flush=True)
        self.prompts = PromptCursor(consumed_at_resume(cfg))
        self.outstanding: dict[Any, tuple[int, list[int]]] = {}
        self.adds: dict[Any, int] = {}  # buffer.add refs -> prompts they carry
        self.weights: tuple[int, list] | None = None
        self.rollout_tokens, self.rollout_seconds = 0, 0.0
        self.rollout_stats: list[dict] = []
        self.reissued = 0
        self.buffered = 0
        self.good = 0  # informative groups added so far (sequential rounds count these)
        self.round_version: int | None = None
        self.round_good = 0
        self.warn_flat = FlatWarning(cfg.groups_per_step)

    def issue(self) -> None:
        """Hand prompts to idle workers. Overlapped (default): while buffered + in-flight
        groups stay under the cap. Sequential: one round of `groups_per_step` informative
        groups per policy version, started only once the learner published the next version."""
        cfg = self.cfg
        if self.weights is None:
            return
        version, ref = self.weights
        # at most one step ahead per version of allowed staleness: more would only go stale
        cap = cfg.max_buffer_groups or cfg.groups_per_step * max(1, cfg.max_staleness)
        for wi, w in enumerate(self.workers):
            if any(o[0] == wi for o in self.outstanding.values()):
                continue
            # prompts out for rollout, or rolled out and on their way into the buffer
            in_flight = sum(len(o[1]) for o in self.outstanding.values()) + sum(self.adds.values())
            n = cfg.prompts_per_rollout
            if cfg.sequential:
                got = self.good - self.round_good
                if self.round_version is None or (
                    got >= cfg.groups_per_step and version > self.round_version
                ):
                    self.round_version, self.round_good, got = version, self.good, 0
                need = cfg.groups_per_step - got - in_flight
                if need <= 0:
                    continue
                n = min(n, need)
            elif self.buffered + in_flight >= cap:
                continue
            idx = self.prompts.take(n)
            t, s = w.rollout.options(num_returns=2).remote(idx, ref, version)
            self.outstanding[s] = (wi, idx, t)

    def loop(self) -> dict:
        ray, cfg = self.ray, self.cfg
        t0 = time.time()
        train_ref = self.learner.run.remote()
        result, last_print, weights_ref = None, 0.0, None
        stats_ref, last_poll = None, 0.0
        while True:
            if weights_ref is None and stats_ref is None and time.time() - last_poll >= 0.25:
                weights_ref, stats_ref = self.learner.weights.remote(), self.buffer.stats.remote()
                last_poll = time.time()
            self.issue()
            waits = [*self.outstanding, *self.adds]
            waits += [r for r in (weights_ref, stats_ref) if r is not None]
            if result is None:
                waits.append(train_ref)
            ready, _ = ray.wait(waits, num_returns=1, timeout=0.2)
            for ref in ready:
                if ref in self.outstanding:
                    wi, idx, table = self.outstanding.pop(ref)
                    try:
                        st = ray.get(ref)
                    except ray.exceptions.RayActorError:
                        self.reissued += 1
                        self.prompts.give_back(idx)
                        continue
                    self.rollout_tokens += st["tokens"]
                    self.rollout_seconds += st["seconds"]
                    self.rollout_stats.append(st)
                    self.adds[self.buffer.add.remote(table)] = len(idx)
                elif ref in self.adds:
                    self.adds.pop(ref)
                    info = ray.get(ref)
                    self.buffered = info["depth"]
                    self.good = max(self.good, info["added"] - info["flat"])
                    self.warn_flat(info)
                elif ref == weights_ref:
                    w = ray.get(ref)
                    if w is not None:
                        self.weights = w
                    weights_ref = None
                elif ref == stats_ref:
                    info = ray.get(ref)
                    # a stats reply may predate an add reply seen already: counts only grow
                    self.buffered = info["depth"]
                    self.good = max(self.good, info["added"] - info["flat"])
                    stats_ref = None
                elif ref == train_ref:
                    result = self.learner_result(ref)
            self.maybe_eval()
            if time.time() - last_print >= cfg.status_interval_s:
                last_print = time.time()
                tok_s = self.rollout_tokens / max(time.time() - t0, 1e-9)
                print(
                    f"[rl] t={time.time() - t0:.0f}s version={self.weights[0] if self.weights else '-'} "
                    f"buffered={self.buffered} rollout_tok/s={tok_s:.0f}",
                    flush=True,
                )
            if result is not None:
                break
        for ref in list(self.outstanding):  # rollouts of a finished run are not needed
            ray.cancel(ref)
        self.release(self.learner, *self.workers)
        self.maybe_eval(final=True)
        return {
            "learner": {k: v for k, v in result.items() if k != "losses"},
            "losses": result["losses"],
            "evals": self.evals,
            "rollout_tok_s": self.rollout_tokens / max(self.rollout_seconds, 1e-9),
            "rollouts": self.rollout_stats,
            "reissued": self.reissued,
            "seconds": time.time() - t0,
        }

    def eval_every(self) -> int:
        """Once an iteration (`steps_per_iter`)."""
        return self.cfg.every

    def eval_line(self, res: dict) -> str:
        return eval_line(res)


def evaluate_start(cfg: RLConfig, eval_records: list[dict]) -> dict:
    """GSM8K accuracy of `init_from` before RL (in this process)."""
    from actors.evaluator import score_gsm8k
    from minillm.checkpoint import load

    model, tok = load(cfg.init_from)
    model.eval()
    return score_gsm8k(model, tok, eval_records, cfg.eval_max_new_tokens, lang=cfg.lang)


def prepare(cfg: RLConfig, eval_before: bool = False) -> tuple[list, list, dict | None]:
    """Before an RL run: refuse to overwrite one, resolve `init_from`, load the train and eval
    records, score the start when `eval_before`, write rl.json. Returns (records,
    eval_records, the start's score or None)."""
    out = Path(cfg.out_dir)
    if not cfg.resume and (out / "checkpoints").is_dir():
        raise ValueError(f"{out} already holds an RL run: pass --resume, or choose another out_dir")
    cfg.init_from = resolve_init_from(cfg.init_from)
    records = load_records(cfg, cfg.data_path, cfg.limit)
    eval_records = []
    if cfg.run_eval:
        eval_records = load_records(cfg, cfg.eval_data_path, cfg.gsm8k_eval_num or None, "test")
    before = evaluate_start(cfg, eval_records) if eval_before and eval_records else None
    if before:
        print(f"[eval] before RL: gsm8k={before['gsm8k_accuracy']:.3f} (n={before['gsm8k_n']})")
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "rl.json")
    return records, eval_records, before


def run(cfg: RLConfig, eval_before: bool = False) -> dict:
    """An RL run to `max_steps`; starts (and stops) a local Ray unless one is running."""
    from minillm.rl.plots import plot_rl

    records, eval_records, before = prepare(cfg, eval_before)
    out = Path(cfg.out_dir)
    return drive(
        RLRun, cfg, records, eval_records, plot=lambda: plot_rl(out), extra={"before": before}
    )
