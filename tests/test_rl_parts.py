"""RL actor parts as plain objects (no Ray): replay buffer, GRPO batch stream, prompt order,
weight snapshots."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pyarrow as pa
import pytest

from actors.buffer import ReplayBuffer
from actors.rl_learner import GroupStream
from actors.rollout import SCHEMA, PromptOrder
from actors.weights import load_snapshot, snapshot
from minillm.rl.grpo import GRPOConfig
from tests.conftest import make_tiny

ROOT = Path(__file__).resolve().parent.parent


def groups_table(prompts: dict[int, list[float]], version: int = 0) -> pa.Table:
    cols = {k: [] for k in SCHEMA.names}
    for i, rewards in prompts.items():
        for j, r in enumerate(rewards):
            row = dict(prompt_index=i, sample=j, version=version, prompt_ids=[1, 5, 6],
                       tokens=[7, 8 + j, 2], logprobs=[-1.0, -0.5, -0.1], reward=r,
                       correct=r > 0, finish="stop")  # fmt: skip
            for k, v in row.items():
                cols[k].append(v)
    return pa.Table.from_pydict(cols, schema=SCHEMA)


def test_buffer_keeps_groups_whole_and_drops_flat_and_stale():
    buf = ReplayBuffer(group_size=4, max_staleness=1)
    info = buf.add(groups_table({0: [1, 0, 0, 1], 1: [0, 0, 0, 0], 2: [1, 1, 1, 1]}, version=0))
    assert info["depth"] == 1 and info["flat"] == 2
    buf.add(groups_table({3: [0, 1, 0, 0]}, version=2))
    got = buf.take(2, version=2, timeout=0.1)  # prompt 0 is two versions old: dropped
    assert [g.column("prompt_index")[0].as_py() for g in got["groups"]] == [3]
    assert all(len(g) == 4 for g in got["groups"])
    assert sorted(got["dropped"]["flat"]) == [1, 2] and got["dropped"]["stale"] == [0]
    assert buf.take(1, 2, timeout=0.05)["dropped"] == {"flat": [], "stale": []}  # reported once
    with pytest.raises(ValueError, match="group of 4"):
        buf.add(groups_table({9: [1, 0]}))


def test_buffer_drops_leftovers_the_next_batch_could_not_use():
    buf = ReplayBuffer(group_size=2, max_staleness=1)
    buf.add(groups_table({0: [1, 0], 1: [0, 1]}, version=0))
    buf.add(groups_table({2: [1, 0]}, version=1))
    got = buf.take(1, version=1, timeout=0.1)  # batch full: prompt 1 (v0) is too old for v2
    assert [g.column("prompt_index")[0].as_py() for g in got["groups"]] == [0]
    assert got["dropped"]["stale"] == [1] and buf.depth() == 1
    assert buf.stats()["stale"] == 1
    # a take that cannot fill its batch returns what there is (the learner asks again)
    buf.add(groups_table({3: [0, 1]}, version=1))
    got = buf.take(3, version=1, timeout=0.05)
    assert [g.column("prompt_index")[0].as_py() for g in got["groups"]] == [2, 3]


def test_buffer_take_waits_for_add():
    buf = ReplayBuffer(group_size=2, max_staleness=5, dynamic_sampling=False)
    threading.Timer(0.3, lambda: buf.add(groups_table({4: [1, 0]}))).start()
    t0 = time.monotonic()
    got = buf.take(1, 0, timeout=5.0)
    assert len(got["groups"]) == 1 and 0.2 < time.monotonic() - t0 < 3.0


def test_group_stream_batches_advantages_and_cursor():
    _, tok = make_tiny()
    buf = ReplayBuffer(group_size=4, max_staleness=1)
    buf.add(groups_table({0: [1, 0, 0, 1], 1: [0, 0, 0, 0], 2: [0, 1, 0, 0], 3: [1, 1, 0, 0]}))
    stream = GroupStream(buf.take, tok, 2, GRPOConfig(group_size=4), seq_len=16)
    b = next(stream)
    assert b["inputs"].shape[0] == 8 and b["mask"].sum() == 8 * 3
    np.testing.assert_allclose(b["adv"][:4], [1, -1, -1, 1], atol=1e-4)
    assert b["adv"][4:].sum() == pytest.approx(0, abs=1e-5) and b["adv"][5] > 0
    np.testing.assert_allclose(b["old_logp"][0][b["mask"][0] == 1], [-1.0, -0.5, -0.1], rtol=1e-6)
    assert stream.last["prompts"] == [0, 2] and stream.last["pass_rate"] == pytest.approx(3 / 8)
    assert stream.consumed == {0, 1, 2}  # the flat group counts as consumed
    state = stream.state()
    again = GroupStream(buf.take, tok, 2, GRPOConfig(group_size=4), seq_len=16)
    again.restore(state)
    assert again.consumed == {0, 1, 2}
    stream.stop.set()
    with pytest.raises(StopIteration):
        next(stream)  # one group left, then stopped while waiting
    with pytest.raises(ValueError, match="RL cursor"):
        again.restore({"version": 1, "kind": "shards"})


def test_prompt_order_is_a_permutation_per_epoch():
    order = PromptOrder(10, seed=3)
    first = [order(i) for i in range(10)]
    second = [order(i) for i in range(10, 20)]
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    assert [PromptOrder(10, 3)(i) for i in range(10)] == first


def test_weight_snapshot_round_trip_bf16():
    a, _ = make_tiny(seed=1, dtype="bfloat16")
    b, _ = make_tiny(seed=2, dtype="bfloat16")
    snap = snapshot(a)
    assert all(isinstance(v[0], np.ndarray) for v in snap.values())
    load_snapshot(b, snap)
    x = mx.array([[1, 2, 3, 4]])
    assert mx.array_equal(a(x), b(x)).item()
    assert all(v.dtype == mx.bfloat16 for v in [b(x)])


def test_core_spec_parses_and_bad_specs_name_the_part():
    from actors.cores import parse

    assert parse("learner=0-2,rollout-0=3;rollout-1=3") == {
        "learner": {0, 1, 2},
        "rollout-0": {3},
        "rollout-1": {3},
    }
    with pytest.raises(ValueError, match="'learner' is not NAME=CORES"):
        parse("learner")
    with pytest.raises(ValueError, match="'rollout-0=a': cores must be N or N-M"):
        parse("rollout-0=a")


def test_pin_moves_every_thread_of_the_process_to_its_cores():
    import subprocess
    import sys

    code = (
        "import os, threading, time\n"
        "ev = threading.Event()\n"
        "t = threading.Thread(target=ev.wait, daemon=True); t.start()\n"  # a thread started before pinning
        "from actors.cores import pin\n"
        "print(sorted(pin('learner')), sorted(pin('rollout-9') or []))\n"
        "print(sorted(os.sched_getaffinity(t.native_id)))\n"
        "ev.set()\n"
    )
    env = {**os.environ, "MINILLM_CORES": "learner=0", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[0] []", "[0]"]
    env["MINILLM_CORES"] = "learner=4096"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "cannot use" in out.stderr


def test_prompt_cursor_gives_lost_prompts_out_again_first():
    from actors.rl import PromptCursor

    c = PromptCursor(consumed={1})
    assert c.take(3) == [0, 2, 3]
    c.give_back([2, 3])  # a dead worker's prompts
    assert c.take(3) == [2, 3, 4]
    c.give_back([1])  # already consumed (trained on): not handed out again
    assert c.take(1) == [5]


def test_rl_with_no_reward_signal_stops_with_the_fix():
    from actors.driver import DistillError
    from actors.rl import FlatWarning

    guard = FlatWarning(groups_per_step=2, limit_steps=5)
    guard({"flat": 3, "added": 4, "depth": 1})  # one informative group at added=4
    for added in range(5, 13):  # 8 flat groups in a row: under the limit of 10
        guard({"flat": added - 1, "added": added, "depth": 0})
    with pytest.raises(DistillError, match="nothing to learn from.*--sft_steps"):
        guard({"flat": 13, "added": 14, "depth": 0})  # 10 in a row
