"""`ReplayBuffer`: whole rollout groups, FIFO, with a staleness bound and dynamic sampling.

Groups whose rewards are all equal carry no GRPO signal and are dropped when they arrive
(`dynamic_sampling`); groups more than `max_staleness` policy versions behind the learner are
dropped when taken, and once a take has filled a batch, the groups left that will be too old
for the next one are dropped at once (so the depth counts only usable groups). The indices of
dropped prompts are handed to the learner with a `take`, which records them as consumed (a
resumed run does not roll them out again). Thread-safe: under Ray it
runs with max_concurrency > 1 so `take` can block while `add` goes on.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import pyarrow as pa

from actors.metrics import Metrics


class ReplayBuffer:
    def __init__(self, group_size: int, max_staleness: int = 1, dynamic_sampling: bool = True):
        self.G, self.max_staleness, self.dynamic = group_size, max_staleness, dynamic_sampling
        self.groups: deque[pa.Table] = deque()
        self.dropped: dict[str, list[int]] = {"flat": [], "stale": []}
        self.counts = {"added": 0, "flat": 0, "stale": 0, "taken": 0}
        self.cv = threading.Condition()
        self.metrics = Metrics()

    def add(self, table: pa.Table) -> dict:
        """Split a rollout table into groups (by prompt_index) and queue the informative ones."""
        idx = table.column("prompt_index").to_pylist()
        rewards = table.column("reward").to_pylist()
        with self.cv:
            for i in dict.fromkeys(idx):
                rows = [r for r, x in enumerate(idx) if x == i]
                if len(rows) != self.G:
                    raise ValueError(
                        f"prompt {i}: {len(rows)} samples, expected a group of {self.G}"
                    )
                group = table.take(rows)
                self.counts["added"] += 1
                if self.dynamic and len({rewards[r] for r in rows}) == 1:
                    self.counts["flat"] += 1
                    self.dropped["flat"].append(i)
                    self.metrics.inc("minillm_groups_dropped", reason="flat")
                    continue
                self.groups.append(group)
            self.metrics.set("minillm_buffer_groups", len(self.groups))
            self.cv.notify_all()
            return {"depth": len(self.groups), **self.counts}

    def take(self, n: int, version: int, timeout: float = 1.0) -> dict:
        """Up to `n` groups no more than `max_staleness` behind `version` (waits up to `timeout`
        for the first), plus the prompt indices dropped since the last take."""
        deadline = time.monotonic() + timeout
        out: list[pa.Table] = []
        with self.cv:
            while len(out) < n:
                while self.groups and len(out) < n:
                    g = self.groups.popleft()
                    v = g.column("version")[0].as_py()
                    if version - v > self.max_staleness:
                        self.counts["stale"] += 1
                        self.dropped["stale"].append(g.column("prompt_index")[0].as_py())
                        self.metrics.inc("minillm_groups_dropped", reason="stale")
                        continue
                    out.append(g)
                left = deadline - time.monotonic()
                if len(out) >= n or left <= 0:
                    break
                self.cv.wait(left)
            if len(out) >= n:
                self._evict(version + 1)
            dropped, self.dropped = self.dropped, {"flat": [], "stale": []}
            self.counts["taken"] += len(out)
            self.metrics.set("minillm_buffer_groups", len(self.groups))
            return {"groups": out, "dropped": dropped, "depth": len(self.groups)}

    def _evict(self, next_version: int) -> None:
        """Drop now the groups the learner's next batch (at `next_version`) could not use, so
        the depth the driver sees counts only usable groups and it refills during the step
        instead of the learner finding stale groups (and waiting) at its next take."""
        keep = deque()
        for g in self.groups:
            if next_version - g.column("version")[0].as_py() > self.max_staleness:
                self.counts["stale"] += 1
                self.dropped["stale"].append(g.column("prompt_index")[0].as_py())
                self.metrics.inc("minillm_groups_dropped", reason="stale")
            else:
                keep.append(g)
        self.groups = keep

    def depth(self) -> int:
        with self.cv:
            return len(self.groups)

    def stats(self) -> dict:
        with self.cv:
            return {"depth": len(self.groups), **self.counts}
