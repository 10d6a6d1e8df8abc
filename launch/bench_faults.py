"""A whole distillation run (`launch/distill.py`, its own local Ray, a tiny learner) against the
misbehaving Ollama-protocol teacher of tests/hostile_teacher.py; prints what reached the shards.

    python launch/bench_faults.py [--samples 96] [--tree DIR]   # DIR: another checkout (before)

Columns: faults injected, requests sent, samples expected (their last answer was correct and
clean), stored, lost (expected but not stored), duplicated, think tags leaked into stored
replies, and the run's own retry/reject counters (metrics.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = {"logic": 1.0, "math": 1.0}  # the run's task mix (--weights), and the teacher's


def stored_rows(shard_dir: Path) -> list[dict]:
    """Every row of every shard file, read with pyarrow alone (any version of the store)."""
    import pyarrow.ipc as ipc

    rows: list[dict] = []
    for f in sorted(shard_dir.glob("shard-*.arrow")):
        with open(f, "rb") as fh:
            rows += ipc.open_file(fh).read_all().to_pylist()
    return rows


def seed_flag(tree: Path) -> str:
    """The task-stream seed's flag: `--task_seed` (older checkouts: `--seed`)."""
    return "--task_seed" if (tree / "minillm" / "config" / "distill.py").is_file() else "--seed"


def run_faults(out: Path, samples: int = 96, tree: Path = ROOT, seed: int = 5,
               timeout: float = 600) -> dict:  # fmt: skip
    """Run the distillation and return the counts (and the run's own log as `log`)."""
    sys.path.insert(0, str(ROOT))
    from minillm.data.tasks import TaskSource
    from tests.conftest import TINY_FLAGS, free_port
    from tests.hostile_teacher import hostile_teacher, task_answers

    answers = task_answers(seed, WEIGHTS, "en", samples * 8)
    flags = [
        "--teacher", "ollama", "--ollama_model", "hostile", "--timeout_s", "0.5",
        "--max_retries", "3", "--workers", "2", "--inflight", "4", "--lease_size", "16",
        "--cold_samples", "16", "--total_samples", str(samples), "--weights", ",".join(f"{k}={v:g}" for k, v in WEIGHTS.items()),
        "--lang", "en", seed_flag(tree), str(seed), "--eval_samples", "0", "--num_cpus", "2",
        "--dashboard_port", str(free_port()), "--out_dir", str(out), "--no-compile",
        "--dtype", "float32", "--seq_len", "192", "--batch_size", "8", "--max_steps", "6",
        "--warmup_steps", "1", "--save_interval", "6", "--max_failures", "0", *TINY_FLAGS,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with hostile_teacher(answers.get, timeout_s=1.5) as srv:
        r = subprocess.run([sys.executable, str(tree / "launch" / "distill.py"), *flags,
                            "--ollama_url", srv.url], env=env, cwd=tree, capture_output=True, text=True,
                           timeout=timeout)  # fmt: skip
        expected, injected, sent = srv.expected_stored(), srv.injected(), len(srv.log)
    rows = stored_rows(out / "shards")
    prompts = [row["prompt"] for row in rows]
    # what counts as lost: a correct, clean last answer to a task of a committed lease that is
    # not in the shards, beyond the rows the store drops on purpose past --total_samples
    src = TaskSource(seed, WEIGHTS, "en")
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    entries = manifest["entries"]
    committed = {
        src.draw(i).prompt for e in entries for i in range(e["start"], e["start"] + e["count"])
    }
    over = sum(e.get("over_target", 0) for e in entries)
    squeezed = ["".join(str(row["reply"]).lower().split()) for row in rows]
    last = {}
    mj = out / "metrics.jsonl"
    for line in mj.read_text().splitlines() if mj.is_file() else []:
        rec = json.loads(line)
        if rec.get("event") == "distill":
            last = rec
    return {
        "rc": r.returncode,
        "faults": sum(injected.values()),
        "by_fault": dict(injected),
        "requests": sent,
        "expected": len(expected),
        "stored": len(rows),
        "committed_expected": len(expected & committed),
        "over_target": over,
        "lost": len((expected & committed) - set(prompts)) - over,
        "duplicated": len(prompts) - len(set(prompts)),
        "leaked": sum("<think" in s or "</think" in s for s in squeezed),
        "retries": last.get("retries_by_reason"),
        "rejected": last.get("rejected_by_reason"),
        "errors": last.get("errors_by_kind"),
        "log": r.stdout[-4000:] + r.stderr[-4000:],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", type=int, default=96, help="--total_samples of the run")
    p.add_argument("--tree", default=str(ROOT), help="checkout whose launch/distill.py runs")
    ns = p.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="bench_faults_")) / "run"
    res = run_faults(out, ns.samples, Path(ns.tree).resolve())
    if res["rc"] != 0:
        print(res["log"], file=sys.stderr)
    keys = (
        "faults",
        "requests",
        "committed_expected",
        "stored",
        "over_target",
        "lost",
        "duplicated",
        "leaked",
    )
    print(f"tree={ns.tree} rc={res['rc']} faults by kind: {json.dumps(res['by_fault'])}")
    print(" | ".join(keys))
    print(" | ".join(str(res[k]) for k in keys))
    print(
        f"run counters: retries={res['retries']} rejected={res['rejected']} errors={res['errors']}"
    )


if __name__ == "__main__":
    main()
