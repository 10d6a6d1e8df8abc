"""`minillm pipeline`: download -> pretrain -> SFT -> [distill] -> [RL] -> infer, resuming stages
that have checkpoints.

    minillm pipeline --smoke_test      # shipped data, tiny model, no network, a few minutes on CPU;
                                       # its distill stage runs the Ray actor system (oracle teacher)
    minillm pipeline                   # MiniMind data, 200mb preset, bf16
    minillm pipeline --distill         # + distillation from the Ollama teacher at OLLAMA_URL
    minillm pipeline --rl              # + GSM8K GRPO (downloads openai/gsm8k)
    minillm pipeline -- --compile      # everything after `--` goes to both training stages

Settings come from one of two small files, minillm/assets/pipeline/smoke.json and full.json
(typed by `minillm.config.pipeline.PipelineConfig`), then the environment variables of the
predecessor's run_mlx.sh (OUT_DIR, DATA_DIR, PRESET, DTYPE, PRETRAIN_SEQ_LEN, SFT_MAX_STEPS,
INFER_PROMPT, ...; README "Environment variables"). Pretrain, SFT and inference run in this
process; the Ray stages (distill, RL) run as `python -m minillm.distill --config
<out>/distill/distill.json` (resp. `minillm.rl`, `rl/rl.json`) in a child process, the same
command a user would type: Ray starts its GCS and raylet by fork+exec with a Python
`preexec_fn`, which can deadlock in a process whose MLX threads have run (a smoke pipeline hung
27 minutes in `ray.init` that way).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from minillm.config.pipeline import PipelineConfig, StageConfig, load_settings
from minillm.config.ray import RayConfig

IDENTITY_PROMPT = "请介绍一下自己。"


def latest(run_dir: Path) -> Path | None:
    from minillm.checkpoint import list_checkpoints

    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def data_spec(name: str, task: str) -> str:
    if name != "smoke":
        return name
    from minillm.data.smoke import SMOKE_DIR

    return str(Path(SMOKE_DIR) / f"smoke_{task}.jsonl")


def stage_job(task: str, s: PipelineConfig, run_dir: Path, init_from: str | None, extra: list[str]):
    """The `TrainJob` of a pretrain or SFT stage; `extra` are `minillm train` flags over it."""
    from minillm.config.job import DataConfig, TrainJob
    from minillm.train.cli import parser
    from minillm.train.config import TrainConfig

    st: StageConfig = getattr(s, task)
    train = TrainConfig(
        out_dir=str(run_dir), seq_len=st.seq_len, batch_size=st.batch_size,
        accum_steps=st.accum_steps, epochs=st.epochs, learning_rate=st.learning_rate,
        dtype=s.dtype, log_interval=s.log_interval, save_interval=s.save_interval,
        keep_last_checkpoints=s.keep_last_checkpoints, max_steps=st.max_steps,
        warmup_steps=max(1, st.max_steps // 20) if st.max_steps else None,
    )  # fmt: skip
    data = DataConfig(
        data_path=data_spec(st.data, task), data_dir=s.data_dir, task=task,
        max_download_mb=s.max_download_mb, bucket_sizes=st.bucket_sizes if task == "sft" else None,
    )  # fmt: skip
    resume = str(run_dir) if latest(run_dir) is not None else None
    job = TrainJob(
        data=data, model=dataclasses.replace(s.model, preset=s.preset), train=train,
        resume=resume, init_from=None if resume else init_from,
    )  # fmt: skip
    return parser().over(job, extra) if extra else job


def done_already(name: str, run_dir: Path, steps: int | None) -> Path | None:
    """The stage's last checkpoint when it has reached `steps`, else None."""
    from minillm.train.state import load_state

    ckpt = latest(run_dir)
    if ckpt is not None and steps and load_state(ckpt).step >= steps:
        print(f"[pipeline] {name}: done already ({ckpt}), skipping", flush=True)
        return ckpt
    return None


def run_stage(
    task: str, s: PipelineConfig, out: Path, init_from: str | None, extra: list[str]
) -> Path:
    from minillm.train.cli import run

    run_dir = out / task
    done = done_already(task, run_dir, getattr(s, task).max_steps)
    if done is not None:
        return done
    job = stage_job(task, s, run_dir, init_from, extra)
    print(f"[pipeline] {task}: minillm train --config {run_dir / 'train.json'}", flush=True)
    run(job)
    return latest(run_dir)


def stage_train(t, s: PipelineConfig):
    """A Ray stage's TrainConfig with the pipeline-wide dtype and checkpoint count."""
    return dataclasses.replace(t, dtype=s.dtype, keep_last_checkpoints=s.keep_last_checkpoints)


def run_isolated(verb: str, cfg: RayConfig, run_dir: Path) -> None:
    """Run a Ray stage as `python -m minillm.<verb> --config <run_dir>/<verb>.json` in a child
    process (module docstring: why); a failure ends the pipeline with the child's exit code."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = cfg.save(run_dir / f"{verb}.json")
    cmd = [sys.executable, "-m", f"minillm.{verb}", "--config", str(path)]
    print(f"[pipeline] {verb}: minillm {verb} --config {path}", flush=True)
    rc = subprocess.run(cmd).returncode
    if rc != 0:
        print(
            f"[pipeline] the {verb} stage failed (exit {rc}); its lines are above. Run the same "
            "`minillm pipeline` command again to continue (finished stages are skipped).",
            file=sys.stderr, flush=True,
        )  # fmt: skip
        raise SystemExit(rc)


def run_distill(s: PipelineConfig, out: Path, init_from: str) -> Path:
    """The distillation stage: `s.distill` in a child process (`run_isolated`)."""
    run_dir = out / "distill"
    steps = s.distill.total_steps()
    done = done_already("distill", run_dir, steps)
    if done is not None:
        return done
    train = dataclasses.replace(stage_train(s.distill.train, s), save_interval=steps)
    cfg = dataclasses.replace(
        s.distill, out_dir=str(run_dir), init_from=init_from, train=train,
        resume=(run_dir / "shards" / "manifest.json").is_file(),
    )  # fmt: skip
    cfg.check()
    run_isolated("distill", cfg, run_dir)
    return latest(run_dir)


def run_rl(s: PipelineConfig, out: Path, init_from: str) -> Path:
    """The GRPO stage: `s.rl` in a child process (`run_isolated`); `rl_data` "generated"
    writes GSM8K-format addition problems (`make_arithmetic_set`)."""
    from minillm.data.gsm8k import make_arithmetic_set

    run_dir = out / "rl"
    done = done_already("rl", run_dir, s.rl.max_steps)
    if done is not None:
        return done
    data = {"data_path": s.rl.data_path, "eval_data_path": s.rl.eval_data_path}
    if s.rl_data == "generated":
        for key, name, n, seed in (
            ("data_path", "train", 2000, 0),
            ("eval_data_path", "test", 200, 1),
        ):
            path = run_dir / "data" / f"{name}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                "".join(json.dumps(r) + "\n" for r in make_arithmetic_set(n, seed, "add")),
                encoding="utf-8",
            )
            data[key] = str(path)
    cfg = dataclasses.replace(
        s.rl, out_dir=str(run_dir), init_from=init_from, train=stage_train(s.rl.train, s),
        resume=latest(run_dir) is not None, **data,
    )  # fmt: skip
    cfg.check()
    run_isolated("rl", cfg, run_dir)
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
        "--smoke_test",
        "--smoke-test",
        dest="smoke",
        action="store_true",
        help="shipped data, tiny model, no network; out/smoke is kept (CLEANUP_SMOKE=1 deletes it)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="a settings file like minillm/assets/pipeline/full.json (default: that, or "
        "smoke.json with --smoke_test); environment variables override it",
    )
    p.add_argument("--download_only", "--download-only", dest="download_only", action="store_true")
    p.add_argument("--infer_only", "--infer-only", "--infer-demo", dest="infer_only",
                   action="store_true")  # fmt: skip
    p.add_argument("--infer_checkpoint", "--infer-checkpoint", dest="infer_checkpoint")
    p.add_argument(
        "--distill",
        action="store_true",
        help="run the distillation stage (always on with --smoke_test, where it uses the oracle)",
    )
    p.add_argument(
        "--rl",
        action="store_true",
        help="run GSM8K GRPO from the SFT model (always on with --smoke_test: a few steps on "
        "generated problems)",
    )
    for stage in ("pretrain", "sft", "distill", "rl", "infer"):
        p.add_argument(f"--skip_{stage}", f"--skip-{stage}", dest=f"skip_{stage}",
                       action="store_true")  # fmt: skip
    ns = p.parse_args(argv)
    s = load_settings(ns.smoke, config=ns.config)
    out = Path(s.out_dir)
    # a smoke run keeps out/smoke for the README's next commands (a rerun skips what is done);
    # CLEANUP_SMOKE=1 starts it fresh and deletes it at the end
    cleanup = ns.smoke and s.cleanup_smoke
    if cleanup and out.exists():
        shutil.rmtree(out)
    t0 = time.time()
    try:
        if ns.download_only or not (ns.smoke or ns.infer_only):
            from minillm.data.hub import resolve_data_spec

            for task in ("pretrain", "sft"):
                resolve_data_spec(
                    data_spec(getattr(s, task).data, task),
                    task=task,
                    data_dir=s.data_dir,
                    max_download_mb=s.max_download_mb,
                )
            if ns.download_only:
                return 0
        ckpt = Path(ns.infer_checkpoint) if ns.infer_checkpoint else None
        student = policy = None
        if not ns.infer_only:
            if not ns.skip_pretrain:
                ckpt = run_stage("pretrain", s, out, s.init_from or None, extra)
            if not ns.skip_sft:
                init = s.init_from or (str(ckpt) if ckpt else None)
                ckpt = run_stage("sft", s, out, init, extra)
            if (ns.smoke or ns.distill) and not ns.skip_distill:
                init = s.init_from or (str(ckpt) if ckpt else None)
                if init is None:
                    raise FileNotFoundError("the distill stage needs a checkpoint to start from")
                student = run_distill(s, out, init)
            if (ns.smoke or ns.rl) and not ns.skip_rl:
                init = s.init_from or (str(ckpt) if ckpt else None)
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

    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in recs if r.get("event") == "eval" and "gsm8k_accuracy" in r]
    rewards = [r["reward"] for r in recs if r.get("event") == "rl"]
    parts = [f"{len(rewards)} GRPO steps, mean reward {sum(rewards) / max(len(rewards), 1):.3f}"]
    if evals:
        e = evals[-1]
        parts.append(f"held-out accuracy {e['gsm8k_accuracy']:.3f} on {e['gsm8k_n']}")
    return "; ".join(parts)


def infer(ckpt: Path, s: PipelineConfig) -> str:
    from minillm.checkpoint import load
    from minillm.generate import generate

    model, tok = load(ckpt)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": s.infer_prompt}], add_generation_prompt=True, tokenize=True
    )
    gen = generate(
        model,
        tok,
        [ids],
        max_new_tokens=s.infer_max_new_tokens,
        temperature=s.infer_temperature,
        top_p=s.infer_top_p,
        seed=0,
    )[0]
    print(f"[pipeline] infer {ckpt.name}: {s.infer_prompt} -> {gen.text}", flush=True)
    return gen.text


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
