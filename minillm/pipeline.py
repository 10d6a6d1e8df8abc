"""`minillm pipeline`: download -> pretrain -> SFT -> [distill] -> [RL] -> infer, resuming stages
that have checkpoints.

    minillm pipeline --smoke-test      # shipped data, tiny model, no network, a few minutes on CPU;
                                       # its distill stage runs the Ray actor system (oracle teacher)
    minillm pipeline                   # MiniMind data, 200mb preset, bf16
    minillm pipeline --distill         # + distillation from the Ollama teacher at OLLAMA_URL
    minillm pipeline --rl              # + GSM8K GRPO (downloads openai/gsm8k)
    minillm pipeline -- --compile      # everything after `--` goes to both training stages

Settings come from environment variables named as in the predecessor's run_mlx.sh (OUT_DIR,
DATA_DIR, PRESET, DTYPE, PRETRAIN_SEQ_LEN, SFT_MAX_STEPS, INFER_PROMPT, ...); see `settings()`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

SMOKE_MODEL = [
    "--preset",
    "custom",
    "--hidden_size",
    "128",
    "--num_hidden_layers",
    "2",
    "--num_attention_heads",
    "4",
    "--num_key_value_heads",
    "2",
    "--intermediate_size",
    "384",
]
IDENTITY_PROMPT = "请介绍一下自己。"


def settings(smoke: bool) -> dict[str, str]:
    """Defaults of a normal and a smoke run; each can be overridden by the same-named env var."""
    if smoke:
        d = dict(
            OUT_DIR="out/smoke",
            PRESET="custom",
            DTYPE="float32",
            PRETRAIN_SEQ_LEN="128",
            PRETRAIN_BATCH_SIZE="16",
            PRETRAIN_ACCUM_STEPS="1",
            PRETRAIN_MAX_STEPS="60",
            PRETRAIN_LR="3e-3",
            SFT_SEQ_LEN="128",
            SFT_BATCH_SIZE="16",
            SFT_ACCUM_STEPS="1",
            SFT_MAX_STEPS="150",
            SFT_LR="2e-3",
            LOG_INTERVAL="10",
            SAVE_INTERVAL="100",
            INFER_MAX_NEW_TOKENS="48",
            PRETRAIN_DATA="smoke",
            SFT_DATA="smoke",
            SFT_BUCKET_SIZES="48,64,96",
            DISTILL_TEACHER="oracle",
            GEN_WORKERS="2",
            DISTILL_MAX_STEPS="20",
            DISTILL_TOTAL_SAMPLES="400",
            DISTILL_COLD_SAMPLES="64",
            DISTILL_SEQ_LEN="192",
            DISTILL_BATCH_SIZE="8",
            DISTILL_LR="1e-3",
            DISTILL_EVAL_SAMPLES="16",
            DISTILL_EVAL_MAX_NEW_TOKENS="48",
            RL_DATA="generated",
            RL_EVAL_DATA="generated",
            RL_MAX_STEPS="4",
            NUM_ROLLOUTS="16",
            SAMPLES_PER_PROMPT="4",
            MAX_NEW_TOKENS="32",
            RL_LR="1e-4",
            RL_SEQ_LEN="192",
            ROLLOUT_WORKERS="1",
            GSM8K_EVAL_NUM="16",
        )
    else:
        d = dict(
            OUT_DIR="out",
            PRESET="200mb",
            DTYPE="bfloat16",
            PRETRAIN_SEQ_LEN="1024",
            PRETRAIN_BATCH_SIZE="1",
            PRETRAIN_ACCUM_STEPS="8",
            PRETRAIN_MAX_STEPS="",
            PRETRAIN_LR="5e-4",
            SFT_SEQ_LEN="512",
            SFT_BATCH_SIZE="1",
            SFT_ACCUM_STEPS="8",
            SFT_MAX_STEPS="",
            SFT_LR="1e-4",
            LOG_INTERVAL="10",
            SAVE_INTERVAL="200",
            INFER_MAX_NEW_TOKENS="200",
            PRETRAIN_DATA="minimind:auto",
            SFT_DATA="minimind:auto",
            SFT_BUCKET_SIZES="128,256",
            DISTILL_TEACHER="ollama",
            GEN_WORKERS="8",
            DISTILL_MAX_STEPS="2000",
            DISTILL_TOTAL_SAMPLES="20000",
            DISTILL_COLD_SAMPLES="512",
            DISTILL_SEQ_LEN="512",
            DISTILL_BATCH_SIZE="2",
            DISTILL_LR="1e-4",
            DISTILL_EVAL_SAMPLES="64",
            DISTILL_EVAL_MAX_NEW_TOKENS="128",
            RL_DATA="gsm8k:train",
            RL_EVAL_DATA="gsm8k:test",
            RL_MAX_STEPS="1000",
            NUM_ROLLOUTS="64",
            SAMPLES_PER_PROMPT="8",
            MAX_NEW_TOKENS="256",
            RL_LR="2e-5",
            RL_SEQ_LEN="512",
            ROLLOUT_WORKERS="2",
            GSM8K_EVAL_NUM="200",
        )
    d.update(
        DATA_DIR="dataset/minimind",
        MAX_DOWNLOAD_MB="2048",
        KEEP_LAST_CHECKPOINTS="3",
        PRETRAIN_EPOCHS="1",
        SFT_EPOCHS="1",
        INFER_PROMPT=IDENTITY_PROMPT,
        INFER_TEMPERATURE="0",
        INFER_TOP_P="1.0",
        MLX_INIT_FROM="",
    )
    return {k: os.environ.get(k, v) for k, v in d.items()}


def latest(run_dir: Path) -> Path | None:
    from minillm.train.state import list_checkpoints

    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def data_spec(name: str, task: str) -> str:
    if name != "smoke":
        return name
    from minillm.data.smoke import SMOKE_DIR

    return str(Path(SMOKE_DIR) / f"smoke_{task}.jsonl")


def stage_args(
    task: str, s: dict[str, str], run_dir: Path, init_from: str | None, extra: list[str]
) -> list[str]:
    p = task.upper()
    args = [
        "--task",
        task,
        "--data_path",
        data_spec(s[f"{p}_DATA"], task),
        "--data_dir",
        s["DATA_DIR"],
        "--max_download_mb",
        s["MAX_DOWNLOAD_MB"],
        "--seq_len",
        s[f"{p}_SEQ_LEN"],
        "--batch_size",
        s[f"{p}_BATCH_SIZE"],
        "--accum_steps",
        s[f"{p}_ACCUM_STEPS"],
        "--epochs",
        s[f"{p}_EPOCHS"],
        "--learning_rate",
        s[f"{p}_LR"],
        "--dtype",
        s["DTYPE"],
        "--log_interval",
        s["LOG_INTERVAL"],
        "--save_interval",
        s["SAVE_INTERVAL"],
        "--keep_last_checkpoints",
        s["KEEP_LAST_CHECKPOINTS"],
        "--out_dir",
        str(run_dir),
    ]
    if task == "sft" and s["SFT_BUCKET_SIZES"]:
        args += ["--bucket_sizes", s["SFT_BUCKET_SIZES"]]
    if s[f"{p}_MAX_STEPS"]:
        steps = int(s[f"{p}_MAX_STEPS"])
        args += ["--max_steps", str(steps), "--warmup_steps", str(max(1, steps // 20))]
    if latest(run_dir) is not None:
        args += ["--resume", str(run_dir)]
    elif init_from:
        args += ["--init_from", init_from]
    elif s["PRESET"] == "custom":
        args += SMOKE_MODEL
    else:
        args += ["--preset", s["PRESET"]]
    return args + extra


def run_stage(
    task: str, s: dict[str, str], out: Path, init_from: str | None, extra: list[str]
) -> Path:
    from minillm.train.cli import main as train_main
    from minillm.train.state import load_state

    run_dir = out / task
    ckpt = latest(run_dir)
    steps = s[f"{task.upper()}_MAX_STEPS"]
    if ckpt is not None and steps and load_state(ckpt).step >= int(steps):
        print(f"[pipeline] {task}: done already ({ckpt}), skipping", flush=True)
        return ckpt
    args = stage_args(task, s, run_dir, init_from, extra)
    print(f"[pipeline] {task}: minillm train {' '.join(args)}", flush=True)
    train_main(args)
    return latest(run_dir)


def run_distill(s: dict[str, str], out: Path, init_from: str) -> Path:
    """The distillation stage: `python -m actors.distill_cli` (Ray, in its own process)."""
    import subprocess

    from minillm.train.state import load_state

    run_dir = out / "distill"
    ckpt = latest(run_dir)
    steps = int(s["DISTILL_MAX_STEPS"])
    if ckpt is not None and load_state(ckpt).step >= steps:
        print(f"[pipeline] distill: done already ({ckpt}), skipping", flush=True)
        return ckpt
    args = [
        "--teacher", s["DISTILL_TEACHER"], "--workers", s["GEN_WORKERS"],
        "--out_dir", str(run_dir), "--init_from", init_from, "--dtype", s["DTYPE"],
        "--max_steps", str(steps), "--warmup_steps", str(max(1, steps // 20)),
        "--total_samples", s["DISTILL_TOTAL_SAMPLES"], "--cold_samples", s["DISTILL_COLD_SAMPLES"],
        "--seq_len", s["DISTILL_SEQ_LEN"], "--batch_size", s["DISTILL_BATCH_SIZE"],
        "--learning_rate", s["DISTILL_LR"], "--log_interval", s["LOG_INTERVAL"],
        "--save_interval", str(steps), "--keep_last_checkpoints", s["KEEP_LAST_CHECKPOINTS"],
        "--eval_samples", s["DISTILL_EVAL_SAMPLES"],
        "--eval_max_new_tokens", s["DISTILL_EVAL_MAX_NEW_TOKENS"],
    ]  # fmt: skip
    if (run_dir / "shards" / "manifest.json").is_file():
        args.append("--resume")
    cmd = [sys.executable, "-m", "actors.distill_cli", *args]
    print(f"[pipeline] distill: python launch/distill.py {' '.join(args)}", flush=True)
    r = subprocess.run(cmd)
    if r.returncode != 0:
        raise ValueError(f"the distill stage failed (exit {r.returncode}); see its output above")
    return latest(run_dir)


def run_rl(s: dict[str, str], out: Path, init_from: str) -> Path:
    """The GRPO stage: `python -m actors.rl_cli` (Ray, in its own process); "generated" data
    are GSM8K-format addition problems written by `make_arithmetic_set`."""
    import json
    import subprocess

    from minillm.data.gsm8k import make_arithmetic_set
    from minillm.train.state import load_state

    run_dir = out / "rl"
    ckpt = latest(run_dir)
    steps = int(s["RL_MAX_STEPS"])
    if ckpt is not None and load_state(ckpt).step >= steps:
        print(f"[pipeline] rl: done already ({ckpt}), skipping", flush=True)
        return ckpt
    data = {}
    for key, name, n, seed in (("RL_DATA", "train", 2000, 0), ("RL_EVAL_DATA", "test", 200, 1)):
        if s[key] != "generated":
            data[name] = s[key]
            continue
        path = run_dir / "data" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "".join(json.dumps(r) + "\n" for r in make_arithmetic_set(n, seed, "add")),
            encoding="utf-8",
        )
        data[name] = str(path)
    args = [
        "--init_from", init_from, "--out_dir", str(run_dir), "--data_path", data["train"],
        "--eval_data_path", data["test"], "--data_dir", "dataset/gsm8k",
        "--max_steps", str(steps), "--iters", "1", "--num_rollouts", s["NUM_ROLLOUTS"],
        "--samples_per_prompt", s["SAMPLES_PER_PROMPT"], "--max_new_tokens", s["MAX_NEW_TOKENS"],
        "--eval_max_new_tokens", s["MAX_NEW_TOKENS"], "--learning_rate", s["RL_LR"],
        "--seq_len", s["RL_SEQ_LEN"], "--dtype", s["DTYPE"], "--workers", s["ROLLOUT_WORKERS"],
        "--gsm8k_eval_num", s["GSM8K_EVAL_NUM"], "--run_bench", "0",
        "--no_dynamic_sampling",  # a weak smoke model may answer whole groups wrong: keep going
        "--log_interval", "1" if steps <= 10 else s["LOG_INTERVAL"],
        "--prompts_per_rollout", str(int(s["NUM_ROLLOUTS"]) // int(s["SAMPLES_PER_PROMPT"])),
    ]  # fmt: skip
    if ckpt is not None:
        args.append("--resume")
    print(f"[pipeline] rl: python launch/rl.py {' '.join(args)}", flush=True)
    r = subprocess.run([sys.executable, "-m", "actors.rl_cli", *args])
    if r.returncode != 0:
        raise ValueError(f"the rl stage failed (exit {r.returncode}); see its output above")
    return latest(run_dir)


def summary_block(out: Path, ckpt: Path | None, student: Path | None, policy: Path | None) -> str:
    """Where each stage's model and curves are, and what the stages measured."""
    rows = []
    for name, path in (("SFT model", ckpt), ("distilled", student), ("RL policy", policy)):
        if path is not None:
            rows.append((name, str(path)))
    plots = sorted(str(p) for p in out.glob("*/plots/run.png"))
    rows += [("plots", p) for p in plots]
    if student is not None:
        rows.append(("held-out", f"distilled: {eval_line(student.parent.parent)}"))
    if policy is not None:
        rows.append(("held-out", f"RL: {rl_line(policy.parent.parent)}"))
    if ckpt is not None:
        rows.append(("talk to it", f"minillm chat --checkpoint {ckpt}"))
    return "\n".join(["[pipeline] summary", *(f"  {k:<11} {v}" for k, v in rows)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(
        prog="minillm pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--smoke-test",
        "--smoke_test",
        dest="smoke",
        action="store_true",
        help="shipped data, tiny model, no network; out/smoke is kept (CLEANUP_SMOKE=1 deletes it)",
    )
    p.add_argument("--download-only", dest="download_only", action="store_true")
    p.add_argument("--infer-only", "--infer-demo", dest="infer_only", action="store_true")
    p.add_argument("--infer-checkpoint", dest="infer_checkpoint", default=None)
    p.add_argument(
        "--distill",
        action="store_true",
        help="run the distillation stage (always on with --smoke-test, where it uses the oracle)",
    )
    p.add_argument(
        "--rl",
        action="store_true",
        help="run GSM8K GRPO from the SFT model (always on with --smoke-test: a few steps on "
        "generated problems)",
    )
    for stage in ("pretrain", "sft", "distill", "rl", "infer"):
        p.add_argument(f"--skip-{stage}", dest=f"skip_{stage}", action="store_true")
    ns = p.parse_args(argv)
    s = settings(ns.smoke)
    out = Path(s["OUT_DIR"])
    # a smoke run keeps out/smoke for the README's next commands (a rerun skips what is done);
    # CLEANUP_SMOKE=1 starts it fresh and deletes it at the end
    cleanup = ns.smoke and os.environ.get("CLEANUP_SMOKE", "0") == "1"
    if cleanup and out.exists():
        shutil.rmtree(out)
    t0 = time.time()
    try:
        if ns.download_only or not (ns.smoke or ns.infer_only):
            from minillm.data.hub import resolve_data_spec

            for task in ("pretrain", "sft"):
                resolve_data_spec(
                    data_spec(s[f"{task.upper()}_DATA"], task),
                    task=task,
                    data_dir=s["DATA_DIR"],
                    max_download_mb=float(s["MAX_DOWNLOAD_MB"]),
                )
            if ns.download_only:
                return 0
        ckpt = Path(ns.infer_checkpoint) if ns.infer_checkpoint else None
        student = policy = None
        if not ns.infer_only:
            if not ns.skip_pretrain:
                ckpt = run_stage("pretrain", s, out, s["MLX_INIT_FROM"] or None, extra)
            if not ns.skip_sft:
                init = s["MLX_INIT_FROM"] or (str(ckpt) if ckpt else None)
                ckpt = run_stage("sft", s, out, init, extra)
            if (ns.smoke or ns.distill) and not ns.skip_distill:
                init = s["MLX_INIT_FROM"] or (str(ckpt) if ckpt else None)
                if init is None:
                    raise FileNotFoundError("the distill stage needs a checkpoint to start from")
                student = run_distill(s, out, init)
            if (ns.smoke or ns.rl) and not ns.skip_rl:
                init = s["MLX_INIT_FROM"] or (str(ckpt) if ckpt else None)
                if init is None:
                    raise FileNotFoundError("the rl stage needs a checkpoint to start from")
                policy = run_rl(s, out, init)
        ckpt = ckpt or latest(out / "sft") or latest(out / "pretrain")
        if ckpt is None:
            raise FileNotFoundError(
                f"no checkpoint to run inference with under {out}; train "
                "first or pass --infer-checkpoint"
            )
        if not ns.skip_infer:
            reply = infer(ckpt, s)
            if ns.smoke:
                ok = "MiniLLM" in reply
                print(f"[pipeline] identity answer mentions MiniLLM: {'yes' if ok else 'no'}")
        if student is not None:
            # the chat demo above uses the SFT model: a few distillation steps on synthetic
            # tasks teach the reply format of those tasks, not conversation
            print(f"[pipeline] distilled student: {student} ({eval_line(student.parent.parent)})")
        if policy is not None:
            print(f"[pipeline] RL policy: {policy} ({rl_line(policy.parent.parent)})")
        last = policy or student or ckpt
        print(f"[pipeline] done in {time.time() - t0:.0f}s; last checkpoint {last}")
        print(summary_block(out, ckpt, student, policy), flush=True)
    finally:
        if cleanup and out.exists():
            shutil.rmtree(out)
            print(f"[pipeline] removed {out} (CLEANUP_SMOKE=1)")
    return 0


def eval_line(run_dir: Path) -> str:
    """The last evaluation a distillation run logged, as text."""
    import json

    evals = [
        r
        for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        if r.get("event") == "eval"
    ]
    if not evals:
        return "no evaluation logged"
    e = evals[-1]
    return f"held-out synthetic accuracy {e['accuracy']:.3f} on {e['n']} tasks at step {e['step']}"


def rl_line(run_dir: Path) -> str:
    """The last GSM8K evaluation and mean reward an RL run logged, as text."""
    import json

    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in recs if r.get("event") == "eval" and "gsm8k_accuracy" in r]
    rewards = [r["reward"] for r in recs if r.get("event") == "rl"]
    parts = [f"{len(rewards)} GRPO steps, mean reward {sum(rewards) / max(len(rewards), 1):.3f}"]
    if evals:
        e = evals[-1]
        parts.append(f"held-out accuracy {e['gsm8k_accuracy']:.3f} on {e['gsm8k_n']}")
    return "; ".join(parts)


def infer(ckpt: Path, s: dict[str, str]) -> str:
    from minillm.checkpoint import load
    from minillm.generate import generate

    model, tok = load(ckpt)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": s["INFER_PROMPT"]}], add_generation_prompt=True, tokenize=True
    )
    gen = generate(
        model,
        tok,
        [ids],
        max_new_tokens=int(s["INFER_MAX_NEW_TOKENS"]),
        temperature=float(s["INFER_TEMPERATURE"]),
        top_p=float(s["INFER_TOP_P"]),
        seed=0,
    )[0]
    print(f"[pipeline] infer {ckpt.name}: {s['INFER_PROMPT']} -> {gen.text}", flush=True)
    return gen.text


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
