"""`minillm plot` draws every curve a run folder has: training, RL and accuracy over time."""

from __future__ import annotations

import json

import pytest

from minillm import cli
from minillm.train.plots import accuracy_over_time, plot_run, series

PNG = b"\x89PNG\r\n\x1a\n"


def grpo_run(tmp_path):
    t0 = 1_800_000_000.0
    recs = [{"event": "start", "step": 0, "time": t0}]
    for s in range(1, 7):
        recs.append({"event": "rl", "step": s, "reward": 0.1 * s, "pass_rate": 0.05 * s,
                     "resp_len": 40 - s, "staleness": 0.5, "time": t0 + 10 * s})  # fmt: skip
        recs.append({"event": "log", "step": s, "loss": 1.0 / s, "lr": 1e-4, "tok_s": 900.0,
                     "grad_norm": 0.5, "kl": 0.01 * s, "clip_frac": 0.02, "time": t0 + 10 * s})  # fmt: skip
    recs += [{"event": "eval", "step": s, "gsm8k_accuracy": 0.1 + 0.05 * s, "time": t0 + 60 * s}
             for s in (0, 3, 6)]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in recs) + '{"cut off by a kill'
    )
    return tmp_path


def test_rl_run_gets_reward_kl_and_accuracy_panels(tmp_path, capsys):
    run = grpo_run(tmp_path)
    names = [s[0] for s in series(json_records(run))]
    assert names == ["loss", "lr", "tok_s", "grad_norm", "reward", "pass_rate", "resp_len",
                     "staleness", "kl", "clip_frac"]  # fmt: skip
    acc = accuracy_over_time(json_records(run))
    assert acc == {"GSM8K test": [(0.0, 0.1), (3.0, 0.25), (6.0, 0.4)]}  # minutes since start
    with pytest.raises(SystemExit) as e:
        cli.main(["plot", str(run)])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("reward.png", "kl.png", "accuracy.png", "run.png", "loss.png"):
        assert name in out
        assert (run / "plots" / name).read_bytes()[:8] == PNG


def test_a_run_without_evals_or_rl_draws_only_what_it_has(tmp_path):
    recs = [{"event": "log", "step": s, "loss": 2.0 - 0.1 * s, "time": float(s)} for s in range(5)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    files = {f.name for f in plot_run(tmp_path)}
    assert files == {"loss.png", "run.png"}


def json_records(run):
    from minillm.train.plots import read_records

    return read_records(run)
