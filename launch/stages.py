"""The job MiniLLM exists for, end to end, with a table of what the models learned:

  A  oracle distillation of a fresh model (`launch/distill.py --teacher oracle`, Ray actors)
  B  A's model served by `minillm serve` (Ollama API) as the teacher of a fresh, smaller
     student (`--teacher ollama`), with and without sample reuse; generator scaling against
     that server (`launch/bench_distill.py`)
  C  GRPO from A's model on arithmetic word problems from the task generators
     (`launch/rl.py`, two seeds), its rollout/train overlap (`launch/bench_rl.py`) and GSM8K
     test accuracy before and after

    python launch/stages.py                        # laptop: `tiny` on the CPU, < 30 minutes
    python launch/stages.py --profile gpu          # `200mb` on one NVIDIA GPU (~20 minutes)
    python launch/stages.py --stages B,C           # again from the A already in --out_dir

Every stage runs the commands a user would (printed as they start), each logged to
<out_dir>/<stage>.log. At the end: <out_dir>/stages.json (everything measured),
<out_dir>/stages.md (the README's "What it learns" rows) and <out_dir>/accuracy.png
(held-out accuracy over wall time, one curve per run).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=192)  # fmt: skip

# Per profile: stage settings. Seconds are wall-time budgets of the training runs.
PROFILES: dict[str, dict] = {
    "cpu": dict(
        dtype="float32",
        a=dict(preset="tiny", workers=2, seq_len=192, batch_size=16, lr=2e-3, steps=600,
               seconds=540, eval_n=96, eval_every=200, eval_tokens=64, lang="en",
               weights="logic=1,multihop=1", lease=64, buckets="64,96,128,192"),
        b=dict(preset="custom", dims=dict(hidden_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, intermediate_size=384),
               workers=2, inflight=4, max_batch=16, seconds=120, steps=300, batch_size=16,
               lr=3e-3, reuse=4, scale="1,2,4", rounds=2, eval_every=100),
        # one seed and 8 steps: the 2-seed, 12-step C took 1519 s of the 2617 s total here
        c=dict(data="tasks:multihop", workers=1, steps=8, iters=2, rollouts=32, group=8,
               new_tokens=48, lr=1e-4, seeds=(0,), eval_n=400, bench_steps=2, gsm8k_n=0),
    ),
    # seconds-long, to check the mechanics (tests/test_stages.py); learns nothing
    "smoke": dict(
        dtype="float32",
        a=dict(preset="custom", dims=SMALL, workers=2, seq_len=192, batch_size=8, lr=3e-3,
               steps=16, seconds=120, eval_n=16, eval_every=8, eval_tokens=32, lang="en",
               weights="logic=1",
               lease=32, buckets="128,192"),
        b=dict(preset="custom", dims=SMALL, workers=2, inflight=2, max_batch=8, seconds=60,
               steps=6, batch_size=8, lr=3e-3, reuse=2, scale="1,2", rounds=1, eval_every=6),
        c=dict(data="tasks:multihop", workers=1, steps=2, iters=1, rollouts=8, group=4,
               new_tokens=24, lr=1e-4, seeds=(0,), eval_n=16, bench_steps=2, gsm8k_n=0,
               dynamic=False),
    ),
    "gpu": dict(
        dtype="bfloat16",
        a=dict(preset="200mb", workers=8, seq_len=320, batch_size=128, lr=6e-4, steps=5000,
               seconds=330, eval_n=280, eval_every=1000, eval_tokens=128, lang="both",
               weights=None, lease=256,
               buckets="64,96,128,160,192,256,320"),
        b=dict(preset="50mb", dims={}, workers=8, inflight=16, max_batch=128, seconds=90,
               steps=1500, batch_size=64, lr=1e-3, reuse=4, scale="1,2,4,8", rounds=2,
               eval_every=250),
        c=dict(data="tasks:math:word", workers=2, steps=80, iters=4, rollouts=64, group=8,
               new_tokens=96, lr=3e-5,
               seeds=(0, 1), eval_n=400, bench_steps=12, gsm8k_n=500,
               learner_gpus=0.5, worker_gpus=0.25),
    ),
}  # fmt: skip


# ---- running commands
def run_logged(cmd: list, log: Path, env: dict | None = None) -> list[str]:
    """Run `cmd`, echoing its output with the log's name as prefix and appending it to `log`;
    returns the lines. A failing command raises RuntimeError naming the log."""
    cmd = [str(c) for c in cmd]
    print(f"[stages] $ {' '.join(cmd)}", flush=True)
    lines = []
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env={**os.environ, **(env or {})})  # fmt: skip
        for line in p.stdout:
            f.write(line)
            f.flush()
            lines.append(line.rstrip("\n"))
            if not line.startswith("[learner]"):
                print(f"  {log.stem}| {line}", end="", flush=True)
        rc = p.wait()
    if rc:
        raise RuntimeError(f"{cmd[1]} exited with {rc}; see {log}")
    return lines


def done_json(lines: list[str], prefix: str) -> dict:
    for line in reversed(lines):
        if line.startswith(prefix):
            return json.loads(line[len(prefix) :])
    raise RuntimeError(f"no {prefix!r} line in the output")


def records(run_dir: Path, event: str) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event", "log") == event:
            out.append(rec)
    return out


def final_checkpoint(run_dir: Path) -> str:
    from minillm.checkpoint import find_checkpoint

    ck = find_checkpoint(run_dir)
    if ck is None:
        raise RuntimeError(f"{run_dir} has no checkpoint")
    return str(ck)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def device_name() -> str:
    import mlx.core as mx

    if mx.default_device() != mx.gpu:
        return f"CPU ({os.cpu_count()} cores)"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)  # fmt: skip
        if out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "GPU"


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)  # fmt: skip
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


# ---- measuring
def suite(n: int, weights: str | None, lang: str) -> list:
    from actors.evaluator import held_out_suite
    from minillm.config.flags import weights as parse_weights

    return held_out_suite(n, 10_000, parse_weights(weights) if weights else None, lang)


def score_model(model, tok, tasks, new_tokens: int = 128) -> dict:
    from actors.evaluator import score

    model.eval()
    return score(model, tok, tasks, new_tokens, batch_size=64)


def learner_rates(run_dir: Path) -> dict:
    """Mean learner throughput over its log records and the final distill status."""
    logs = [r for r in records(run_dir, "log") if r.get("step", 0) > 0]
    st = records(run_dir, "distill")
    last = st[-1] if st else {}
    tail = logs[len(logs) // 5 :] or logs  # after warm-up and the first compiles
    return {
        "learner_tok_s": sum(r["tok_s"] for r in tail) / max(len(tail), 1),
        "ms_step": sum(r["ms_step"] for r in tail) / max(len(tail), 1),
        "peak_mem_mib": max((r["peak_mem_mib"] for r in logs), default=0.0),
        "final_loss": logs[-1]["loss"] if logs else None,
        "committed": last.get("committed"),
        "seconds": last.get("seconds"),
        "rows_s": (last.get("committed") or 0) / max(last.get("seconds") or 1e-9, 1e-9),
        "wait_fraction": last.get("wait_fraction"),
        "reused": last.get("reused"),
        "accepted": last.get("accepted"),
        "rejected": last.get("rejected"),
        "errors": last.get("errors"),
        "errors_by_kind": last.get("errors_by_kind"),
        "retries": last.get("retries"),
    }


def curve(run_dir: Path, key: str = "accuracy") -> list[tuple[float, float]]:
    """(seconds since the run started, held-out accuracy) of its evaluations."""
    start = records(run_dir, "start")
    t0 = start[0]["time"] if start else None
    out = []
    for e in records(run_dir, "eval"):
        if key in e and t0 is not None:
            out.append((e["time"] - t0, e[key]))
    return out


def model_flags(S: dict) -> list:
    out = ["--preset", S["preset"]]
    for k, v in S.get("dims", {}).items():
        out += [f"--{k}", v]
    return out


def distill_cmd(P: dict, S: dict, out: Path, teacher: list, model: list) -> list:
    cmd = [PY, "launch/distill.py", *teacher, *model, "--out_dir", out, "--dtype", P["dtype"],
           "--workers", S["workers"], "--seq_len", S.get("seq_len", P["a"]["seq_len"]),
           "--batch_size", S["batch_size"], "--learning_rate", S["lr"], "--max_steps", S["steps"],
           "--max_seconds", S["seconds"], "--total_samples", 0, "--save_interval",
           S["eval_every"], "--eval_interval", S["eval_every"], "--eval_samples",
           P["a"]["eval_n"], "--eval_max_new_tokens", P["a"]["eval_tokens"],
           "--keep_last_checkpoints", 2, "--log_interval", 50,
           "--lang", P["a"]["lang"], "--bucket_sizes", P["a"]["buckets"]]  # fmt: skip
    if P["a"]["weights"]:
        cmd += ["--weights", P["a"]["weights"]]
    return cmd


# ---- the stages
def stage_a(P: dict, out: Path) -> dict:
    from actors.learner import model_args
    from minillm.checkpoint import load_or_init

    A = P["a"]
    fresh, tok = load_or_init(None, None, model_args({"preset": A["preset"], **A.get("dims", {})}), 1337)  # fmt: skip
    before = score_model(fresh, tok, suite(A["eval_n"], A["weights"], A["lang"]), A["eval_tokens"])
    del fresh
    print(f"[stages] A before: {before['accuracy']:.3f} {before['per_category']}", flush=True)
    run_dir = out / "A"
    cmd = distill_cmd(P, A, run_dir, ["--teacher", "oracle"], model_flags(A))
    cmd += ["--lease_size", A["lease"], "--cold_samples", A["batch_size"] * 4]
    t = time.time()
    done = done_json(run_logged(cmd, out / "A.log"), "[distill] done ")
    evals = records(run_dir, "eval")
    return {
        "stage": "A", "preset": A["preset"], "teacher": "oracle", "workers": A["workers"],
        "wall_s": time.time() - t, "steps": done["step"], "before": before,
        "after": evals[-1] if evals else None, "evals": evals, "curve": curve(run_dir),
        "rates": learner_rates(run_dir), "checkpoint": final_checkpoint(run_dir), "done": done,
    }  # fmt: skip


def wait_http(url: str, timeout: float = 300.0, proc=None) -> None:
    t = time.time()
    while time.time() - t < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def stage_b(P: dict, out: Path, a: dict) -> dict:
    B = P["b"]
    port, name = free_port(), "stage-a:latest"
    url = f"http://127.0.0.1:{port}"
    log = out / "B.log"
    serve = [PY, "-m", "minillm.serve", "--checkpoint", a["checkpoint"], "--port", port,
             "--model_name", name, "--max_batch", B["max_batch"], "--max_pending", 1024,
             "--max_num_predict", 256, "--gpu_memory", 0.2, "--quiet"]  # fmt: skip
    print(f"[stages] $ {' '.join(map(str, serve))}", flush=True)
    with log.open("a", encoding="utf-8") as f:
        server = subprocess.Popen([str(c) for c in serve], cwd=ROOT, stdout=f,
                                  stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_http(url + "/api/version", proc=server)
        scale_json = out / "B_scaling.json"
        run_logged([PY, "launch/bench_distill.py", "--ollama_url", url, "--ollama_model", name,
                    "--workers", B["scale"], "--inflight", B["inflight"], "--rounds", B["rounds"],
                    "--max_new_tokens", 160, "--no_learner", "--json", scale_json], log)  # fmt: skip
        scaling = json.loads(scale_json.read_text())
        model = model_flags(B)
        teacher = ["--teacher", "ollama", "--ollama_url", url, "--ollama_model", name,
                   "--max_new_tokens", 160, "--inflight", B["inflight"],
                   "--lease_size", B["inflight"] * 2, "--cold_samples", B["batch_size"]]  # fmt: skip
        runs = {}
        for reuse in (1, B["reuse"]):
            run_dir = out / f"B_reuse{reuse}"
            cmd = distill_cmd(P, B, run_dir, teacher, model) + ["--reuse", reuse]
            t = time.time()
            done = done_json(run_logged(cmd, log), "[distill] done ")
            evals = records(run_dir, "eval")
            runs[reuse] = {
                "wall_s": time.time() - t, "steps": done["step"], "after": evals[-1] if evals
                else None, "evals": evals, "curve": curve(run_dir), "rates": learner_rates(run_dir),
                "done": done,
            }  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    teacher_acc = a["after"]["accuracy"] if a.get("after") else None
    for r in runs.values():
        acc = r["after"]["accuracy"] if r["after"] else 0.0
        r["of_teacher"] = acc / teacher_acc if teacher_acc else None
    return {"stage": "B", "preset": B["preset"], "teacher": f"minillm serve {name} (A)",
            "workers": B["workers"],
            "teacher_accuracy": teacher_acc, "scaling": scaling,
            "runs": {str(k): v for k, v in runs.items()}}  # fmt: skip


def gsm8k_score(checkpoint: str, path: str, n: int) -> dict:
    from actors.evaluator import score_gsm8k
    from minillm.checkpoint import load
    from minillm.data.gsm8k import load_gsm8k

    model, tok = load(checkpoint)
    model.eval()
    return score_gsm8k(model, tok, load_gsm8k(path, limit=n), 256)


def stage_c(P: dict, out: Path, a: dict, gsm8k: str | None) -> dict:
    C = P["c"]
    log = out / "C.log"
    gpu = ["--learner_gpus", C["learner_gpus"], "--worker_gpus", C["worker_gpus"]] if (
        "learner_gpus" in C) else []  # fmt: skip
    data = C["data"]
    common = ["--init_from", a["checkpoint"], "--data_path", data,
              "--dtype", P["dtype"], "--seq_len", 320, "--workers", C["workers"],
              "--max_new_tokens", C["new_tokens"], *gpu]  # fmt: skip
    seeds = {}
    for seed in C["seeds"]:
        run_dir = out / f"C_seed{seed}"
        cmd = [PY, "launch/rl.py", *common, "--eval_data_path", data,
               "--gsm8k_eval_num", C["eval_n"], "--eval_max_new_tokens", C["new_tokens"],
               "--out_dir", run_dir, "--max_steps", C["steps"], "--iters", C["iters"],
               "--num_rollouts", C["rollouts"], "--samples_per_prompt", C["group"],
               "--prompts_per_rollout", max(1, C["rollouts"] // C["group"] // C["workers"]),
               "--temperature", 1.0, "--top_p", 1.0, "--learning_rate", C["lr"],
               "--seed", seed, "--run_bench", 0, "--limit", 20_000]  # fmt: skip
        if not C.get("dynamic", True):
            cmd.append("--no_dynamic_sampling")
        t = time.time()
        done = done_json(run_logged(cmd, log), "[rl] done ")
        before = done["before"]["gsm8k_accuracy"] if done.get("before") else None
        after = done["evals"][-1]["gsm8k_accuracy"] if done["evals"] else None
        seeds[seed] = {"wall_s": time.time() - t, "steps": done["step"], "before": before,
                       "after": after, "gain": None if None in (before, after) else after - before,
                       "evals": done["evals"], "curve": curve(run_dir, "gsm8k_accuracy"),
                       "rollout_tok_s": done["rollout_tok_s"], "checkpoint": final_checkpoint(run_dir)}  # fmt: skip
    bench = [PY, "launch/bench_rl.py", *common, "--steps", C["bench_steps"],
             "--num_rollouts", C["rollouts"], "--samples_per_prompt", C["group"]]  # fmt: skip
    if not C.get("dynamic", True):
        bench.append("--no_dynamic_sampling")
    lines = run_logged(bench, log)
    overlap = next((ln for ln in reversed(lines) if ln.startswith("overlapped / sequential")), "")
    res = {"stage": "C", "preset": a["preset"], "teacher": "reward (verified answer)", "data": data,
           "seeds": {str(k): v for k, v in seeds.items()}, "overlap": overlap,
           "overlap_table": [ln for ln in lines if ln.startswith("|")]}  # fmt: skip
    if gsm8k and C["gsm8k_n"]:
        first = seeds[C["seeds"][0]]
        res["gsm8k"] = {
            "before": gsm8k_score(a["checkpoint"], gsm8k, C["gsm8k_n"]),
            "after": gsm8k_score(first["checkpoint"], gsm8k, C["gsm8k_n"]),
        }
        print(f"[stages] GSM8K before/after: {res['gsm8k']}", flush=True)
    return res


# ---- the record
def per_suite(res: dict | None) -> str:
    if not res:
        return "-"
    cats = " ".join(f"{c} {v:.2f}" for c, v in res["per_category"].items())
    return f"**{res['accuracy']:.3f}** ({cats})"


def table(summary: dict) -> str:
    dev, ck, date = summary["device"], summary["commit"], summary["date"]
    head = ("| date | commit | stage | preset | device | teacher | steps | wall | held-out before "
            "| held-out after |\n|---|---|---|---|---|---|---|---|---|---|\n")  # fmt: skip
    rows = []
    a = summary.get("A")
    if a:
        rows.append(f"| {date} | {ck} | A distill | {a['preset']} | {dev} | oracle, {a['workers']} "
                    f"generators | {a['steps']} | {a['wall_s']:.0f} s | {per_suite(a['before'])} "
                    f"| {per_suite(a['after'])} |")  # fmt: skip
    b = summary.get("B")
    if b:
        for k, r in b["runs"].items():
            rows.append(f"| {date} | {ck} | B distill, reuse {k} | {b['preset']} | {dev} | "
                        f"{b['teacher']}, {b['workers']} workers | {r['steps']} | {r['wall_s']:.0f} s | 0 (fresh) "
                        f"| {per_suite(r['after'])}; {100 * (r['of_teacher'] or 0):.0f}% of the "
                        f"teacher's {b['teacher_accuracy']:.3f} |")  # fmt: skip
    c = summary.get("C")
    if c:
        for k, r in c["seeds"].items():
            g = c.get("gsm8k") if k == next(iter(c["seeds"])) else None
            gs = (f"; GSM8K test {g['before']['gsm8k_accuracy']:.3f} -> "
                  f"{g['after']['gsm8k_accuracy']:.3f} (n={g['after']['gsm8k_n']})") if g else ""  # fmt: skip
            rows.append(f"| {date} | {ck} | C GRPO, seed {k} | {c['preset']} | {dev} | reward | "
                        f"{r['steps']} | {r['wall_s']:.0f} s | {c['data']} {r['before']:.3f} | "
                        f"{c['data']} **{r['after']:.3f}** ({r['gain']:+.3f}){gs} |")  # fmt: skip
    return head + "\n".join(rows) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    if summary.get("A"):
        runs.append(("A: oracle -> " + summary["A"]["preset"], summary["A"]["curve"]))
    for k, r in (summary.get("B") or {}).get("runs", {}).items():
        runs.append((f"B: served A -> {summary['B']['preset']}, reuse {k}", r["curve"]))
    for k, r in (summary.get("C") or {}).get("seeds", {}).items():
        runs.append((f"C: GRPO seed {k} (word problems)", r["curve"]))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for label, pts in runs:
        ax = axes["ABC".index(label[0])]
        if pts:
            ax.plot([t / 60 for t, _ in pts], [a for _, a in pts], marker="o", label=label[3:])
    for ax, title in zip(axes, ("A: distill (oracle)", "B: distill (served A)", "C: GRPO"),
                         strict=True):  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("wall time (min)")
        ax.set_ylabel("held-out accuracy")
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)
    fig.suptitle(f"What it learns — {summary['device']}, {summary['commit']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--profile", default="cpu", choices=list(PROFILES))
    p.add_argument("--out_dir", default="out/stages")
    p.add_argument("--stages", default="A,B,C", help="which to run; B and C need A's folder")
    p.add_argument("--gsm8k", default=None, help="GSM8K test JSONL for stage C's before/after")
    p.add_argument("--a_seconds", type=float, default=None, help="override stage A's budget")
    p.add_argument("--c_steps", type=int, default=None, help="override stage C's GRPO steps")
    ns = p.parse_args(argv)
    P = json.loads(json.dumps(PROFILES[ns.profile]))
    if ns.a_seconds:
        P["a"]["seconds"] = ns.a_seconds
    if ns.c_steps:
        P["c"]["steps"] = ns.c_steps
    out = Path(ns.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sj = out / "stages.json"
    summary = json.loads(sj.read_text()) if sj.is_file() else {}
    summary.update(profile=ns.profile, device=device_name(), commit=commit(),
                   date=time.strftime("%Y-%m-%d"))  # fmt: skip
    t0 = time.time()
    todo = [s.strip().upper() for s in ns.stages.split(",") if s.strip()]
    for stage in todo:
        try:
            if stage == "A":
                summary["A"] = stage_a(P, out)
            elif stage == "B":
                summary["B"] = stage_b(P, out, summary["A"])
            elif stage == "C":
                summary["C"] = stage_c(P, out, summary["A"], ns.gsm8k)
            else:
                raise ValueError(f"unknown stage {stage!r}: use A, B, C")
        except (RuntimeError, KeyError) as e:  # a failed stage is recorded; the rest still runs
            summary.setdefault("failed", {})[stage] = repr(e)
            print(f"[stages] stage {stage} failed: {e!r}", flush=True)
        summary["seconds"] = time.time() - t0
        sj.write_text(json.dumps(summary, indent=1, default=str) + "\n", encoding="utf-8")
    md = table(summary)
    (out / "stages.md").write_text(md, encoding="utf-8")
    plot(summary, out / "accuracy.png")
    print("\n" + md, flush=True)
    for s in ("A", "B", "C"):
        if s in summary and s != "C" and summary[s].get("rates"):
            print(f"[stages] {s} rates: {json.dumps(summary[s]['rates'])}")
    if "B" in summary:
        for k, r in summary["B"]["runs"].items():
            print(f"[stages] B reuse {k} rates: {json.dumps(r['rates'])}")
        print("[stages] B scaling: " + json.dumps(summary["B"]["scaling"]))
    if "C" in summary:
        print(f"[stages] C {summary['C']['overlap']}")
    print(f"[stages] total {time.time() - t0:.0f} s; failed: {summary.get('failed', {})}")
    return 1 if summary.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
