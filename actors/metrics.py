"""Custom Ray metrics (Prometheus, scraped from each node's metrics export port; Ray prefixes
the names with `ray_`). Outside a Ray worker, or without Ray, every metric is a no-op, so the
actor classes run as plain objects in tests and scripts."""

from __future__ import annotations

from typing import Any

LATENCY_BOUNDS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120]

# name -> (kind, description, tag keys)
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "minillm_samples_generated": ("counter", "tasks answered by the teacher", ("category",)),
    "minillm_samples_accepted": ("counter", "answers that passed the verifier", ("category",)),
    "minillm_samples_rejected": ("counter", "answers the verifier rejected", ("category",)),
    "minillm_teacher_rejects": (
        "counter",
        "teacher replies not stored, by reason (wrong, empty, think_leak)",
        ("reason",),
    ),
    "minillm_samples_committed": ("counter", "rows written to shards (after dedup)", ()),
    "minillm_samples_duplicate": ("counter", "accepted rows dropped as duplicate prompts", ()),
    "minillm_teacher_errors": ("counter", "teacher requests that failed for good", ("kind",)),
    "minillm_teacher_latency_seconds": ("histogram", "teacher request latency", ()),
    "minillm_teacher_retries": (
        "counter",
        "teacher requests retried (503, timeout, reset)",
        ("reason",),
    ),
    "minillm_samples_reused": ("gauge", "row uses beyond the first (the --reuse policy)", ()),
    "minillm_reuse_limit": ("gauge", "most uses of one row (--reuse; 1: no reuse)", ()),
    "minillm_leases_reissued": ("counter", "leases re-issued after a generator died", ()),
    "minillm_buffer_depth": ("gauge", "committed rows the learner has not read yet", ()),
    "minillm_data_lag_samples": ("gauge", "rows committed minus rows trained on", ()),
    "minillm_learner_tokens_per_second": ("gauge", "learner training throughput", ()),
    "minillm_learner_loss": ("gauge", "learner loss (last log window)", ()),
    "minillm_learner_step": ("gauge", "learner optimizer step", ()),
    "minillm_learner_wait_fraction": ("gauge", "share of learner time spent waiting for data", ()),
    "minillm_eval_accuracy": ("gauge", "held-out synthetic accuracy", ("category",)),
    "minillm_rollout_tokens_per_second": ("gauge", "rollout worker generation throughput", ()),
    "minillm_rollout_samples": ("counter", "sampled RL replies", ()),
    "minillm_rl_reward": ("gauge", "mean reward of the last trained batch", ()),
    "minillm_rl_pass_rate": ("gauge", "share of correct replies in the last trained batch", ()),
    "minillm_rl_response_length": ("gauge", "mean reply tokens in the last trained batch", ()),
    "minillm_rl_staleness": ("gauge", "mean policy versions the trained rollouts lag", ()),
    "minillm_rl_kl": ("gauge", "k3 KL to the reference (last log window)", ()),
    "minillm_rl_clip_fraction": ("gauge", "share of clipped tokens (last log window)", ()),
    "minillm_buffer_groups": ("gauge", "groups waiting in the replay buffer", ()),
    "minillm_groups_dropped": ("counter", "groups dropped by the buffer", ("reason",)),
    "minillm_gsm8k_accuracy": ("gauge", "greedy GSM8K test accuracy", ()),
}


def _ray_active() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


class _Noop:
    def inc(self, *a: Any, **k: Any) -> None: ...

    def set(self, *a: Any, **k: Any) -> None: ...

    def observe(self, *a: Any, **k: Any) -> None: ...


class Metrics:
    """Lazily created metrics by name from `METRICS`: `m.inc(name, v, **tags)`,
    `m.set(name, v, **tags)`, `m.observe(name, v)`."""

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}
        self.active = _ray_active()

    def _get(self, name: str) -> Any:
        if name not in self._made:
            if not self.active:
                self._made[name] = _Noop()
            else:
                from ray.util import metrics as rm

                kind, desc, tags = METRICS[name]
                if kind == "counter":
                    self._made[name] = rm.Counter(name, description=desc, tag_keys=tags)
                elif kind == "gauge":
                    self._made[name] = rm.Gauge(name, description=desc, tag_keys=tags)
                else:
                    self._made[name] = rm.Histogram(
                        name, description=desc, boundaries=LATENCY_BOUNDS, tag_keys=tags
                    )
        return self._made[name]

    def inc(self, name: str, value: float = 1.0, **tags: str) -> None:
        if value:
            self._get(name).inc(value, tags=tags or None)

    def set(self, name: str, value: float, **tags: str) -> None:
        self._get(name).set(value, tags=tags or None)

    def observe(self, name: str, value: float) -> None:
        self._get(name).observe(value)
