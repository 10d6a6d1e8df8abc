"""Shard store, shard stream and generator as plain objects (no Ray): durability, dedup across
restarts, exact stream resume, teacher faults kept out of the shards."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from actors.generator import TeacherGenerator
from actors.shards import MANIFEST, SCHEMA, ShardStore, read_manifest, read_table
from actors.stream import ShardStream
from minillm.tokenizer import load_tokenizer
from tests.conftest import free_port

TASKS = {"seed": 3, "weights": None, "lang": "both", "lease_size": 16}
ORACLE = {"kind": "oracle"}


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def gen_lease(g: TeacherGenerator, lease: int, size: int = 16):
    return g.generate(lease, lease * size, size)


def test_commit_writes_shard_and_manifest(tmp_path):
    store = ShardStore(tmp_path, TASKS)
    g = TeacherGenerator(0, ORACLE, TASKS, inflight=2)
    table, stats = gen_lease(g, 0)
    assert len(table) == 16 and sum(stats["accepted"].values()) == 16  # the oracle is right
    entry = store.commit(0, 0, 16, table, stats)
    assert entry["rows"] == 16 and entry["file"] == "shard-00000000.arrow"
    m = read_manifest(tmp_path)
    assert m["entries"][0]["accepted"] == stats["accepted"]
    back = read_table(tmp_path / entry["file"])
    assert back.schema == SCHEMA and back.column("task_index").to_pylist() == list(range(16))
    # no temp files are left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, entry["file"]]


def test_duplicates_dropped_across_restarts_and_repeats_ignored(tmp_path):
    g = TeacherGenerator(0, ORACLE, TASKS)
    store = ShardStore(tmp_path, TASKS)
    t0, s0 = gen_lease(g, 0)
    store.commit(0, 0, 16, t0, s0)
    del store
    store = ShardStore(tmp_path, TASKS)  # a restart reloads the prompt hashes
    again = store.commit(0, 0, 16, t0, s0)  # the same lease: not written twice
    assert again["repeat"] and store.summary()["rows"] == 16
    # the same prompts under another lease number are duplicates
    e = store.commit(5, 80, 16, t0, s0)
    assert e["rows"] == 0 and e["duplicates"] == 16 and e["file"] is None
    assert store.summary()["duplicates"] == 16 and store.leases_done() == [0, 5]


def test_orphan_shard_from_a_crash_is_removed(tmp_path):
    store = ShardStore(tmp_path, TASKS)
    g = TeacherGenerator(0, ORACLE, TASKS)
    t, _ = gen_lease(g, 1)
    (tmp_path / "shard-00000001.arrow").write_bytes(b"half written")  # no manifest entry
    (tmp_path / f".{MANIFEST}.tmp-123").write_text("{")
    store = ShardStore(tmp_path, TASKS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST]
    assert store.summary()["rows"] == 0 and len(t) == 16


def test_max_rows_trims_and_closes(tmp_path):
    store = ShardStore(tmp_path, TASKS, max_rows=20)
    g = TeacherGenerator(0, ORACLE, TASKS)
    store.commit(0, 0, 16, *gen_lease(g, 0))
    e = store.commit(1, 16, 16, *gen_lease(g, 1))
    assert e["rows"] == 4 and e["over_target"] == 12
    s = store.summary()
    assert s["rows"] == 20 and s["closed"]
    assert store.commit(2, 32, 16, *gen_lease(g, 2)) is None  # closed: nothing more is written


def test_other_task_settings_refuse_to_reopen(tmp_path):
    ShardStore(tmp_path, TASKS)
    with pytest.raises(ValueError, match="seed"):
        ShardStore(tmp_path, {**TASKS, "seed": 4})


def test_damaged_manifest_and_shard_name_the_file(tmp_path):
    store = ShardStore(tmp_path, TASKS)
    store.commit(0, 0, 16, *gen_lease(TeacherGenerator(0, ORACLE, TASKS), 0))
    (tmp_path / "shard-00000000.arrow").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="shard-00000000.arrow: not a readable Arrow shard"):
        ShardStore(tmp_path, TASKS)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json: bad JSON"):
        ShardStore(tmp_path, TASKS)


def test_jsonl_export_matches_shards_and_is_rebuilt(tmp_path):
    out = tmp_path / "synth.jsonl"
    store = ShardStore(tmp_path / "s", TASKS, export_jsonl=str(out))
    g = TeacherGenerator(0, ORACLE, TASKS)
    for lease in range(2):
        store.commit(lease, lease * 16, 16, *gen_lease(g, lease))
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 32
    rec = json.loads(lines[0])
    assert [t["role"] for t in rec["conversations"]] == ["system", "user", "assistant"]
    out.write_text(lines[0] + "\n")  # a crash lost lines: reopening rebuilds the export
    ShardStore(tmp_path / "s", TASKS, export_jsonl=str(out))
    assert out.read_text(encoding="utf-8").splitlines() == lines


def test_teacher_faults_never_reach_the_shards(tmp_path):
    port = free_port()  # nothing listens on it
    spec = {"kind": "ollama", "url": f"http://127.0.0.1:{port}", "model": "m", "retries": 0}
    g = TeacherGenerator(0, spec, TASKS, inflight=4)
    table, stats = g.generate(0, 0, 8)
    assert len(table) == 0 and stats["errors"] == {"connect": 8} and not stats["accepted"]
    store = ShardStore(tmp_path, TASKS)
    e = store.commit(0, 0, 8, table, stats)
    assert e["file"] is None and e["errors"] == {"connect": 8}


def _fill(tmp_path, leases: int, closed: bool = True) -> ShardStore:
    store = ShardStore(tmp_path, TASKS)
    g = TeacherGenerator(0, ORACLE, TASKS)
    for lease in range(leases):
        store.commit(lease, lease * 16, 16, *gen_lease(g, lease))
    if closed:
        store.close()
    return store


def _drain(stream) -> list:
    return [(b.inputs.copy(), b.mask.copy()) for b in stream]


def test_stream_reads_in_manifest_order_and_resumes_exactly(tmp_path, tok):
    _fill(tmp_path, 3)
    full = ShardStream(tmp_path, tok, seq_len=256, batch_size=5)
    batches = _drain(full)
    assert full.consumed == 48 and full.dropped == 0
    assert len(batches) == 10  # 48 rows: 9 full batches + 3 rows
    assert all(b[0].shape[0] == 5 for b in batches)
    first = ShardStream(tmp_path, tok, seq_len=256, batch_size=5)
    head = [next(first) for _ in range(4)]
    state = json.loads(json.dumps(first.state()))
    rest = ShardStream(tmp_path, tok, seq_len=256, batch_size=5)
    rest.restore(state)
    got = [(b.inputs, b.mask) for b in head] + _drain(rest)
    assert len(got) == len(batches)
    for (x1, m1), (x2, m2) in zip(got, batches, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(m1, m2)
    with pytest.raises(ValueError, match="batch_size was 5"):
        ShardStream(tmp_path, tok, seq_len=256, batch_size=4).restore(state)


def test_stream_waits_for_commits_and_cold_start(tmp_path, tok):
    store = ShardStore(tmp_path, TASKS)
    g = TeacherGenerator(0, ORACLE, TASKS)
    stream = ShardStream(tmp_path, tok, 256, 8, cold_samples=32, poll_s=0.01)
    got = []
    reader = threading.Thread(target=lambda: got.extend(_drain(stream)))
    reader.start()
    time.sleep(0.3)
    store.commit(0, 0, 16, *gen_lease(g, 0))  # below the cold start: nothing read yet
    time.sleep(0.3)
    assert stream.consumed == 0
    store.commit(1, 16, 16, *gen_lease(g, 1))
    time.sleep(0.5)
    assert stream.consumed == 32  # both leases read, waiting for more
    store.commit(2, 32, 16, *gen_lease(g, 2))
    store.close()
    reader.join(timeout=20)
    assert not reader.is_alive() and len(got) == 6 and stream.consumed == 48
    assert stream.wait_s >= 0.5 and stream.wait_after_cold_s > 0


def test_stream_stop_gives_the_partial_batch_back(tmp_path, tok):
    _fill(tmp_path, 1, closed=False)
    stream = ShardStream(tmp_path, tok, 256, 10, poll_s=0.01)
    next(stream)
    state = stream.state()
    threading.Timer(0.2, stream.stop.set).start()
    with pytest.raises(StopIteration):
        next(stream)  # 6 rows left, then it waits for more until stopped
    assert stream.state() == state


def test_shard_with_wrong_row_count_is_reported(tmp_path, tok):
    _fill(tmp_path, 1)
    m = json.loads((tmp_path / MANIFEST).read_text())
    m["entries"][0]["rows"] = 99
    (tmp_path / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ValueError, match="manifest says 99"):
        next(ShardStream(tmp_path, tok, 96, 4))


def test_schema_is_enforced_on_commit(tmp_path):
    store = ShardStore(tmp_path, TASKS)
    bad = pa.table({"prompt_hash": ["x"]})
    with pytest.raises((ValueError, pa.ArrowInvalid, KeyError)):
        store.commit(0, 0, 1, bad, {})


def test_stream_reads_leases_in_order_whatever_the_commit_order(tmp_path, tok):
    g = TeacherGenerator(0, ORACLE, TASKS)
    out = {}
    for name, order in (("inorder", (0, 1, 2)), ("shuffled", (2, 0, 1))):
        store = ShardStore(tmp_path / name, TASKS)
        for lease in order:
            store.commit(lease, lease * 16, 16, *gen_lease(g, lease))
        store.close()
        out[name] = _drain(ShardStream(tmp_path / name, tok, 256, 6))
    assert len(out["inorder"]) == 8
    for (x1, m1), (x2, m2) in zip(out["inorder"], out["shuffled"], strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(m1, m2)


def test_closed_store_gap_is_skipped(tmp_path, tok):
    store = ShardStore(tmp_path, TASKS)
    g = TeacherGenerator(0, ORACLE, TASKS)
    for lease in (0, 2):  # lease 1 was out when the store reached its target
        store.commit(lease, lease * 16, 16, *gen_lease(g, lease))
    store.close()
    stream = ShardStream(tmp_path, tok, 256, 8)
    assert len(_drain(stream)) == 4 and stream.consumed == 32 and stream.last_task == 47
