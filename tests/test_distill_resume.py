"""A whole distillation run (`python launch/distill.py`, its own local Ray) killed with SIGKILL
and started again with `--resume` continues from its last checkpoint and shard cursor: its final
weights equal those of a learner that read the final shards from the start without a break,
so no sample was repeated or skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from actors.distill import runtime_env
from actors.shards import read_manifest, totals
from tests.conftest import TINY, TINY_FLAGS, free_port

pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parent.parent
TRAIN = dict(
    dtype="float32",
    seq_len=192,
    batch_size=8,
    max_steps=30,
    learning_rate=3e-3,
    warmup_steps=3,
    save_interval=10,
    log_interval=5,
    keep_last_checkpoints=0,
    seed=7,
)


def command(out: Path, *extra: str) -> list[str]:
    flags = [
        "--teacher", "oracle", "--oracle_delay_s", "0.02", "--workers", "2", "--inflight", "2",
        "--lease_size", "16", "--cold_samples", "32", "--total_samples", "320",
        "--weights", "logic=1", "--lang", "en", "--eval_samples", "0", "--num_cpus", "2",
        "--dashboard_port", str(free_port()), "--out_dir", str(out), "--no-compile",
        "--train_seed", str(TRAIN["seed"]),
    ]  # fmt: skip
    for k in ("dtype", "seq_len", "batch_size", "max_steps", "learning_rate", "warmup_steps"):
        flags += [f"--{k}", str(TRAIN[k])]
    flags += ["--save_interval", "10", "--log_interval", "5", "--keep_last_checkpoints", "0"]
    return [sys.executable, str(ROOT / "launch" / "distill.py"), *flags, *TINY_FLAGS, *extra]


def ckpt_steps(out: Path) -> list[int]:
    d = out / "checkpoints"
    return sorted(int(p.name.split("_")[1]) for p in d.glob("step_*")) if d.is_dir() else []


def test_killed_run_resumes_exactly(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(
        command(out),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    deadline = time.time() + 240
    while not ckpt_steps(out) and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    assert ckpt_steps(out), "no checkpoint appeared"
    os.killpg(p.pid, signal.SIGKILL)  # the driver, its local Ray and every actor
    first_out = p.communicate()[0]
    assert "[ray] dashboard: http://127.0.0.1:" in first_out
    killed_at = ckpt_steps(out)[-1]
    assert killed_at < 30

    r = subprocess.run(
        command(out, "--resume"), env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert ckpt_steps(out)[-1] == 30
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["start_step"] >= killed_at  # continued, did not restart
    m = read_manifest(out / "shards")
    t = totals(m["entries"])
    assert m["closed"] and t["rows"] == 320 == sum(t["accepted"].values())

    # a learner that reads the final shards without a break ends with the same weights (run
    # in a process with the same BLAS as the Ray workers, so the arithmetic is the same too)
    spec = {
        "shard_dir": str(out / "shards"),
        "train": {**TRAIN, "out_dir": str(tmp_path / "ref"), "compile": False, "save_interval": 0},
        "model": {"preset": "custom", **TINY},
        "total_steps": 30,
    }
    code = (
        "import json,sys; from actors.learner import Learner; s=json.loads(sys.argv[1]); "
        "print(Learner(s['shard_dir'], s['train'], s['model'], total_steps=s['total_steps'])"
        ".run()['step'])"
    )
    ref = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)],
        env={**env, **runtime_env()["env_vars"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ref.returncode == 0 and ref.stdout.split()[-1] == "30", ref.stderr[-2000:]
    a = mx.load(str(out / "checkpoints" / "step_00000030" / "model.safetensors"))
    b = mx.load(str(tmp_path / "ref" / "checkpoints" / "step_00000030" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.array(a[k]), np.array(b[k]), err_msg=k)
