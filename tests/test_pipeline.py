"""`minillm pipeline --smoke-test`: offline pretrain -> SFT -> infer on the shipped data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from minillm.blas import openblas_path
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def run_pipeline(cwd: Path, *args: str, **env: str) -> SimpleNamespace:
    """The pipeline's exit code, its output (stderr merged, through a pipe as in CI or `| tee`)
    and `gaps`: the seconds before its first line and between its lines."""
    full_env = {k: v for k, v in os.environ.items() if k != "CLEANUP_SMOKE"}  # the default keeps
    full_env.update(env)
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "minillm.pipeline", *args], cwd=cwd,
                         env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)  # fmt: skip
    lines, times = [], [0.0]
    for line in p.stdout:
        lines.append(line.rstrip("\n"))
        times.append(time.monotonic() - t0)
    rc = p.wait(timeout=1200)
    out = "\n".join(lines)
    assert rc == 0, out[-4000:]
    gaps = [(b - a, line) for a, b, line in zip(times, times[1:], lines, strict=False)]
    return SimpleNamespace(returncode=rc, stdout=out, gaps=gaps)


def quiet_spells(r: SimpleNamespace, limit: float = 10.0) -> list[tuple[float, str]]:
    """(seconds, the line that ended it) of every silence over `limit` seconds."""
    return [(round(g, 1), line[:80]) for g, line in r.gaps if g > limit]


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["event"] == "log"]


def test_short_smoke_stages_resume_and_cleanup(tmp_path):
    smoke = json.loads((ROOT / "minillm/assets/pipeline/smoke.json").read_text())
    smoke.update(log_interval=1, save_interval=2)
    smoke["pretrain"]["max_steps"] = smoke["sft"]["max_steps"] = 4
    smoke["distill"].update(total_samples=64, cold_samples=16, eval_samples=4)
    smoke["distill"]["train"]["max_steps"] = 3
    smoke["rl"].update(num_rollouts=8, samples_per_prompt=4, prompts_per_rollout=2,
                       max_new_tokens=8, gsm8k_eval_num=4)  # fmt: skip
    smoke["rl"]["train"]["max_steps"] = 2
    (tmp_path / "short.json").write_text(json.dumps(smoke))
    short = {}
    cfg = ["--config", str(tmp_path / "short.json")]
    r = run_pipeline(tmp_path, "--smoke-test", *cfg, **short)
    out = tmp_path / "out" / "smoke"
    assert "[pipeline] pretrain: minillm train --config" in r.stdout
    sft_job = json.loads((out / "sft" / "train.json").read_text())["config"]
    assert sft_job["init_from"].endswith("pretrain/checkpoints/step_00000004")  # SFT on pretrain
    assert (out / "pretrain" / "checkpoints" / "step_00000004" / "model.safetensors").is_file()
    assert (out / "sft" / "checkpoints" / "step_00000004" / "config.json").is_file()
    assert len(losses(out / "pretrain")) == 4 and len(losses(out / "sft")) == 4
    assert (out / "sft" / "plots" / "loss.png").is_file()
    assert "[pipeline] infer step_00000004:" in r.stdout
    # the distill stage ran the actor system from the SFT checkpoint, in a child process
    assert (
        f"[pipeline] distill: minillm distill --config {Path('out/smoke/distill/distill.json')}"
        in r.stdout
    )
    assert f"[pipeline] rl: minillm rl --config {Path('out/smoke/rl/rl.json')}" in r.stdout
    assert "[ray] dashboard: http://127.0.0.1:" in r.stdout
    assert (out / "distill" / "checkpoints" / "step_00000003" / "model.safetensors").is_file()
    assert (out / "distill" / "shards" / "manifest.json").is_file()
    assert "distilled student:" in r.stdout and "accuracy" in r.stdout
    # and a few GRPO steps on generated problems
    assert (out / "rl" / "checkpoints" / "step_00000002" / "model.safetensors").is_file()
    assert "RL policy:" in r.stdout and "2 GRPO steps" in r.stdout
    again = run_pipeline(tmp_path, "--smoke_test", *cfg, **short)  # finished stages are skipped
    assert again.stdout.count("done already") == 4
    gone = run_pipeline(tmp_path, "--smoke-test", *cfg, "--skip-infer", CLEANUP_SMOKE="1")
    assert "removed out/smoke" in gone.stdout and not out.exists()


@pytest.mark.skipif(
    openblas_path() is None, reason="the full smoke run needs OpenBLAS to finish in minutes on CPU"
)
def test_full_smoke_loss_falls_and_model_knows_its_name(tmp_path):
    r = run_pipeline(tmp_path, "--smoke-test")
    out = tmp_path / "out" / "smoke"
    pre, sft = losses(out / "pretrain"), losses(out / "sft")
    assert pre[0] - pre[-1] > 3.0, pre
    assert sft[-1] < sft[0], sft
    assert "identity answer mentions MiniLLM: yes" in r.stdout, r.stdout[-1500:]
    assert not quiet_spells(r), quiet_spells(r)  # a line at least every 10 s, through a pipe
    assert r.gaps[0][0] < 5 and "\x1b[" not in r.stdout and "\r" not in r.stdout
    assert "distilled student:" in r.stdout and "held-out synthetic accuracy" in r.stdout
    assert "RL policy:" in r.stdout and "4 GRPO steps" in r.stdout
    block = r.stdout[r.stdout.index("[pipeline] summary") :]
    assert "talk to it  minillm chat --checkpoint" in block and "held-out    RL:" in block


def test_ray_stage_runs_in_a_child_from_its_config_file(tmp_path, capsys):
    """The pipeline's Ray stages run as `python -m minillm.<verb> --config <file>` (Ray's
    fork+exec can hang in a process whose MLX threads ran): the file holds the stage's whole
    config, and the child's failure ends the pipeline with the child's exit code."""
    from minillm.config.distill import DistillConfig
    from minillm.distill import config_from
    from minillm.pipeline import run_isolated

    port = free_port()
    cfg = DistillConfig(out_dir=str(tmp_path / "d"), ollama_url=f"http://127.0.0.1:{port}",
                        workers=3, task_seed=7)  # fmt: skip
    with pytest.raises(SystemExit) as e:
        run_isolated("distill", cfg, tmp_path / "d")
    assert e.value.code == 2  # the child's one-line "cannot reach Ollama" error
    err = capsys.readouterr().err
    assert "the distill stage failed (exit 2)" in err and "again to continue" in err
    path = tmp_path / "d" / "distill.json"
    assert config_from(["--config", str(path)]) == cfg  # the child read back the same config
