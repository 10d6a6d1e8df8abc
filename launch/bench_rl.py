"""Rollout/train overlap: the same GRPO work run overlapped (rollout workers sample version v+1
while the learner trains on version v's groups) and sequential (rollout, then train), on one
local Ray instance.

    python launch/bench_rl.py --init_from CKPT [--steps 20] [--workers 1]

Without --init_from a d128 2-layer model is SFT'd for --sft_steps on generated one-digit sums
(GSM8K format). Per step it prints the rollout time (rollout-worker seconds / steps), the train
time (learner seconds from a batch leaving the stream to the end of its step / steps), the wall time of each mode and the
overlapped wall time over max(rollout, train); the goal is <= 1.1. On a machine where rollout
workers and the learner share the same few CPU cores the two compete, so overlap can only hide
what the other leaves idle; on a GPU node they run on separate devices.
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
sys.path.insert(0, str(ROOT))

MODEL = ["--hidden_size", "128", "--num_hidden_layers", "2", "--num_attention_heads", "4",
         "--num_key_value_heads", "2", "--intermediate_size", "384"]  # fmt: skip


def sft_start(tmp: Path, steps: int) -> tuple[str, str]:
    from minillm.data.gsm8k import load_gsm8k, make_sums_set, sft_record

    data = tmp / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_sums_set(4000, 0)), encoding="utf-8")
    sft = tmp / "sft.jsonl"
    sft.write_text(
        "".join(json.dumps(sft_record(r)) + "\n" for r in load_gsm8k(str(data))), encoding="utf-8"
    )
    cmd = [sys.executable, "-m", "minillm.train", "--task", "sft", "--data_path", str(sft),
           "--out_dir", str(tmp / "sft"), "--preset", "custom", *MODEL, "--dtype", "float32",
           "--seq_len", "96", "--batch_size", "16", "--max_steps", str(steps),
           "--warmup_steps", "5", "--learning_rate", "3e-3", "--save_interval", str(steps)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return str(tmp / "sft"), str(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--init_from", default=None)
    p.add_argument("--data_path", default=None, help="GSM8K-format file (default: generated)")
    p.add_argument("--sft_steps", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--num_rollouts", type=int, default=64)
    p.add_argument("--samples_per_prompt", type=int, default=8)
    p.add_argument("--max_new_tokens", type=int, default=12)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seq_len", type=int, default=96)
    p.add_argument("--learner_gpus", type=float, default=None, help="default: 1 with a GPU")
    p.add_argument("--worker_gpus", type=float, default=0.0)
    p.add_argument("--max_staleness", type=int, default=1)
    p.add_argument("--no_dynamic_sampling", dest="dynamic_sampling", action="store_false")
    p.add_argument("--prompts_per_rollout", type=int, default=0,
                   help="prompts per worker call (0: a whole step's)")  # fmt: skip
    p.add_argument("--max_buffer_groups", type=int, default=0,
                   help="buffered + in-flight groups (0: groups per step x max_staleness)")  # fmt: skip
    p.add_argument("--pin", action="store_true",
                   help="CPU node: the learner on core 0, rollout worker i on core 1 + i "
                   "(MINILLM_CORES), so they do not compete for cores")  # fmt: skip
    ns = p.parse_args(argv)

    import ray

    from actors.distill import runtime_env
    from actors.driver import local_gpus
    from actors.rl import RLConfig, run

    if ns.pin:
        n = os.cpu_count() or 1
        spec = ["learner=0", *(f"rollout-{i}={(1 + i) % n}" for i in range(ns.workers))]
        os.environ["MINILLM_CORES"] = ",".join(spec)  # read by the actors Ray starts
        print(f"[bench] MINILLM_CORES={os.environ['MINILLM_CORES']}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        init, data = ns.init_from, ns.data_path
        if init is None or data is None:
            init2, data2 = sft_start(Path(tmp), ns.sft_steps)
            init, data = init or init2, data or data2
        ray.init(namespace="minillm", include_dashboard=False, _node_ip_address="127.0.0.1",
                 num_gpus=local_gpus(), runtime_env=runtime_env())  # fmt: skip
        rows = {}
        for mode in ("sequential", "overlapped"):
            cfg = RLConfig(
                out_dir=f"{tmp}/{mode}", init_from=init, data_path=data, workers=ns.workers,
                samples_per_prompt=ns.samples_per_prompt, num_rollouts=ns.num_rollouts,
                prompts_per_rollout=ns.prompts_per_rollout or ns.num_rollouts // ns.samples_per_prompt,
                max_new_tokens=ns.max_new_tokens, temperature=1.0, top_p=1.0,
                train=dict(dtype=ns.dtype, seq_len=ns.seq_len, max_steps=ns.steps,
                           learning_rate=1e-4, warmup_steps=0, min_lr_ratio=1.0,
                           save_interval=ns.steps, log_interval=10),
                run_eval=False, run_bench=False, learner_cpus=0, status_interval_s=1e9,
                learner_gpus=ns.learner_gpus, worker_gpus=ns.worker_gpus,
                sequential=mode == "sequential", max_staleness=ns.max_staleness,
                max_buffer_groups=ns.max_buffer_groups, dynamic_sampling=ns.dynamic_sampling,
            )  # fmt: skip
            res = run(cfg)
            lr = res["learner"]
            steps = lr["step"]
            rollout = sum(r["seconds"] for r in res["rollouts"]) / steps
            train = lr["train_s"] / steps
            rows[mode] = (lr["wall_s"] / steps, rollout, train)
            ev = [
                json.loads(x) for x in Path(cfg.out_dir, "metrics.jsonl").read_text().splitlines()
            ]
            ev = [e for e in ev if e.get("event") == "rl"]
            print(f"[bench] {mode}: mean staleness {sum(e['staleness'] for e in ev) / len(ev):.2f}, "
                  f"groups dropped flat {sum(e['dropped_flat'] for e in ev)} / stale "
                  f"{sum(e['dropped_stale'] for e in ev)}, rollout calls {len(res['rollouts'])}")  # fmt: skip
            print(f"[bench] {mode}: {lr['wall_s'] / steps:.2f} s/step, rollout {rollout:.2f} "
                  f"s/step, train {train:.2f} s/step, learner waited {lr['wait_s'] / steps:.2f} "
                  f"s/step")  # fmt: skip
        ray.shutdown()
    seq, ovl = rows["sequential"], rows["overlapped"]
    bound = max(seq[1], seq[2])
    print("\n| mode | s/step | rollout s/step | train s/step |")
    print("|---|---|---|---|")
    for mode, (wall, ro, tr) in rows.items():
        print(f"| {mode} | {wall:.2f} | {ro:.2f} | {tr:.2f} |")
    print(
        f"\noverlapped / sequential = {ovl[0] / seq[0]:.2f}; overlapped / max(rollout, train) "
        f"= {ovl[0] / bound:.2f} (goal <= 1.1; rollout and train times from the sequential run)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
