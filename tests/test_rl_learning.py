"""GRPO learns: with fixed seeds, a tiny model SFT'd on one-digit sums whose data taught it to end
most replies with the wrong number (`#### a` instead of `#### a+b`, 60% of the SFT replies)
raises its greedy held-out accuracy when RL rewards the final answer (mean of two RL seeds). Runs
`python launch/rl.py --local` (on-policy GRPO in one process, no Ray; the same RolloutWorker /
ReplayBuffer / RLLearner / Evaluator classes as the actor system, OpenBLAS preloaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.rl_data import ROOT, sft_start, sums_set, write_jsonl

GAIN = 0.08  # mean held-out accuracy points two RL seeds must add over their SFT start
SEEDS = ("0", "1")


def rl_run(tmp_path, sft: str, paths: dict, seed: str) -> tuple[float, list, list]:
    """30 on-policy GRPO steps (16 prompts x 8 samples each) from `sft`: `(accuracy before, [(step, accuracy)], rl events)`."""
    out = tmp_path / f"rl{seed}"
    cmd = [sys.executable, str(ROOT / "launch" / "rl.py"), "--local", "--init_from", sft,
           "--data_path", paths["train"], "--eval_data_path", paths["test"], "--out_dir", str(out),
           "--max_steps", "30", "--iters", "2", "--num_rollouts", "128", "--samples_per_prompt", "8",
           "--prompts_per_rollout", "16", "--max_new_tokens", "16", "--temperature", "1.0",
           "--top_p", "1.0", "--learning_rate", "5e-4", "--dtype", "float32", "--seq_len", "96",
           "--run_eval", "1", "--run_bench", "0", "--gsm8k_eval_num", "400",
           "--eval_max_new_tokens", "16", "--log_interval", "5", "--seed", seed]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    done = [x for x in r.stdout.splitlines() if x.startswith("[rl] done ")]
    summary = json.loads(done[-1][len("[rl] done ") :])
    assert summary["before"]["gsm8k_n"] == 400
    block = r.stdout[r.stdout.index("[rl] summary") :]
    assert "held-out    before: " in block and "held-out    after (step 30): " in block, block
    curve = [(e["step"], e["gsm8k_accuracy"]) for e in summary["evals"]]
    print(f"seed {seed}: held-out accuracy {summary['before']['gsm8k_accuracy']:.3f} -> {curve}")
    assert (out / "plots").is_dir() and any((out / "plots").glob("*.png"))
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return summary["before"]["gsm8k_accuracy"], curve, [e for e in events if e.get("event") == "rl"]


def test_grpo_raises_held_out_accuracy_over_the_sft_start(tmp_path):
    """One SFT start, two RL seeds, 16 prompts x 8 samples a step. With 8 prompts a step a
    single run's gain at step 30 ranged +0.05 to +0.24 over seeds and rounding-level changes
    of the step (and the sampled pass rate did not always rise), so the test takes 16 prompts,
    asks the mean gain of two runs to reach GAIN and each run to gain something."""
    train = sums_set(2000, 0)
    paths = {"train": write_jsonl(tmp_path / "train.jsonl", train),
             "test": write_jsonl(tmp_path / "test.jsonl", sums_set(400, 1))}  # fmt: skip
    sft = sft_start(tmp_path / "sft", train, steps=400, wrong_final=0.6)
    gains, first, last = [], [], []
    for seed in SEEDS:
        before, curve, rl = rl_run(tmp_path, sft, paths, seed)
        assert [s for s, _ in curve] == [15, 30]
        assert curve[-1][1] > before, (seed, before, curve)
        gains.append(curve[-1][1] - before)
        # on-policy: every step trained on groups sampled with the weights it updated
        assert len(rl) == 30 and all(e["staleness"] == 0 for e in rl)
        first.append(sum(e["pass_rate"] for e in rl[:10]) / 10)
        last.append(sum(e["pass_rate"] for e in rl[-10:]) / 10)
    assert sum(gains) / len(gains) >= GAIN, gains
    # the sampled pass rate rises too (mean of the last 10 steps over the first 10)
    assert sum(last) > sum(first), (first, last)
