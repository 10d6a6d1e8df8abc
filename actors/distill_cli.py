"""Flags of `python launch/distill.py`; each defaults to the predecessor's environment variable
of the same meaning (OLLAMA_URL, OLLAMA_MODEL, GEN_WORKERS, COLD_SAMPLES, TOTAL_SAMPLES,
DATA_JSONL, OUT_DIR, INIT_FROM, MAX_STEPS, SEQ_LEN, BATCH_SIZE, ACCUM_STEPS, DTYPE, PRESET, ...)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from actors.distill import DistillConfig, run
from actors.driver import ActorDied, summary, with_resume

# model-shape flags that override the preset (same names as ModelArgs)
MODEL_DIMS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
)


def env(name: str, default):
    v = os.environ.get(name)
    return default if v in (None, "") else v


def weights(s: str | None) -> dict | None:
    """ "math=2,logic=1" -> {"math": 2.0, "logic": 1.0}."""
    if not s:
        return None
    out = {}
    for part in s.split(","):
        k, sep, v = part.partition("=")
        try:
            out[k.strip()] = float(v) if sep else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad weight {part!r}: use name=number") from None
    return out


def ints(s: str) -> list[int]:
    """ "64,128,256" -> [64, 128, 256]."""
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad list {s!r}: use comma-separated integers") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="launch/distill.py",
        description="Streaming distillation: teacher generators -> Arrow shards -> MLX learner, "
        "on a local Ray instance (or --address).",
    )
    a = p.add_argument
    g = p.add_argument_group("teacher")
    g.add_argument(
        "--teacher", default=env("TEACHER", "ollama"), choices=["ollama", "openai", "oracle"]
    )
    g.add_argument(
        "--ollama_url", default=env("OLLAMA_URL", None), help="default http://127.0.0.1:11434"
    )
    g.add_argument("--ollama_model", default=env("OLLAMA_MODEL", None), help="default qwen3:0.6b")
    g.add_argument(
        "--base_url",
        default=env("BASE_URL", None),
        help="OpenAI-compatible server (--teacher openai)",
    )
    g.add_argument("--think", action=argparse.BooleanOptionalAction, default=False)
    g.add_argument("--temperature", type=float, default=0.2)
    g.add_argument("--top_p", type=float, default=0.95)
    g.add_argument(
        "--max_new_tokens", type=int, default=512, help="teacher reply limit (num_predict)"
    )
    g.add_argument("--timeout_s", type=float, default=600.0)
    g.add_argument("--max_retries", type=int, default=3)
    g.add_argument(
        "--max_failures",
        type=int,
        default=200,
        help="stop after this many failed requests (0 = never)",
    )
    g = p.add_argument_group("generation")
    g.add_argument(
        "--workers", type=int, default=int(env("GEN_WORKERS", 8)), help="generator actors"
    )
    g.add_argument("--inflight", type=int, default=4, help="open teacher requests per generator")
    g.add_argument("--lease_size", type=int, default=32, help="tasks per lease (one shard each)")
    g.add_argument(
        "--cold_samples",
        type=int,
        default=int(env("COLD_SAMPLES", 512)),
        help="training starts after this many",
    )
    g.add_argument(
        "--total_samples", type=int, default=int(env("TOTAL_SAMPLES", 20000)), help="0 = forever"
    )
    g.add_argument(
        "--max_tasks",
        type=int,
        default=0,
        help="stop generating after this many tasks (0 = no limit)",
    )
    g.add_argument(
        "--oracle_delay_s",
        type=float,
        default=0.0,
        help="simulated per-request latency of the oracle teacher (tests, benchmarks)",
    )
    g.add_argument(
        "--max_lag",
        type=int,
        default=4096,
        help="pause generators when the learner is this many rows behind",
    )
    g.add_argument("--seed", type=int, default=int(env("SEED", 1337)), help="task stream seed")
    g.add_argument(
        "--weights", type=weights, default=None, help="category weights, e.g. math=2,logic=1,copy=0"
    )
    g.add_argument("--lang", default="both", choices=["en", "zh", "both"])
    g.add_argument(
        "--data_jsonl",
        default=env("DATA_JSONL", None),
        help="also export accepted samples as JSONL",
    )
    g = p.add_argument_group("learner")
    a("--out_dir", default=env("OUT_DIR", "out/mlx_distill"))
    a("--init_from", default=env("INIT_FROM", None), help="checkpoint to start from")
    a(
        "--preset",
        default=env("PRESET", "200mb"),
        help="model preset when not --init_from (or custom)",
    )
    for dim in MODEL_DIMS:
        a(f"--{dim}", type=int, default=None)
    a("--tokenizer_path", default=None)
    a("--dtype", default=env("DTYPE", "bfloat16"))
    a("--seq_len", type=int, default=int(env("SEQ_LEN", 512)))
    a("--batch_size", type=int, default=int(env("BATCH_SIZE", 2)))
    a("--accum_steps", type=int, default=int(env("ACCUM_STEPS", 1)))
    a("--max_steps", type=int, default=int(env("MAX_STEPS", 2000)), help="0: from TOTAL_SAMPLES")
    a("--learning_rate", type=float, default=float(env("LEARNING_RATE", 1e-4)))
    a("--warmup_steps", type=int, default=None, help="default: 5%% of the steps")
    a("--save_interval", type=int, default=int(env("SAVE_INTERVAL", 200)))
    a("--log_interval", type=int, default=int(env("LOG_INTERVAL", 10)))
    a("--keep_last_checkpoints", type=int, default=int(env("KEEP_LAST_CHECKPOINTS", 3)))
    a("--compile", action=argparse.BooleanOptionalAction, default=True)
    a("--train_seed", type=int, default=1337)
    a("--bucket_sizes", type=ints, default=None,
      help="padded batch widths, e.g. 64,128,192,256 (default: 32, 64, 128, ... seq_len)")  # fmt: skip
    a("--reuse", type=int, default=1,
      help="when no fresh row is committed, top batches up with recent rows, each used at "
      "most this many times (1: never wait-and-reuse, every row trained on once)")  # fmt: skip
    a("--reuse_window", type=int, default=4096, help="recent rows --reuse draws from")
    a("--max_seconds", type=float, default=0.0,
      help="stop (with a final checkpoint) after this much wall time (0: no limit)")  # fmt: skip
    g = p.add_argument_group("evaluation")
    g.add_argument(
        "--eval_interval",
        type=int,
        default=0,
        help="steps between evaluations (default: save_interval)",
    )
    g.add_argument(
        "--eval_samples", type=int, default=64, help="held-out synthetic tasks (0: no evaluator)"
    )
    g.add_argument("--eval_batch_size", type=int, default=64, help="prompts decoded together")
    g.add_argument("--eval_max_new_tokens", type=int, default=128)
    g = p.add_argument_group("ray")
    g.add_argument(
        "--address",
        default=env("RAY_ADDRESS", None),
        help="existing Ray cluster, e.g. 10.0.0.1:6379",
    )
    g.add_argument("--resume", action="store_true", help="continue the run in --out_dir")
    g.add_argument(
        "--no-learner",
        "--generate_only",
        dest="learner",
        action="store_false",
        help="only generate (shards, and DATA_JSONL if set); no training",
    )
    g.add_argument("--num_cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    g.add_argument(
        "--num_gpus", type=int, default=None, help="GPUs of a local Ray (default: all NVIDIA GPUs)"
    )
    g.add_argument(
        "--learner_gpus",
        type=float,
        default=None,
        help="GPUs the learner actor reserves (default: 1 when the cluster has one, else 0)",
    )
    g.add_argument("--learner_gpu_memory", type=float, default=0.6,
                   help="on CUDA, the share of the GPU's memory the learner keeps to (arrays + cache)")  # fmt: skip
    g.add_argument("--eval_gpu_memory", type=float, default=0.15,
                   help="on CUDA, the share of the GPU's memory the evaluator keeps to")  # fmt: skip
    g.add_argument("--dashboard_host", default="127.0.0.1", help="0.0.0.0 exposes the dashboard")
    g.add_argument("--dashboard_port", type=int, default=8265)
    return p


def config_from(ns: argparse.Namespace) -> DistillConfig:
    steps = ns.max_steps or None
    model = {"preset": ns.preset}
    model.update({d: getattr(ns, d) for d in MODEL_DIMS if getattr(ns, d) is not None})
    train = {
        "out_dir": ns.out_dir,
        "dtype": ns.dtype,
        "seq_len": ns.seq_len,
        "batch_size": ns.batch_size,
        "accum_steps": ns.accum_steps,
        "max_steps": steps,
        "learning_rate": ns.learning_rate,
        "save_interval": ns.save_interval,
        "log_interval": ns.log_interval,
        "keep_last_checkpoints": ns.keep_last_checkpoints,
        "compile": ns.compile,
        "seed": ns.train_seed,
    }
    cfg = DistillConfig(
        out_dir=ns.out_dir,
        teacher=ns.teacher,
        ollama_url=ns.ollama_url,
        ollama_model=ns.ollama_model,
        base_url=ns.base_url,
        think=ns.think,
        temperature=ns.temperature,
        top_p=ns.top_p,
        max_new_tokens=ns.max_new_tokens,
        timeout_s=ns.timeout_s,
        retries=ns.max_retries,
        max_failures=ns.max_failures,
        workers=ns.workers,
        inflight=ns.inflight,
        lease_size=ns.lease_size,
        cold_samples=ns.cold_samples,
        total_samples=ns.total_samples,
        max_lag=ns.max_lag,
        max_tasks=ns.max_tasks,
        oracle_delay_s=ns.oracle_delay_s,
        task_seed=ns.seed,
        weights=ns.weights,
        lang=ns.lang,
        data_jsonl=ns.data_jsonl,
        init_from=ns.init_from,
        model=model,
        tokenizer_path=ns.tokenizer_path,
        train=train,
        reuse=ns.reuse,
        reuse_window=ns.reuse_window,
        bucket_sizes=ns.bucket_sizes,
        max_seconds=ns.max_seconds,
        eval_batch_size=ns.eval_batch_size,
        eval_interval=ns.eval_interval,
        eval_samples=ns.eval_samples,
        eval_max_new_tokens=ns.eval_max_new_tokens,
        address=ns.address,
        resume=ns.resume,
        num_cpus=ns.num_cpus,
        num_gpus=ns.num_gpus,
        learner_gpus=ns.learner_gpus,
        learner_gpu_memory=ns.learner_gpu_memory,
        eval_gpu_memory=ns.eval_gpu_memory,
        dashboard_host=ns.dashboard_host,
        dashboard_port=ns.dashboard_port,
        learner=ns.learner,
    )
    total = cfg.total_steps()
    cfg.train["warmup_steps"] = (
        ns.warmup_steps if ns.warmup_steps is not None else max(1, total // 20)
    )
    return cfg


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    cfg = config_from(ns)
    try:
        res = run(cfg)
    except ActorDied as e:
        raise with_resume(e, cfg.out_dir, "python launch/distill.py", argv) from None
    store = res["store"]
    print(
        "[distill] done "
        + json.dumps(
            {
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
            },
            ensure_ascii=False,
        ),
        flush=True,
    )
    held = []
    if res["evals"]:
        e = res["evals"][-1]
        per = " ".join(f"{c}={a:.2f}" for c, a in e["per_category"].items())
        held.append(f"step {e['step']}: accuracy {e['accuracy']:.3f} (n={e['n']}) {per}")
    print(summary("distill", cfg.out_dir, res, held), flush=True)
    return 0


if __name__ == "__main__":
    from minillm.cli import run as run_cli

    run_cli(main, prog="launch/distill.py")
    sys.exit(0)
