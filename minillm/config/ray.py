"""`RayConfig`: where a run's actors live and what the MLX actors reserve (distill and RL)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from minillm.config.flags import fraction, host, setting, text, to_dict

RAY = "ray"


@dataclass
class RayConfig:
    """An existing cluster (`address`) or a local Ray of `num_cpus` whose dashboard binds
    `dashboard_host:dashboard_port`; the learner's reservation; each MLX actor's GPU share."""

    address: str | None = setting(
        None,
        "existing Ray cluster, e.g. 10.0.0.1:6379 (default: start a local Ray)",
        group=RAY,
        check=text,
    )
    num_cpus: int | None = setting(None, "CPUs of a local Ray (default: all)", group=RAY, ge=1)
    num_gpus: int | None = setting(
        None, "GPUs of a local Ray (default: all NVIDIA GPUs)", group=RAY, ge=0
    )
    learner_cpus: float = setting(
        1.0, "CPUs the learner actor reserves", group=RAY, flag=False, ge=0
    )
    learner_gpus: float | None = setting(
        None, "GPUs the learner actor reserves (default: 1 when the cluster has one, else 0)",
        group=RAY, ge=0)  # fmt: skip
    learner_gpu_memory: float = setting(
        0.6, "on CUDA, the share of the GPU's memory the learner keeps to (arrays + cache)",
        group=RAY, check=fraction)  # fmt: skip
    eval_gpu_memory: float = setting(
        0.15,
        "on CUDA, the share of the GPU's memory the evaluator keeps to",
        group=RAY,
        check=fraction,
    )
    dashboard_host: str = setting(
        "127.0.0.1", "address the Ray dashboard binds (0.0.0.0 exposes it)", group=RAY, check=host
    )
    dashboard_port: int = setting(
        8265, "Ray dashboard port (a taken one: a free one)", group=RAY, ge=1, le=65535
    )

    def nest_train(self, default) -> None:
        """`self.train` as a `TrainConfig` (from Python a dict of its fields over `default()`)
        that writes to the run's `out_dir`."""
        import dataclasses

        if isinstance(self.train, dict):
            self.train = dataclasses.replace(default(), **self.train)
        if self.train.out_dir != self.out_dir:
            self.train = dataclasses.replace(self.train, out_dir=self.out_dir)

    def check_gpu_memory(self, *more: str) -> None:
        """ValueError naming the field when a `*_gpu_memory` share is not in (0, 1]."""
        from minillm.gpu_memory import check_fraction

        for name in ("learner_gpu_memory", "eval_gpu_memory", *more):
            check_fraction(getattr(self, name), f"--{name}")

    def to_dict(self) -> dict:
        """Every setting, nested ones too (written to the run's folder as JSON)."""
        return to_dict(self)

    def save(self, path: Path) -> Path:
        """Every setting as JSON at `path`: the file `--config` and `--resume` read back."""
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path
