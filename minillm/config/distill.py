"""`DistillConfig`: every setting of a distillation run (`minillm distill`, launch/distill.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minillm.config.flags import (
    check_fields,
    from_dict,
    path,
    positive_ints,
    setting,
    text,
    url,
    weights,
)
from minillm.config.model import ModelSpec, check_start
from minillm.config.ray import RayConfig
from minillm.train.config import TrainConfig

TEACHERS = ("ollama", "openai", "oracle")
LANGS = ("en", "zh", "both")
T, G, E = "teacher", "generation", "evaluation"

# the TrainConfig fields a distillation run takes as flags (`--seq_len` ... `--seed`)
TRAIN_FLAGS = (
    "seq_len", "batch_size", "accum_steps", "max_steps", "learning_rate", "weight_decay",
    "warmup_steps", "min_lr_ratio", "grad_clip", "optimizer", "dtype", "compile",
    "save_interval", "log_interval", "keep_last_checkpoints", "seed",
)  # fmt: skip


def task_weights(w: dict[str, float]) -> None:
    from minillm.data.tasks import CATEGORIES

    unknown = sorted(set(w) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown categories {unknown}; use names among {', '.join(CATEGORIES)}")
    if any(v < 0 for v in w.values()) or not any(v > 0 for v in w.values()):
        raise ValueError("weights must be >= 0 and one of them > 0, e.g. math=2,logic=1")


def distill_train() -> TrainConfig:
    return TrainConfig(
        out_dir="out/mlx_distill", seq_len=512, batch_size=2, max_steps=2000,
        learning_rate=1e-4, save_interval=200, log_interval=10, keep_last_checkpoints=3,
    )  # fmt: skip


@dataclass
class DistillConfig(RayConfig):
    """Teacher generators -> Arrow shards -> the MLX learner, scored by the evaluator."""

    out_dir: str = setting(
        "out/mlx_distill", "run folder: shards/, checkpoints/, metrics, plots", check=path
    )
    teacher: str = setting("ollama", "who answers the tasks", choices=TEACHERS, group=T)
    ollama_url: str | None = setting(
        None, "Ollama server [http://127.0.0.1:11434]", group=T, check=url
    )
    ollama_model: str | None = setting(None, "Ollama model [qwen3:0.6b]", group=T, check=text)
    base_url: str | None = setting(
        None, "OpenAI-compatible server (--teacher openai)", group=T, check=url
    )
    think: bool = setting(
        False, "let a thinking model think (its <think> part is dropped)", group=T
    )
    temperature: float = setting(0.2, "teacher sampling temperature", group=T, ge=0)
    top_p: float = setting(0.95, "teacher nucleus sampling", group=T, gt=0, le=1)
    max_new_tokens: int = setting(
        512, "teacher reply limit (num_predict / max_tokens)", group=T, ge=1
    )
    timeout_s: float = setting(600.0, "seconds one teacher request may take", group=T, gt=0)
    max_retries: int = setting(
        3, "retries of a failed teacher request (5xx, timeout)", group=T, ge=0
    )
    max_failures: int = setting(
        200, "stop after this many failed requests (0: never)", group=T, ge=0, fix="0 never stops"
    )
    workers: int = setting(8, "generator actors", group=G, ge=1)
    inflight: int = setting(4, "open teacher requests per generator", group=G, ge=1)
    lease_size: int = setting(32, "tasks per lease (one shard each)", group=G, ge=1)
    cold_samples: int = setting(
        512, "training starts after this many accepted samples", group=G, ge=0
    )
    total_samples: int = setting(
        20000,
        "stop generating after this many (0: forever)",
        group=G,
        ge=0,
        fix="0 generates forever",
    )
    max_tasks: int = setting(
        0, "stop generating after this many tasks (0: no limit)", group=G, ge=0, fix="0: no limit"
    )
    oracle_delay_s: float = setting(
        0.0,
        "simulated per-request latency of the oracle teacher (tests, benchmarks)",
        group=G,
        ge=0,
    )
    max_lag: int = setting(4096, "pause generators when the learner is this many rows behind",
                           group=G, ge=1)  # fmt: skip
    task_seed: int = setting(
        1337, "seed of the task stream (which prompts are asked)", group=G, ge=0
    )
    weights: dict[str, float] | None = setting(
        None,
        "category weights, e.g. math=2,logic=1,copy=0",
        parse=weights,
        group=G,
        check=task_weights,
    )
    lang: str = setting("both", "task language", choices=LANGS, group=G)
    data_jsonl: str | None = setting(
        None, "also export accepted samples as JSONL", group=G, check=path
    )
    init_from: str | None = setting(None, "checkpoint (or run folder) to start from", check=path)
    tokenizer_path: str | None = setting(
        None, "HF tokenizer folder (default: built-in)", check=path
    )
    reuse: int = setting(
        1, "when no fresh row is committed, top batches up with recent rows, each used at most "
        "this many times (1: never wait-and-reuse, every row trained on once)", ge=1, fix="1 trains on every row once")  # fmt: skip
    reuse_window: int = setting(4096, "recent rows --reuse draws from", ge=1)
    bucket_sizes: list[int] | None = setting(
        None,
        "padded batch widths, e.g. 64,128,192,256 (default: 32, 64, 128, ... seq_len)",
        check=positive_ints,
    )
    max_seconds: float = setting(
        0.0,
        "stop (with a final checkpoint) after this much wall time (0: no limit)",
        ge=0,
        fix="0: no limit",
    )
    eval_interval: int = setting(
        0,
        "steps between evaluations (0: save_interval)",
        group=E,
        ge=0,
        fix="0 evaluates at every checkpoint",
    )
    eval_samples: int = setting(
        64, "held-out synthetic tasks (0: no evaluator)", group=E, ge=0, fix="0 runs no evaluator"
    )
    eval_batch_size: int = setting(64, "prompts decoded together", group=E, ge=1)
    eval_max_new_tokens: int = setting(128, "reply limit of the evaluated student", group=E, ge=1)
    eval_seed: int = setting(10_000, "seed of the held-out tasks", group=E, flag=False, ge=0)
    resume: bool = setting(False, "continue the run in --out_dir (its saved settings too)")
    status_interval_s: float = setting(5.0, "seconds between status lines", flag=False, gt=0)
    learner: bool = setting(True, "train (--no-learner: only generate shards / DATA_JSONL)")
    model: ModelSpec = setting(help="a fresh run's model", factory=ModelSpec)
    train: TrainConfig = setting(help="the learner's training settings", factory=distill_train)

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = from_dict(ModelSpec, self.model, "model")
        self.nest_train(distill_train)
        self.check_gpu_memory()
        check_fields(self)
        if self.teacher == "openai" and not self.base_url:
            raise ValueError("--teacher openai needs --base_url URL (an OpenAI-compatible server)")
        if self.learner and not self.train.max_steps and not self.total_samples:
            raise ValueError(
                "TOTAL_SAMPLES=0 runs forever: set MAX_STEPS (--max_steps) so the LR schedule "
                "has an end"
            )

    def check(self) -> None:
        """The checks that read files (the start checkpoint, its context length): ValueError
        or FileNotFoundError naming the flag, before anything starts."""
        check_start(self.init_from, self.model, self.train.seq_len)
        TrainConfig(**self.train_dict())

    @property
    def shard_dir(self) -> Path:
        return Path(self.out_dir) / "shards"

    def total_steps(self) -> int:
        if self.train.max_steps:
            return int(self.train.max_steps)
        return math.ceil(self.total_samples / (self.train.batch_size * self.train.accum_steps))

    def train_dict(self) -> dict[str, Any]:
        """The learner's `TrainConfig` fields; warm-up defaults to 5% of the steps."""
        d = self.train.to_dict()
        d["max_steps"] = self.total_steps()
        if d["warmup_steps"] is None:
            d["warmup_steps"] = max(1, self.total_steps() // 20)
        return d

    def teacher_spec(self) -> dict:
        if self.teacher == "oracle":
            return {"kind": "oracle", "delay_s": self.oracle_delay_s}
        opts = {"temperature": self.temperature, "top_p": self.top_p}
        if self.teacher == "ollama":
            opts["num_predict"] = self.max_new_tokens
        else:
            opts["max_tokens"] = self.max_new_tokens
        return {
            "kind": self.teacher,
            "url": self.ollama_url,
            "model": self.ollama_model,
            "base_url": self.base_url,
            "think": self.think,
            "options": opts,
            "timeout": self.timeout_s,
            "retries": self.max_retries,
        }

    def task_config(self) -> dict:
        """What the lease numbers mean; a resumed store must have been written with the same."""
        return {
            "seed": self.task_seed,
            "weights": self.weights,
            "lang": self.lang,
            "lease_size": self.lease_size,
        }
