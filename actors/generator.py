"""`TeacherGenerator`: turns a lease of task indices into verified SFT rows (an Arrow table).

Each task of the lease is drawn from the seeded `TaskSource`, sent to the teacher with at most
`inflight` requests open at once, and its reply checked by the task's verifier; only accepted
replies become rows. Teacher failures (after the client's own retries) are counted by kind and
never reach the table. The result depends only on the lease and the teacher, not on which
generator ran it, so a lease re-run after a crash gives the same rows (for the oracle teacher,
and for Ollama with its per-task seed as far as Ollama is deterministic).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from actors.metrics import Metrics
from actors.shards import SCHEMA
from minillm.data.tasks import Task, TaskSource, oracle_reply, verify
from minillm.eval.verify import think_leak
from minillm.teacher import TeacherError, error_kind, make_teacher


def task_seed(seed: int, index: int) -> int:
    """The teacher's sampling seed for task `index`: fixed per task, whoever generates it."""
    h = hashlib.sha256(f"minillm-teacher:{seed}:{index}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def admit(task: Task, content: str, min_chars: int = 1) -> tuple[str | None, str]:
    """The one rule for teacher output: `(text, "ok")` when `content` (a reply the client has
    already passed through `split_think`) is to be stored, and `text` is then exactly what was
    verified; else `(None, reason)` with reason think_leak (a think tag survived), empty or
    wrong."""
    text = content.strip()
    if think_leak(text):
        return None, "think_leak"
    if len(text) < min_chars:
        return None, "empty"
    if not verify(task, text):
        return None, "wrong"
    return text, "ok"


def build_teacher(spec: dict):
    """A teacher client from a JSON-able spec: {"kind", "url", "model", "base_url", "think",
    "options", "timeout", "retries"}; the oracle's spec may add "delay_s", a simulated
    latency per request."""
    kind = spec.get("kind", "ollama")
    if kind == "oracle":
        return make_teacher("oracle", reply_fn=oracle_reply)
    common = {
        "model": spec.get("model"),
        "options": spec.get("options"),
        "timeout": spec.get("timeout", 600.0),
        "retries": spec.get("retries", 3),
        "backoff": spec.get("backoff", 1.0),
    }
    if kind == "openai":
        return make_teacher("openai", base_url=spec.get("base_url"), **common)
    return make_teacher("ollama", url=spec.get("url"), think=spec.get("think", False), **common)


class TeacherGenerator:
    """One generator: `generate(lease, start, count)` -> (Arrow table of accepted rows, stats)."""

    def __init__(
        self,
        index: int,
        teacher: dict,
        tasks: dict,
        inflight: int = 4,
        min_answer_chars: int = 1,
    ):
        self.index = index
        self.spec = teacher
        self.teacher = build_teacher(teacher)
        self.oracle = teacher.get("kind") == "oracle"
        self.delay_s = float(teacher.get("delay_s", 0.0))
        self.source = TaskSource(tasks["seed"], tasks.get("weights"), tasks.get("lang", "both"))
        self.seed = tasks["seed"]
        self.inflight = max(1, int(inflight))
        self.pool = ThreadPoolExecutor(self.inflight, thread_name_prefix=f"teacher-{index}")
        self.min_answer_chars = min_answer_chars
        self.metrics = Metrics()
        self.leases = 0

    def ping(self) -> dict:
        return {"index": self.index, "leases": self.leases}

    def _ask(self, i: int) -> tuple[Task, Any]:
        task = self.source.draw(i)
        try:
            if self.oracle:
                if self.delay_s:  # a stand-in for a real teacher's latency: delay_s ± 50%
                    time.sleep(self.delay_s * random.Random(i).uniform(0.5, 1.5))
                return task, self.teacher.chat(task)
            messages = [
                {"role": "system", "content": task.system},
                {"role": "user", "content": task.prompt},
            ]
            return task, self.teacher.chat(messages, seed=task_seed(self.seed, i))
        except TeacherError as e:
            return task, e

    def generate(self, lease: int, start: int, count: int) -> tuple[pa.Table, dict]:
        """Answer and verify tasks `start .. start+count-1`; rows keep the task order."""
        t0 = time.perf_counter()
        results = list(self.pool.map(self._ask, range(start, start + count)))
        cols: dict[str, list] = {name: [] for name in SCHEMA.names}
        acc, rej, err, rej_why = Counter(), Counter(), Counter(), Counter()
        latencies, retries = [], Counter()
        for i, (task, reply) in zip(range(start, start + count), results, strict=True):
            retries.update(getattr(reply, "retry_reasons", ()))
            if isinstance(reply, Exception):
                err[error_kind(reply)] += 1
                self.metrics.inc("minillm_teacher_errors", kind=error_kind(reply))
                continue
            latencies.append(reply.latency_s)
            self.metrics.observe("minillm_teacher_latency_seconds", reply.latency_s)
            self.metrics.inc("minillm_samples_generated", category=task.category)
            content, why = admit(task, reply.content, self.min_answer_chars)
            if content is None:
                rej[task.category] += 1
                rej_why[why] += 1
                self.metrics.inc("minillm_samples_rejected", category=task.category)
                self.metrics.inc("minillm_teacher_rejects", reason=why)
                continue
            acc[task.category] += 1
            self.metrics.inc("minillm_samples_accepted", category=task.category)
            row = {
                "task_index": i,
                "prompt_hash": task.id,
                "category": task.category,
                "subtype": task.subtype,
                "lang": task.lang,
                "system": task.system,
                "prompt": task.prompt,
                "answer": task.answer,
                "reply": content,
                "thinking": reply.thinking,
                "teacher": reply.model,
                "latency_s": reply.latency_s,
                "generator": self.index,
                "lease": lease,
            }
            for k, v in row.items():
                cols[k].append(v)
        self.leases += 1
        for reason, n in retries.items():
            self.metrics.inc("minillm_teacher_retries", n, reason=reason)
        table = pa.Table.from_pydict(cols, schema=SCHEMA)
        stats = {
            "generator": self.index,
            "accepted": dict(acc),
            "rejected": dict(rej),
            "errors": dict(err),
            "retries": sum(retries.values()),
            "retries_by_reason": dict(retries),
            "think_leaks": rej_why["think_leak"],
            "rejected_by_reason": dict(rej_why),
            "latency_sum": sum(latencies),
            "answered": len(latencies),
            "seconds": time.perf_counter() - t0,
        }
        return table, stats
