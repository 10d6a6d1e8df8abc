"""Distillation scaling: generator throughput for 1, 2, 4, 8 workers, and how long the learner
waits for data, on one local Ray instance.

    python launch/bench_distill.py [--workers 1,2,4,8] [--latency_s 1.0] [--inflight 4]
    python launch/bench_distill.py --ollama_url http://127.0.0.1:11500 --ollama_model stage_a:latest

With --ollama_url the teacher is that Ollama-API server (e.g. `minillm serve` of a checkpoint)
instead of the simulated one; the table then adds accepted, rejected, failed and retried
requests per worker count. --json writes the rows to a file.

The teacher is the oracle with a simulated latency of `latency_s` ± 50% per request (what a
served 0.6B-model answer of a few hundred tokens takes), behind the real generator actors,
shard store and driver; each worker keeps `inflight` requests open, as against an Ollama
server with OLLAMA_NUM_PARALLEL >= workers x inflight (or several servers). Throughput is
committed rows per second from the moment all generators are up; scaling efficiency is the
speedup over one worker divided by the worker count. Then one full run with the largest worker
count and a learner (a small model on this machine) reports the share of wall time after the
cold start the learner spent waiting for data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SMALL = {
    "preset": "custom",
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 384,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", default="1,2,4,8")
    p.add_argument("--latency_s", type=float, default=1.0)
    p.add_argument("--inflight", type=int, default=4)
    p.add_argument("--rounds", type=int, default=8, help="requests per open slot per run")
    p.add_argument("--learner_steps", type=int, default=60)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--num_cpus", type=int, default=None)
    p.add_argument("--ollama_url", default=None, help="a real Ollama-API teacher")
    p.add_argument("--ollama_model", default=None)
    p.add_argument("--max_new_tokens", type=int, default=160, help="teacher reply limit")
    p.add_argument("--no_learner", action="store_true", help="skip the learner-waiting run")
    p.add_argument("--json", default=None, help="also write the table's rows here")
    ns = p.parse_args(argv)

    import ray

    from actors.distill import DistillConfig, run, runtime_env
    from actors.driver import local_gpus

    real = ns.ollama_url is not None
    teacher = (
        dict(teacher="ollama", ollama_url=ns.ollama_url, ollama_model=ns.ollama_model,
             max_new_tokens=ns.max_new_tokens, max_failures=0)
        if real
        else dict(teacher="oracle", oracle_delay_s=ns.latency_s)
    )  # fmt: skip
    ray.init(
        num_cpus=ns.num_cpus,
        num_gpus=local_gpus(),
        namespace="minillm",
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        runtime_env=runtime_env(),
    )
    workers = [int(w) for w in ns.workers.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in workers:
            tasks = w * ns.inflight * ns.rounds
            cfg = DistillConfig(
                out_dir=f"{tmp}/gen{w}",
                **teacher,
                task_seed=1000 + w,  # fresh prompts per run (a real teacher may cache)
                workers=w,
                inflight=ns.inflight,
                lease_size=ns.inflight * 2,
                max_tasks=tasks,
                total_samples=0,
                learner=False,
                status_interval_s=1e9,
            )
            res = run(cfg)
            st = res["store"]
            rate = st["tasks"] / res["seconds"]
            faults = (sum(st["accepted"].values()), sum(st["rejected"].values()),
                      sum(st["errors"].values()), res["retries"])  # fmt: skip
            rows.append((w, tasks, res["seconds"], rate, *faults))
            print(f"[bench] workers={w} tasks={tasks} {res['seconds']:.1f}s {rate:.1f} rows/s "
                  f"accepted/rejected/failed/retried={faults}", flush=True)  # fmt: skip
        if ns.no_learner:
            ray.shutdown()
            return report(ns, rows, None)
        w = workers[-1]
        cfg = DistillConfig(
            out_dir=f"{tmp}/learn",
            **teacher,
            workers=w,
            inflight=ns.inflight,
            lease_size=ns.inflight * 2,
            cold_samples=64,
            total_samples=0,
            model=SMALL,
            train=dict(
                dtype="float32",
                seq_len=256,
                batch_size=ns.batch_size,
                max_steps=ns.learner_steps,
                learning_rate=1e-3,
                warmup_steps=5,
                save_interval=0,
                log_interval=10,
            ),
            eval_samples=0,
            status_interval_s=10,
            learner_cpus=0,
        )
        res = run(cfg)
    ray.shutdown()
    return report(ns, rows, res["learner"])


def report(ns, rows: list[tuple], lr: dict | None) -> int:
    """The scaling table (and the learner's waiting share) on stdout, rows to --json."""
    import json

    base = rows[0][3] / rows[0][0]
    what = (
        f"teacher {ns.ollama_model} at {ns.ollama_url}"
        if ns.ollama_url
        else f"teacher latency {ns.latency_s}s ±50%"
    )
    print(f"\n{what}, {ns.inflight} requests in flight per worker")
    print("| workers | tasks | seconds | tasks/s | accepted rows/s | speedup | efficiency "
          "| rejected | failed | retried |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    out = []
    for w, tasks, sec, rate, acc, rej, err, retr in rows:
        sp = rate / base
        print(f"| {w} | {tasks} | {sec:.1f} | {rate:.1f} | {acc / sec:.1f} | {sp:.2f}x | "
              f"{sp / w:.2f} | {rej} | {err} | {retr} |")  # fmt: skip
        out.append(dict(workers=w, tasks=tasks, seconds=sec, tasks_s=rate, rows_s=acc / sec,
                        accepted=acc, rejected=rej, failed=err, retried=retr))  # fmt: skip
    if lr is not None:
        after_cold = lr["wall_s"] - (lr["wait_s"] - lr["wait_after_cold_s"])
        waiting = lr["wait_after_cold_s"] / max(after_cold, 1e-9)
        print(
            f"\nlearner with {rows[-1][0]} workers: {lr['step']} steps of {ns.batch_size} rows, "
            f"wall {lr['wall_s']:.1f}s, cold start {lr['wait_s'] - lr['wait_after_cold_s']:.1f}s, "
            f"waiting after it {lr['wait_after_cold_s']:.2f}s = {100 * waiting:.1f}% of the time"
        )
    if ns.json:
        Path(ns.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
