"""GSM8K-format GRPO on a real local Ray cluster (one per module): sequential mode trains on-policy,
rollouts overlap training with versioned weights inside the staleness bound, every prompt is
trained at most once, the learner and evaluator report through metrics.jsonl, plots and
Prometheus, and a resumed run repeats no prompt. The held-out accuracy gain is asserted in
tests/test_rl_learning.py (no Ray: on-policy steps in one process)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from actors.rl import RLConfig, run
from tests.conftest import scrape
from tests.rl_data import sft_start, sums_set, write_jsonl

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("cluster")  # one local Ray for the module (conftest)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Train/test files and an SFT start (100 steps on the train solutions, OpenBLAS process)."""
    d = tmp_path_factory.mktemp("rl")
    train = sums_set(2000, 0)
    paths = {"train": write_jsonl(d / "train.jsonl", train),
             "test": write_jsonl(d / "test.jsonl", sums_set(200, 1))}  # fmt: skip
    return {**paths, "sft": sft_start(d / "sft", train, steps=100)}


def config(data: dict, out: Path, **kw) -> RLConfig:
    train = dict(dtype="float32", seq_len=96, max_steps=20, learning_rate=1e-4,
                 warmup_steps=0, min_lr_ratio=1.0, save_interval=20, log_interval=5,
                 keep_last_checkpoints=0, seed=0)  # fmt: skip
    train.update(kw.pop("train", {}))
    base = dict(out_dir=str(out), init_from=data["sft"], data_path=data["train"],
                eval_data_path=data["test"], workers=1, samples_per_prompt=8, num_rollouts=64,
                prompts_per_rollout=8, max_new_tokens=12, temperature=1.0, top_p=1.0,
                train=train, iters=1, run_eval=True, run_bench=False, gsm8k_eval_num=200,
                eval_max_new_tokens=12, learner_cpus=0, status_interval_s=5.0)  # fmt: skip
    return RLConfig(**{**base, **kw})


def rl_events(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == "rl"]


def test_sequential_mode_trains_on_policy_and_evaluates(data, tmp_path):
    cfg = config(data, tmp_path / "learn", sequential=True, train=dict(max_steps=4))
    res = run(cfg, eval_before=True)
    before = res["before"]["gsm8k_accuracy"]
    after = res["evals"][-1]["gsm8k_accuracy"]
    print(f"GSM8K-format accuracy {before:.3f} -> {after:.3f}; {res['seconds']:.0f}s")
    assert res["evals"][-1]["step"] == 4 and res["before"]["gsm8k_n"] == 200
    assert 0 <= before <= 1 and 0 <= after <= 1
    # sequential: every step trained on groups sampled with the policy it updated
    assert all(e["staleness"] == 0 for e in rl_events(tmp_path / "learn"))


def test_rollouts_overlap_training_with_versioned_weights(data, tmp_path):
    seen = {"metrics": ""}
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                text = scrape()
                if "minillm_rl_reward" in text:
                    seen["metrics"] = text
            except httpx.HTTPError:
                pass
            done.wait(1.0)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    cfg = config(
        data, tmp_path / "run", gsm8k_eval_num=32, train=dict(max_steps=12, save_interval=6)
    )
    res = run(cfg)
    done.set()
    w.join()
    assert [e["step"] for e in res["evals"]] == [12] and 0 <= res["evals"][0]["gsm8k_accuracy"] <= 1
    ev = rl_events(tmp_path / "run")
    assert [e["step"] for e in ev] == list(range(1, 13))
    # overlap: rollouts ran with policy versions the learner published while it trained
    versions = {r["version"] for r in res["rollouts"]}
    assert len(versions) > 5 and max(versions) >= 9
    assert max(e["staleness"] for e in ev) <= 1  # the buffer's bound
    assert any(e["staleness"] > 0 for e in ev)  # trained on rollouts made while training
    trained = [i for e in ev for i in e["prompts"]]
    assert len(trained) == len(set(trained)) == 12 * 8
    text = seen["metrics"] + scrape()
    for name in ("minillm_rl_reward", "minillm_rl_pass_rate", "minillm_rl_staleness",
                 "minillm_rollout_tokens_per_second", "minillm_gsm8k_accuracy",
                 "minillm_learner_loss", "minillm_rl_clip_fraction"):  # fmt: skip
        assert f"ray_{name}" in text, name
    plots = {Path(p).name for p in res["plots"]}
    assert {"reward.png", "pass_rate.png", "accuracy.png", "loss.png", "run.png"} <= plots


def test_resume_repeats_no_prompt(data, tmp_path):
    out = tmp_path / "resume"
    first = run(config(data, out, train=dict(max_steps=4, save_interval=2), run_eval=False))
    assert first["learner"]["step"] == 4
    cfg = config(data, out, train=dict(max_steps=8, save_interval=2), run_eval=False, resume=True)
    second = run(cfg)
    assert second["learner"]["step"] == 8
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["start_step"] == 4
    ev = rl_events(out)
    assert [e["step"] for e in ev] == list(range(1, 9))
    trained = [i for e in ev for i in e["prompts"]]
    assert len(trained) == len(set(trained)) == 8 * 8
    time.sleep(0)  # nothing else: the cursor is in the checkpoint
    state = json.loads((out / "checkpoints" / "step_00000008" / "state.json").read_text())
    assert set(trained) <= set(state["cursor"]["consumed"])
