"""The distillation run: teacher generators stream verified samples through the shard store
into the learner while it trains; the evaluator scores its checkpoints.

    driver ── lease (task block) ──► generator-i ── Arrow table ref ──► shards (commit)
       ▲                                                                   │ manifest
       └── learner.status() (rows consumed: backpressure) ◄── learner ◄────┘
                                   checkpoints ──► evaluator

The driver hands out leases (blocks of `lease_size` task indices), at most two per generator,
and only while the learner's backlog (rows committed, not yet trained on) is below `max_lag`.
A generator that dies is restarted by Ray (`max_restarts=-1`) and its lease re-issued; the
store ignores a lease it already holds, so nothing is lost or written twice.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from actors.driver import (
    ActorDied,
    DistillError,
    Driver,
    drive,
    resolve_init_from,
    summary,
    wait_ready,
    with_resume,
)
from actors.driver import init_ray as init_ray  # imported from here by launchers and tests
from actors.driver import runtime_env as runtime_env
from minillm.config.distill import TEACHERS as TEACHERS
from minillm.config.distill import DistillConfig


def _kinds(c: Counter) -> str:
    """`(http_5xx=3,timeout=1)` for a non-empty counter, else ''."""
    return "(" + ",".join(f"{k}={v}" for k, v in sorted(c.items())) + ")" if c else ""


def check_teacher(cfg: DistillConfig) -> dict:
    """Reach the teacher once before starting anything (raises TeacherError with the fix)."""
    from actors.generator import build_teacher
    from minillm.teacher import TeacherError

    t = build_teacher(cfg.teacher_spec())
    try:
        return t.check()
    except TeacherError as e:
        raise DistillError(f"{e} (or use --teacher oracle for an offline run)") from None
    finally:
        t.close()


class Run(Driver):
    """One distillation run inside an initialised Ray (see `run`)."""

    tag = "distill"

    def __init__(self, cfg: DistillConfig):
        from actors.evaluator import Evaluator
        from actors.generator import TeacherGenerator
        from actors.learner import Learner
        from actors.shards import ShardStore

        super().__init__(cfg)
        ray = self.ray
        self.store = (
            ray.remote(ShardStore)
            .options(name="shards", num_cpus=0, max_restarts=-1)
            .remote(str(cfg.shard_dir), cfg.task_config(), cfg.total_samples, cfg.data_jsonl)
        )
        self.gens = [
            ray.remote(TeacherGenerator)
            .options(name=f"generator-{i}", num_cpus=0, max_restarts=-1, max_concurrency=2)
            .remote(i, cfg.teacher_spec(), cfg.task_config(), cfg.inflight)
            for i in range(cfg.workers)
        ]
        self.learner = (
            None
            if not cfg.learner
            else (
                ray.remote(Learner)
                .options(
                    name="learner",
                    num_cpus=cfg.learner_cpus,
                    num_gpus=cfg.learner_gpus,
                    max_concurrency=4,
                )
                .remote(
                    str(cfg.shard_dir),
                    cfg.train_dict(),
                    cfg.model.to_dict(),
                    cfg.init_from,
                    cfg.resume,
                    cfg.cold_samples,
                    cfg.total_steps(),
                    cfg.tokenizer_path,
                    reuse=cfg.reuse,
                    reuse_window=cfg.reuse_window,
                    bucket_sizes=cfg.bucket_sizes,
                    gpu_memory=cfg.learner_gpu_memory,
                )
            )
        )
        self.evaluator = (
            ray.remote(Evaluator)
            .options(name="evaluator", num_cpus=0)
            .remote(
                cfg.eval_samples,
                cfg.eval_seed,
                cfg.weights,
                cfg.lang,
                cfg.eval_max_new_tokens,
                batch_size=cfg.eval_batch_size,
                gpu_memory=cfg.eval_gpu_memory,
            )
            if cfg.eval_samples and cfg.learner
            else None
        )
        self.actors = [a for a in (self.store, *self.gens, self.learner, self.evaluator) if a]
        t = time.time()
        wait_ready(ray, [g.ping.remote() for g in self.gens], "generators", "distill")
        print(f"[distill] {cfg.workers} generators ready in {time.time() - t:.1f}s", flush=True)
        summary = ray.get(self.store.summary.remote())
        done = set(ray.get(self.store.leases_done.remote()))
        self.committed, self.closed = summary["rows"], summary["closed"]
        self.counts = {k: Counter(summary[k]) for k in ("accepted", "rejected", "errors")}
        self.duplicates = summary["duplicates"]
        top = max(done, default=-1)
        self.todo = deque(i for i in range(top) if i not in done)  # gaps a crash left
        self.next_lease = top + 1
        self.outstanding: dict[Any, tuple[int, int, Any]] = {}  # stats ref -> (gen, lease, table)
        self.per_gen = Counter()
        self.cooldown: dict[int, float] = {}
        self.commits: dict[Any, int] = {}
        self.reissued = 0
        self.retries: Counter = Counter()  # teacher retries by reason (503, timeout, ...)
        self.rejects: Counter = Counter()  # rejected replies by reason (wrong, empty, think_leak)
        self.consumed = 0
        self.timed_out = False
        self.learner_done = False
        self.store_closed = summary["closed"]

    # ---- leases
    def tasks_left(self) -> bool:
        """Whether `max_tasks` (0: no limit) leaves a lease to hand out."""
        return (
            bool(self.todo)
            or not self.cfg.max_tasks
            or (self.next_lease * self.cfg.lease_size < self.cfg.max_tasks)
        )

    def can_issue(self) -> bool:
        cfg = self.cfg
        if self.closed or self.learner_done or not self.tasks_left():
            return False
        if cfg.max_failures and sum(self.counts["errors"].values()) >= cfg.max_failures:
            return False
        in_flight = len(self.outstanding) * cfg.lease_size
        backlog = self.committed + in_flight - self.consumed
        return backlog < max(cfg.max_lag, cfg.cold_samples + cfg.lease_size * cfg.workers)

    def issue(self) -> None:
        now = time.time()
        for gi, gen in enumerate(self.gens):
            if self.cooldown.get(gi, 0) > now:  # restarting after a crash
                continue
            while self.per_gen[gi] < 2 and self.can_issue():
                lease = self.todo.popleft() if self.todo else self.next_lease
                if lease == self.next_lease:
                    self.next_lease += 1
                start = lease * self.cfg.lease_size
                stats_ref_table = gen.generate.options(num_returns=2).remote(
                    lease, start, self.count(lease)
                )
                table_ref, stats_ref = stats_ref_table
                self.outstanding[stats_ref] = (gi, lease, table_ref)
                self.per_gen[gi] += 1

    def count(self, lease: int) -> int:
        """Tasks in `lease`: `lease_size`, less at the end of `max_tasks`."""
        size, cap = self.cfg.lease_size, self.cfg.max_tasks
        return min(size, cap - lease * size) if cap else size

    def on_generated(self, ref) -> None:
        gi, lease, table_ref = self.outstanding.pop(ref)
        self.per_gen[gi] -= 1
        try:
            stats = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:
            self.reissued += 1
            self.metrics.inc("minillm_leases_reissued")
            print(
                f"[distill] generator-{gi} died ({type(e).__name__}); lease {lease} re-issued",
                flush=True,
            )
            self.todo.appendleft(lease)
            self.cooldown[gi] = time.time() + 1.0
            return
        self.retries.update(stats.get("retries_by_reason") or {})
        self.rejects.update(stats.get("rejected_by_reason") or {})
        start = lease * self.cfg.lease_size
        c = self.store.commit.remote(lease, start, self.count(lease), table_ref, stats)
        self.commits[c] = lease

    def on_committed(self, ref) -> None:
        lease = self.commits.pop(ref)
        try:
            entry = self.ray.get(ref)
        except self.ray.exceptions.RayActorError:  # the store restarted: the lease is not in
            self.todo.appendleft(lease)  # its manifest, so generate it again
            return
        if entry is None or entry.get("repeat"):
            return
        self.committed += entry["rows"]
        self.duplicates += entry["duplicates"]
        for k in ("accepted", "rejected", "errors"):
            self.counts[k].update(entry[k])
        self.metrics.inc("minillm_samples_committed", entry["rows"])
        self.metrics.inc("minillm_samples_duplicate", entry["duplicates"])
        if self.cfg.total_samples and self.committed >= self.cfg.total_samples:
            self.closed = True

    # ---- evaluation
    def eval_every(self) -> int:
        """Every `eval_interval` steps, default `save_interval`."""
        return self.cfg.eval_interval or self.cfg.train.save_interval or 0

    @staticmethod
    def eval_line(res: dict) -> str:
        per = " ".join(f"{c}={a:.2f}" for c, a in res["per_category"].items())
        return f"step={res['step']} accuracy={res['accuracy']:.3f} n={res['n']} {per}"

    # ---- main loop
    def status_line(self, t0: float, st: dict) -> str:
        a, r, e = (sum(self.counts[k].values()) for k in ("accepted", "rejected", "errors"))
        rate = self.committed / max(time.time() - t0, 1e-9)
        return (
            f"[distill] t={time.time() - t0:.0f}s committed={self.committed} ({rate:.1f}/s) "
            f"accepted={a} rejected={r}{_kinds(self.rejects)} dup={self.duplicates} errors={e}{_kinds(self.counts['errors'])} "
            f"retries={sum(self.retries.values())}{_kinds(self.retries)} "
            f"leaks={self.rejects['think_leak']} reissued={self.reissued} "
            f"step={st.get('step', 0)} consumed={self.consumed} lag={self.committed - self.consumed} "
            f"wait={100 * st.get('wait_fraction', 0.0):.1f}%"
        )

    def status_record(self, t0: float, st: dict) -> dict:
        """The status line as a metrics.jsonl record (event "distill")."""
        return {
            "event": "distill",
            "seconds": round(time.time() - t0, 2),
            "committed": self.committed,
            **{k: sum(self.counts[k].values()) for k in ("accepted", "rejected", "errors")},
            "errors_by_kind": dict(self.counts["errors"]),
            "retries": sum(self.retries.values()),
            "retries_by_reason": dict(self.retries),
            "rejected_by_reason": dict(self.rejects),
            "think_leaks": self.rejects["think_leak"],
            "reissued": self.reissued,
            "duplicates": self.duplicates,
            "consumed": self.consumed,
            **{k: st[k] for k in ("step", "reused", "wait_fraction", "tok_s") if k in st},
            "time": time.time(),
        }

    def loop(self) -> dict:
        ray, cfg = self.ray, self.cfg
        t0 = time.time()
        train_ref = self.learner.run.remote() if self.learner else None
        status_ref, st, last_print, last_status = None, {}, 0.0, 0.0
        result = None
        while True:
            if self.learner is None:  # generate only: nothing to wait for downstream
                self.consumed = self.committed
            self.issue()
            if self.learner and status_ref is None and time.time() - last_status >= 0.5:
                status_ref, last_status = self.learner.status.remote(), time.time()
            waits = [*self.outstanding, *self.commits] + [status_ref] * (status_ref is not None)
            if result is None and train_ref is not None:
                waits.append(train_ref)
            if waits:
                ready, _ = ray.wait(waits, num_returns=1, timeout=0.2)
            else:
                ready = []
                time.sleep(0.05)
            for ref in ready:
                if ref in self.outstanding:
                    self.on_generated(ref)
                elif ref in self.commits:
                    self.on_committed(ref)
                elif ref == status_ref:
                    st, status_ref = ray.get(ref), None
                    self.consumed = st["consumed"]
                    self.metrics.set("minillm_buffer_depth", self.committed - self.consumed)
                elif ref == train_ref:
                    result = self.learner_result(ref)
                    self.learner_done = True
            if cfg.max_seconds and not self.timed_out and time.time() - t0 >= cfg.max_seconds:
                self.timed_out = True  # the learner saves a checkpoint after its current step
                print(f"[distill] --max_seconds {cfg.max_seconds:g} reached: stopping", flush=True)
                self.closed = True
                if self.learner:
                    self.learner.stop.remote()
            failed = cfg.max_failures and sum(self.counts["errors"].values()) >= cfg.max_failures
            if failed and self.learner:
                self.learner.stop.remote()
            finished = self.closed or not self.tasks_left()
            if finished and not self.outstanding and not self.commits and not self.store_closed:
                ray.get(self.store.close.remote())
                self.store_closed = True
            self.maybe_eval()
            if time.time() - last_print >= cfg.status_interval_s:
                last_print = time.time()
                print(self.status_line(t0, st), flush=True)
                self.log.write(self.status_record(t0, st))
            idle = not self.outstanding and not self.commits
            if idle and (
                result is not None or (self.learner is None and (self.store_closed or failed))
            ):
                break
        if self.learner:
            st = ray.get(self.learner.status.remote())
            self.release(self.learner)
        self.maybe_eval(final=True)
        errors = sum(self.counts["errors"].values())
        if cfg.max_failures and errors >= cfg.max_failures:
            raise DistillError(
                f"the teacher failed {errors} times ({dict(self.counts['errors'])}); the run "
                "stopped at its last checkpoint. Check the teacher, then --resume (or raise "
                "--max_failures; 0 = unlimited)"
            )
        final = ray.get(self.store.summary.remote())
        print(self.status_line(t0, st), flush=True)
        self.log.write(self.status_record(t0, st))
        result = result or {"losses": []}
        return {
            "learner": {k: v for k, v in result.items() if k != "losses"},
            "losses": result["losses"],
            "store": final,
            "reissued": self.reissued,
            "retries": sum(self.retries.values()),
            "retries_by_reason": dict(self.retries),
            "rejected_by_reason": dict(self.rejects),
            "think_leaks": self.rejects["think_leak"],
            "evals": self.evals,
            "seconds": time.time() - t0,
            "timed_out": self.timed_out,
        }


def run(cfg: DistillConfig) -> dict:
    """Run a distillation to its end; starts (and stops) a local Ray unless one is running."""
    out = Path(cfg.out_dir)
    if not cfg.resume and (
        (cfg.shard_dir / "manifest.json").is_file() or (out / "checkpoints").is_dir()
    ):
        raise ValueError(
            f"{out} already holds a distillation run: pass --resume to continue it, or choose another out_dir"
        )
    from minillm.train.plots import plot_run

    if cfg.init_from:
        cfg.init_from = resolve_init_from(cfg.init_from)
    if cfg.teacher != "oracle":
        info = check_teacher(cfg)
        print(
            f"[distill] teacher {cfg.teacher} ok: {json.dumps(info, default=str)[:200]}", flush=True
        )
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "distill.json")
    return drive(Run, cfg, plot=(lambda: plot_run(out)) if cfg.learner else None)


def launch(cfg: DistillConfig, argv: list[str], prog: str = "minillm distill") -> int:
    """Run `cfg` (checked) and print the done line and the summary block; an actor's death
    becomes one line with the command that continues the run."""
    try:
        res = run(cfg)
    except ActorDied as e:
        raise with_resume(e, cfg.out_dir, prog, argv) from None
    store = res["store"]
    done = {
        "step": res["learner"].get("step"),
        "rows": store["rows"],
        "accepted": store["accepted"],
        "rejected": store["rejected"],
        "duplicates": store["duplicates"],
        "errors": store["errors"],
        "reissued": res["reissued"],
        "last_eval": res["evals"][-1]["accuracy"] if res["evals"] else None,
        "timed_out": res["timed_out"],
        "seconds": round(res["seconds"], 1),
    }
    print("[distill] done " + json.dumps(done, ensure_ascii=False), flush=True)
    held = [Run.eval_line(e) for e in res["evals"][-1:]]
    print(summary("distill", cfg.out_dir, res, held), flush=True)
    return 0
