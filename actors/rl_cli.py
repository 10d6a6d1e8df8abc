"""Flags of `python launch/rl.py`; each defaults to the predecessor's environment variable of the
same meaning (ITERS, MAX_STEPS, STEPS_PER_ITER, NUM_ROLLOUTS, SAMPLES_PER_PROMPT, MAX_NEW_TOKENS,
TEMPERATURE, TOP_P, RUN_EVAL, RUN_BENCH, GSM8K_EVAL_NUM, WARMUP_STEPS, OUT_DIR, INIT_FROM, ...)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from actors.distill_cli import env
from actors.driver import ActorDied, with_resume
from actors.driver import summary as run_summary
from actors.rl import RLConfig, run


def flag(v: str) -> bool:
    return str(v).lower() not in ("0", "false", "no", "off", "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="launch/rl.py",
        description="GSM8K GRPO on Ray: rollout workers, replay buffer, MLX learner, evaluator.",
    )
    a = p.add_argument
    a("--init_from", default=env("INIT_FROM", None), help="the policy to start from (required)")
    a("--out_dir", default=env("OUT_DIR", "out/mlx_rl"))
    a("--data_path", default=env("DATA_PATH", "gsm8k:train"), help="gsm8k:train or JSONL/parquet")
    a("--eval_data_path", default=env("EVAL_DATA_PATH", "gsm8k:test"))
    a("--data_dir", default=env("DATA_DIR", "dataset/gsm8k"))
    a("--hf_endpoint", default=None)
    a("--limit", type=int, default=None, help="use the first N training questions")
    a("--warmup_steps", type=int, default=int(env("WARMUP_STEPS", 0)),
      help="SFT steps on GSM8K train solutions before RL (0: none)")  # fmt: skip
    a("--warmup_lr", type=float, default=1e-4)
    a("--warmup_batch_size", type=int, default=8)
    a("--iters", type=int, default=int(env("ITERS", 5)), help="evaluations over the run")
    a(
        "--max_steps",
        type=int,
        default=int(env("MAX_STEPS", 1000)),
        help="GRPO steps (0: only the SFT warm-up)",
    )
    a("--steps_per_iter", type=int, default=int(env("STEPS_PER_ITER", 0)) or None,
      help="steps between evaluations and checkpoints (default MAX_STEPS / ITERS)")  # fmt: skip
    a("--num_rollouts", type=int, default=int(env("NUM_ROLLOUTS", 64)),
      help="sampled replies per optimizer step")  # fmt: skip
    a("--samples_per_prompt", type=int, default=int(env("SAMPLES_PER_PROMPT", 8)), help="G")
    a("--prompts_per_rollout", type=int, default=4, help="prompts per worker call")
    a("--workers", type=int, default=int(env("ROLLOUT_WORKERS", 2)))
    a("--max_new_tokens", type=int, default=int(env("MAX_NEW_TOKENS", 256)))
    a("--temperature", type=float, default=float(env("TEMPERATURE", 0.7)))
    a("--top_p", type=float, default=float(env("TOP_P", 0.95)))
    a("--format_weight", type=float, default=0.0, help="reward bonus for a '#### n' line")
    a("--clip_eps", type=float, default=0.2)
    a("--clip_eps_high", type=float, default=None)
    a("--beta", type=float, default=0.0, help="KL-to-reference weight (k3); 0: no reference")
    a("--ref_from", default=None, help="reference model (default: --init_from)")
    a("--no_std_scaling", dest="scale_std", action="store_false")
    a("--no_dynamic_sampling", dest="dynamic_sampling", action="store_false")
    a("--max_staleness", type=int, default=1)
    a("--sequential", action="store_true", help="rollout then train, no overlap (a baseline)")
    a(
        "--cores",
        default=env("MINILLM_CORES", None),
        help="CPU node: pin actors to cores, e.g. learner=0-3,rollout-0=4,rollout-1=5",
    )
    a("--local", action="store_true",
      help="no Ray: roll out and train in turn in this process (on-policy; e.g. a GPU box)")  # fmt: skip
    a("--seed", type=int, default=int(env("SEED", 1337)))
    a("--lang", default="en", choices=["en", "zh"])
    a("--dtype", default=env("DTYPE", "bfloat16"))
    a("--seq_len", type=int, default=int(env("SEQ_LEN", 512)))
    a("--learning_rate", type=float, default=float(env("LEARNING_RATE", 2e-5)))
    a("--weight_decay", type=float, default=0.0)
    a("--lr_warmup_steps", type=int, default=0)
    a("--save_interval", type=int, default=int(env("SAVE_INTERVAL", 0)) or None)
    a("--log_interval", type=int, default=int(env("LOG_INTERVAL", 10)))
    a("--keep_last_checkpoints", type=int, default=int(env("KEEP_LAST_CHECKPOINTS", 3)))
    a("--compile", action=argparse.BooleanOptionalAction, default=True)
    a("--run_eval", type=flag, default=flag(env("RUN_EVAL", "1")))
    a("--run_bench", type=flag, default=flag(env("RUN_BENCH", "1")))
    a("--gsm8k_eval_num", type=int, default=int(env("GSM8K_EVAL_NUM", 200)))
    a("--eval_max_new_tokens", type=int, default=256)
    a("--bench_samples", type=int, default=64)
    a("--address", default=env("RAY_ADDRESS", None))
    a("--resume", action="store_true")
    a("--num_cpus", type=int, default=None)
    a("--num_gpus", type=int, default=None, help="GPUs of a local Ray (default: all NVIDIA GPUs)")
    a("--learner_gpus", type=float, default=None,
      help="GPUs the learner reserves (default: 1 when the cluster has one, else 0)")  # fmt: skip
    a("--worker_gpus", type=float, default=0.0)
    a("--learner_gpu_memory", type=float, default=0.6,
      help="on CUDA, the share of the GPU's memory the learner keeps to (arrays + cache)")  # fmt: skip
    a(
        "--worker_gpu_memory",
        type=float,
        default=0.1,
        help="on CUDA, the share of the GPU's memory each rollout worker keeps to",
    )
    a(
        "--eval_gpu_memory",
        type=float,
        default=0.15,
        help="on CUDA, the share of the GPU's memory the evaluator keeps to",
    )
    a("--dashboard_host", default="127.0.0.1")
    a("--dashboard_port", type=int, default=8265)
    return p


def warmup(ns: argparse.Namespace) -> str:
    """SFT on GSM8K train solutions (annotations removed, ending in '#### n'); returns the
    checkpoint to start RL from. A finished warm-up is reused."""
    from minillm.data.gsm8k import load_gsm8k, sft_record
    from minillm.train.cli import main as train_main
    from minillm.train.state import find_checkpoint, load_state

    wdir = Path(ns.out_dir) / "warmup"
    done = find_checkpoint(wdir)
    if done is not None and load_state(done).step >= ns.warmup_steps:
        print(f"[rl] warm-up done already ({done})", flush=True)
        return str(done)
    wdir.mkdir(parents=True, exist_ok=True)
    data = wdir / "gsm8k_sft.jsonl"
    recs = load_gsm8k(
        ns.data_path, data_dir=ns.data_dir, hf_endpoint=ns.hf_endpoint, limit=ns.limit
    )
    with data.open("w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(sft_record(r, ns.lang), ensure_ascii=False) + "\n")
    args = [
        "--task", "sft", "--data_path", str(data), "--out_dir", str(wdir),
        "--max_steps", str(ns.warmup_steps), "--warmup_steps", str(max(1, ns.warmup_steps // 20)),
        "--learning_rate", str(ns.warmup_lr), "--seq_len", str(ns.seq_len),
        "--batch_size", str(ns.warmup_batch_size), "--dtype", ns.dtype, "--epochs", "1000",
        "--save_interval", str(ns.warmup_steps), "--log_interval", str(ns.log_interval),
        "--shuffle_buffer", "1000",
    ]  # fmt: skip
    args += ["--resume", str(wdir)] if done is not None else ["--init_from", ns.init_from]
    print(f"[rl] warm-up: minillm train {' '.join(args)}", flush=True)
    train_main(args)
    return str(find_checkpoint(wdir))


def config_from(ns: argparse.Namespace, init_from: str) -> RLConfig:
    steps_per_iter = ns.steps_per_iter or math.ceil(ns.max_steps / max(ns.iters, 1))
    train = {
        "out_dir": ns.out_dir,
        "dtype": ns.dtype,
        "seq_len": ns.seq_len,
        "batch_size": ns.num_rollouts,
        "max_steps": ns.max_steps,
        "learning_rate": ns.learning_rate,
        "weight_decay": ns.weight_decay,
        "warmup_steps": ns.lr_warmup_steps,
        "min_lr_ratio": 1.0,
        "save_interval": ns.save_interval or steps_per_iter,
        "log_interval": ns.log_interval,
        "keep_last_checkpoints": ns.keep_last_checkpoints,
        "compile": ns.compile,
        "seed": ns.seed,
    }
    return RLConfig(
        out_dir=ns.out_dir, init_from=init_from, ref_from=ns.ref_from, data_path=ns.data_path,
        eval_data_path=ns.eval_data_path, data_dir=ns.data_dir, hf_endpoint=ns.hf_endpoint,
        limit=ns.limit, workers=ns.workers, samples_per_prompt=ns.samples_per_prompt,
        num_rollouts=ns.num_rollouts, prompts_per_rollout=ns.prompts_per_rollout,
        max_new_tokens=ns.max_new_tokens, temperature=ns.temperature, top_p=ns.top_p,
        format_weight=ns.format_weight, clip_eps=ns.clip_eps, clip_eps_high=ns.clip_eps_high,
        beta=ns.beta, scale_std=ns.scale_std, dynamic_sampling=ns.dynamic_sampling,
        max_staleness=ns.max_staleness, seed=ns.seed, lang=ns.lang, train=train,
        iters=max(1, math.ceil(ns.max_steps / steps_per_iter)), run_eval=ns.run_eval,
        run_bench=ns.run_bench, gsm8k_eval_num=ns.gsm8k_eval_num,
        eval_max_new_tokens=ns.eval_max_new_tokens, bench_samples=ns.bench_samples,
        address=ns.address, resume=ns.resume, num_cpus=ns.num_cpus, num_gpus=ns.num_gpus,
        learner_gpus=ns.learner_gpus, worker_gpus=ns.worker_gpus,
        learner_gpu_memory=ns.learner_gpu_memory, worker_gpu_memory=ns.worker_gpu_memory,
        eval_gpu_memory=ns.eval_gpu_memory,
        dashboard_host=ns.dashboard_host, dashboard_port=ns.dashboard_port,
        sequential=ns.sequential,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    if not ns.init_from:
        raise ValueError("--init_from CKPT (or INIT_FROM) is required: the policy to start from")
    if ns.cores:
        import os

        from actors.cores import parse

        parse(ns.cores)  # a bad spec fails here, before anything starts
        os.environ["MINILLM_CORES"] = ns.cores
    init = warmup(ns) if ns.warmup_steps else ns.init_from
    if ns.max_steps == 0:
        print(f"[rl] --max_steps 0: warm-up only; the policy is {init}", flush=True)
        return 0
    cfg = config_from(ns, init)
    if ns.local:
        from actors.rl_local import run_local

        res = run_local(cfg, eval_before=ns.run_eval and not ns.resume)
    else:
        try:
            res = run(cfg, eval_before=ns.run_eval and not ns.resume)
        except ActorDied as e:
            raise with_resume(e, cfg.out_dir, "python launch/rl.py", argv) from None
    summary = {
        "step": res["learner"].get("step"),
        "before": res["before"],
        "evals": [
            {k: e[k] for k in ("step", "gsm8k_accuracy", "accuracy") if k in e}
            for e in res["evals"]
        ],
        "rollout_tok_s": round(res["rollout_tok_s"], 1),
        "seconds": round(res["seconds"], 1),
    }
    print("[rl] done " + json.dumps(summary), flush=True)
    held = []
    for label, e in (("before", res["before"]), ("after", (res["evals"] or [None])[-1])):
        if e and "gsm8k_accuracy" in e:
            at = f" (step {e['step']})" if e.get("step") is not None else ""
            held.append(f"{label}{at}: {ns.eval_data_path} accuracy {e['gsm8k_accuracy']:.3f}")
    print(run_summary("rl", cfg.out_dir, res, held), flush=True)
    return 0


if __name__ == "__main__":
    from minillm.cli import run as run_cli

    run_cli(main, prog="launch/rl.py")
    sys.exit(0)
