"""The learner's view of the shard store: SFT batches over committed shards, in manifest order,
waiting for new commits instead of ending at an epoch boundary.

Rows are read in lease order (lease 0, 1, 2, ... whatever order they were committed in), so
the batches depend only on the task stream and the teacher, never on which generator was
faster: a run is reproducible under its seeds, and `restore(state())` continues with exactly the
batches an uninterrupted learner would have taken. The cursor is `(lease, row)`: the next row
to read. A closed store may lack leases that were out when it reached its target; those gaps
are skipped.

Reuse (`reuse=K > 1`): when the next fresh row is not committed yet, the batch is topped up
with recently read rows instead of waiting, freshest first, each row used at most K times in
all (its fresh read included). Fresh rows keep their lease order and always come first, so the
fresh-row cursor (and the backpressure it drives) is unchanged; which rows get reused depends
on when data arrives, so a run with reuse is reproducible in its fresh data, not bit for bit.
The reuse window is not checkpointed: after a resume it starts empty (no row exceeds K).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from actors.shards import read_manifest, read_table
from minillm.data.batching import Batch, default_label_buckets

STATE_VERSION = 2


def conversation(row: dict) -> list[dict]:
    return [
        {"role": "system", "content": row["system"]},
        {"role": "user", "content": row["prompt"]},
        {"role": "assistant", "content": row["reply"]},
    ]


class ShardStream:
    """Iterator of SFT `Batch`es over `shard_dir`'s committed rows.

    Fresh starts wait until `cold_samples` rows are committed (or the store is closed). When
    the next row is not committed yet it polls the manifest every `poll_s` seconds; the time
    spent so is `wait_s` (and `wait_after_cold_s` once the cold start is over). It ends when the
    store is closed and every row is read, or when `stop` is set (the batch being built is
    dropped; the cursor stays after the last batch returned).
    """

    def __init__(
        self,
        shard_dir: str | Path,
        tokenizer,
        seq_len: int,
        batch_size: int,
        cold_samples: int = 0,
        poll_s: float = 0.1,
        bucket_sizes: list[int] | None = None,
        stop: threading.Event | None = None,
        reuse: int = 1,
        reuse_window: int = 4096,
    ):
        if reuse < 1:
            raise ValueError(f"reuse must be >= 1 (1: every row is trained on once), got {reuse}")
        self.dir = Path(shard_dir)
        self.tok, self.seq_len, self.batch_size = tokenizer, seq_len, batch_size
        self.cold_samples, self.poll_s = cold_samples, poll_s
        self.buckets = sorted(set(bucket_sizes or default_label_buckets(seq_len)) | {seq_len})
        self.buckets = [b for b in self.buckets if b <= seq_len]
        self.stop = stop or threading.Event()
        self.entries: dict[int, dict] = {}
        self.closed = False
        self.lease, self.row, self.consumed, self.dropped = 0, 0, 0, 0
        self.started = False
        self.wait_s = self.wait_after_cold_s = 0.0
        self.cold_done_at: float | None = None
        self._table: tuple[int, list[dict]] | None = None
        self.last_task = -1
        self.reuse = reuse
        self.recent: deque[list] = deque(maxlen=reuse_window if reuse > 1 else 0)
        self.reused = 0  # row uses beyond the first
        self._refreshed = 0.0

    # ---- manifest polling
    def refresh(self) -> None:
        m = read_manifest(self.dir)
        if m is not None:
            self.entries = {e["lease"]: e for e in m["entries"]}
            self.closed = m["closed"]

    def committed_rows(self) -> int:
        return sum(e["rows"] for e in self.entries.values())

    def _wait(self, cond) -> bool:
        """Poll until `cond()`; False when stopped or closed first."""
        t0 = time.perf_counter()
        try:
            while True:
                self.refresh()
                if cond():
                    return True
                if self.closed or self.stop.is_set():
                    return cond()
                time.sleep(self.poll_s)
        finally:
            dt = time.perf_counter() - t0
            self.wait_s += dt
            if self.cold_done_at is not None:
                self.wait_after_cold_s += dt

    def _rows(self, lease: int) -> list[dict]:
        if self._table is None or self._table[0] != lease:
            e = self.entries[lease]
            rows = read_table(self.dir / e["file"]).to_pylist() if e["file"] else []
            if len(rows) != e["rows"]:
                raise ValueError(
                    f"{self.dir / str(e['file'])}: {len(rows)} rows, the manifest says "
                    f"{e['rows']}; the shard directory was modified"
                )
            self._table = (lease, rows)
        return self._table[1]

    def _next_row(self) -> dict | None:
        while True:
            if self.lease not in self.entries:
                if not self.closed and self._wait(
                    lambda: self.lease in self.entries or self.closed
                ):
                    continue
                later = [k for k in self.entries if k > self.lease]
                if not self.closed or not later:
                    return None
                self.lease, self.row = min(later), 0  # a lease the closed store never got
            rows = self._rows(self.lease)
            if self.row < len(rows):
                return rows[self.row]
            self.lease, self.row = self.lease + 1, 0

    def _fresh_ready(self) -> bool:
        """Whether the next fresh row can be read without waiting (the manifest is re-read at
        most every `poll_s`); walks the leases as `_next_row` does."""
        now = time.perf_counter()
        if now - self._refreshed >= self.poll_s:
            self._refreshed = now
            self.refresh()
        lease, row = self.lease, self.row
        while True:
            e = self.entries.get(lease)
            if e is None:
                later = [k for k in self.entries if k > lease] if self.closed else []
                if not later:
                    return False
                lease, row = min(later), 0
                continue
            if row < e["rows"]:
                return True
            lease, row = lease + 1, 0

    def _top_up(self, samples: list) -> None:
        """Fill `samples` from the reuse window, freshest first, each row at most `reuse`
        uses; never a row already in this batch."""
        taken = {id(x) for x in samples}
        for item in reversed(self.recent):
            if len(samples) >= self.batch_size:
                break
            if item[1] < self.reuse and id(item[0]) not in taken:
                item[1] += 1
                self.reused += 1
                samples.append(item[0])
        while self.recent and self.recent[0][1] >= self.reuse:
            self.recent.popleft()

    # ---- batches
    def encode(self, row: dict) -> tuple[np.ndarray, np.ndarray] | None:
        from minillm.tokenizer import chat_ids_and_mask

        ids, mask = chat_ids_and_mask(self.tok, conversation(row))
        ids = np.asarray(ids[: self.seq_len + 1], np.int32)
        mask = np.asarray(mask[: self.seq_len + 1], np.int8)
        return (ids, mask) if len(ids) >= 2 and mask[1:].any() else None

    def __iter__(self) -> ShardStream:
        return self

    def __next__(self) -> Batch:
        if not self.started:
            self.started = True
            if self.consumed == 0 and self.cold_samples:
                self._wait(lambda: self.committed_rows() >= self.cold_samples)
            self.cold_done_at = time.perf_counter()
        if self.stop.is_set():
            raise StopIteration
        pos = (self.lease, self.row, self.consumed, self.dropped, self.last_task)
        samples = []
        while len(samples) < self.batch_size:
            if self.reuse > 1 and self.recent and not self._fresh_ready():
                self._top_up(samples)
                if len(samples) >= self.batch_size:
                    break
            row = self._next_row()
            if row is None or self.stop.is_set():
                break
            self.row += 1
            self.consumed += 1
            self.last_task = row["task_index"]
            enc = self.encode(row)
            if enc is None:
                self.dropped += 1
            else:
                samples.append(enc)
                if self.reuse > 1:
                    self.recent.append([enc, 1])
        if self.stop.is_set() or not samples:
            # a stop mid-batch gives the batch back: the cursor stays after the last one taken
            self.lease, self.row, self.consumed, self.dropped, self.last_task = pos
            raise StopIteration
        return self._build(samples)

    def _build(self, samples: list[tuple[np.ndarray, np.ndarray]]) -> Batch:
        width = next(b for b in self.buckets if b >= max(len(s[0]) for s in samples) - 1)
        B = self.batch_size
        x = np.full((B, width + 1), self.tok.pad_id, np.int32)
        m = np.zeros((B, width + 1), np.float32)
        for i, (ids, mask) in enumerate(samples):
            x[i, : len(ids)], m[i, : len(ids)] = ids, mask
        mask = np.ascontiguousarray(m[:, 1:])
        return Batch(
            np.ascontiguousarray(x[:, :-1]),
            np.ascontiguousarray(x[:, 1:]),
            mask,
            int(mask.sum()),
            0,
        )

    # ---- resume
    def state(self) -> dict:
        return {
            "version": STATE_VERSION,
            "kind": "shards",
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "buckets": self.buckets,
            "lease": self.lease,
            "row": self.row,
            "consumed": self.consumed,
            "dropped": self.dropped,
            "last_task": self.last_task,
        }

    def restore(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION or state.get("kind") != "shards":
            raise ValueError(
                "the checkpoint's data cursor is not a shard-stream cursor; resume a "
                "distillation run from its own out_dir"
            )
        for k in ("seq_len", "batch_size", "buckets"):
            if state[k] != getattr(self, k):
                raise ValueError(
                    f"cannot resume the shard stream: {k} was {state[k]} in the checkpoint, now "
                    f"{getattr(self, k)}; use the same settings"
                )
        self.lease, self.row = state["lease"], state["row"]
        self.consumed, self.dropped = state["consumed"], state["dropped"]
        self.last_task = state["last_task"]
        self._table = None
