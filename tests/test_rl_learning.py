"""GRPO learns: with fixed seeds, a tiny model SFT'd on one-digit sums whose data taught it to end
most replies with the wrong number (`#### a` instead of `#### a+b`, 60% of the SFT replies)
raises its greedy held-out accuracy when RL rewards the final answer. Runs
`python launch/rl.py --local` (on-policy GRPO in one process, no Ray; the same RolloutWorker /
ReplayBuffer / RLLearner / Evaluator classes as the actor system, OpenBLAS preloaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.rl_data import ROOT, sft_start, sums_set, write_jsonl

GAIN = 0.08  # held-out accuracy points RL must add over its SFT start (400 questions)


def test_grpo_raises_held_out_accuracy_over_the_sft_start(tmp_path):
    train = sums_set(2000, 0)
    paths = {"train": write_jsonl(tmp_path / "train.jsonl", train),
             "test": write_jsonl(tmp_path / "test.jsonl", sums_set(400, 1))}  # fmt: skip
    sft = sft_start(tmp_path / "sft", train, steps=400, wrong_final=0.6)
    out = tmp_path / "rl"
    cmd = [sys.executable, str(ROOT / "launch" / "rl.py"), "--local", "--init_from", sft,
           "--data_path", paths["train"], "--eval_data_path", paths["test"], "--out_dir", str(out),
           "--max_steps", "30", "--iters", "2", "--num_rollouts", "64", "--samples_per_prompt", "8",
           "--prompts_per_rollout", "8", "--max_new_tokens", "16", "--temperature", "1.0",
           "--top_p", "1.0", "--learning_rate", "5e-4", "--dtype", "float32", "--seq_len", "96",
           "--run_eval", "1", "--run_bench", "0", "--gsm8k_eval_num", "400",
           "--eval_max_new_tokens", "16", "--log_interval", "5", "--seed", "0"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    done = [x for x in r.stdout.splitlines() if x.startswith("[rl] done ")]
    summary = json.loads(done[-1][len("[rl] done ") :])
    before = summary["before"]["gsm8k_accuracy"]
    curve = [(e["step"], e["gsm8k_accuracy"]) for e in summary["evals"]]
    print(f"held-out accuracy {before:.3f} -> {curve}; {summary['seconds']:.0f}s")
    assert summary["before"]["gsm8k_n"] == 400 and [s for s, _ in curve] == [15, 30]
    assert curve[-1][1] >= before + GAIN, (before, curve)
    # on-policy: every step trained on groups sampled with the weights it updated
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rl = [e for e in events if e.get("event") == "rl"]
    assert len(rl) == 30 and all(e["staleness"] == 0 for e in rl)
    # the sampled pass rate rises too (mean of the last 10 steps over the first 10)
    first = sum(e["pass_rate"] for e in rl[:10]) / 10
    last = sum(e["pass_rate"] for e in rl[-10:]) / 10
    assert last > first, (first, last)
    assert (out / "plots").is_dir() and any((out / "plots").glob("*.png"))
