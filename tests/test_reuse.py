"""The shard stream's reuse policy: when the next fresh row is not committed, a batch is topped
up with recent rows (freshest first, each used at most K times) instead of waiting."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest

from actors.generator import TeacherGenerator
from actors.shards import ShardStore
from actors.stream import ShardStream
from minillm.tokenizer import load_tokenizer

TASKS = {"seed": 5, "weights": None, "lang": "both", "lease_size": 16}
ORACLE = {"kind": "oracle"}


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def rows(batch) -> list[tuple]:
    return [tuple(np.trim_zeros(r, "b").tolist()) for r in batch.inputs]


def commit(store, g, lease):
    store.commit(lease, lease * 16, 16, *g.generate(lease, lease * 16, 16))


def test_reuse_tops_up_freshest_first_at_most_k_uses(tmp_path, tok):
    store, g = ShardStore(tmp_path, TASKS), TeacherGenerator(0, ORACLE, TASKS)
    commit(store, g, 0)
    s = ShardStream(tmp_path, tok, 256, 8, poll_s=0.01, reuse=3)
    fresh = rows(next(s)) + rows(next(s))
    assert s.consumed == 16 and s.reused == 0 and len(set(fresh)) == 16
    again = rows(next(s))  # nothing new committed: the 8 freshest rows again, newest first
    assert again == fresh[::-1][:8] and s.consumed == 16 and s.reused == 8
    uses = Counter(fresh)
    for _ in range(3):
        b = rows(next(s))
        assert len(set(b)) == len(b) == 8  # no row twice in one batch
        uses.update(b)
    uses.update(again)
    assert s.reused == 32 and set(uses.values()) == {3}  # 16 rows x 3 uses, then none left
    threading.Timer(0.3, s.stop.set).start()
    with pytest.raises(StopIteration):  # every row used K times: it waits, as without reuse
        next(s)


def test_fresh_rows_come_first_and_keep_their_order(tmp_path, tok):
    store, g = ShardStore(tmp_path, TASKS), TeacherGenerator(0, ORACLE, TASKS)
    commit(store, g, 0)
    s = ShardStream(tmp_path, tok, 256, 8, poll_s=0.01, reuse=4)
    seen_fresh = rows(next(s)) + rows(next(s))
    next(s)  # a reused batch
    commit(store, g, 1)
    commit(store, g, 2)
    store.close()
    while True:
        try:
            b = next(s)
        except StopIteration:
            break
        before = s.consumed
        seen_fresh += [r for r in rows(b) if r not in seen_fresh]
        assert before <= 48
    assert s.consumed == 48
    plain = ShardStream(tmp_path, tok, 256, 8)  # the same store read without reuse
    order = [r for b in plain for r in rows(b)]
    assert seen_fresh == order


def test_reuse_one_is_the_plain_stream_and_bad_values_fail(tmp_path, tok):
    store, g = ShardStore(tmp_path, TASKS), TeacherGenerator(0, ORACLE, TASKS)
    commit(store, g, 0)
    s = ShardStream(tmp_path, tok, 256, 8, poll_s=0.01)
    next(s), next(s)
    threading.Timer(0.3, s.stop.set).start()
    with pytest.raises(StopIteration):
        next(s)
    assert s.reused == 0 and len(s.recent) == 0
    with pytest.raises(ValueError, match="reuse must be >= 1"):
        ShardStream(tmp_path, tok, 256, 8, reuse=0)
