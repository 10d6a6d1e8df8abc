"""`RLConfig`: every setting of a GSM8K GRPO run (`minillm rl`, launch/rl.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from minillm.config.flags import check_fields, fraction, path, setting, text, truthy, url
from minillm.config.model import check_start
from minillm.config.ray import RayConfig
from minillm.train.config import TrainConfig

R, S, E, W = "rollout", "grpo", "evaluation", "sft warm-up"

TRAIN_FLAGS = (
    "seq_len", "max_steps", "learning_rate", "weight_decay", "warmup_steps", "min_lr_ratio",
    "grad_clip", "dtype", "compile", "log_interval", "keep_last_checkpoints", "seed",
)  # fmt: skip


def core_spec(spec: str) -> None:
    from actors.cores import parse  # a bad spec fails here, before anything starts

    parse(spec)


def rl_train() -> TrainConfig:
    return TrainConfig(
        out_dir="out/mlx_rl", seq_len=512, max_steps=1000, learning_rate=2e-5,
        weight_decay=0.0, warmup_steps=0, min_lr_ratio=1.0, log_interval=10,
        keep_last_checkpoints=3,
    )  # fmt: skip


@dataclass
class RLConfig(RayConfig):
    """Rollout workers sample GRPO groups from the newest policy; the learner trains on them."""

    out_dir: str = setting("out/mlx_rl", "run folder: checkpoints/, metrics, plots", check=path)
    init_from: str | None = setting(None, "the policy to start from (required)", check=path)
    ref_from: str | None = setting(
        None, "KL reference model (default: --init_from)", group=S, check=path
    )
    data_path: str = setting(
        "gsm8k:train", "gsm8k:train, tasks:CATEGORY, or JSONL/parquet", check=text
    )
    eval_data_path: str = setting("gsm8k:test", "held-out questions", group=E, check=text)
    data_dir: str = setting("dataset/gsm8k", "GSM8K download folder", check=path)
    hf_endpoint: str | None = setting(None, "hub endpoint (default: $HF_ENDPOINT)", check=url)
    limit: int | None = setting(None, "use the first N training questions", ge=1)
    sft_steps: int = setting(
        0, "SFT steps on the training solutions before RL (0: none)", group=W,
        aliases=("sft_warmup_steps",), ge=0, fix="0 skips the warm-up")  # fmt: skip
    sft_lr: float = setting(1e-4, "learning rate of the SFT warm-up", group=W,
                            aliases=("warmup_lr",), gt=0)  # fmt: skip
    sft_batch_size: int = setting(8, "batch size of the SFT warm-up", group=W,
                                  aliases=("warmup_batch_size",), ge=1)  # fmt: skip
    iters: int = setting(5, "evaluations (and checkpoints) over the run", group=E, ge=1)
    steps_per_iter: int | None = setting(
        None,
        "steps between evaluations and checkpoints (default: max_steps / iters)",
        group=E,
        ge=1,
    )
    workers: int = setting(2, "rollout worker actors", group=R, ge=1)
    samples_per_prompt: int = setting(
        8,
        "replies per prompt (the GRPO group size G)",
        group=R,
        ge=2,
        fix="GRPO compares the replies in a group",
    )
    num_rollouts: int = setting(64, "sampled replies per optimizer step (the batch)", group=R, ge=2)
    prompts_per_rollout: int = setting(4, "prompts per worker call", group=R, ge=1)
    max_new_tokens: int = setting(256, "reply limit of a rollout", group=R, ge=1)
    temperature: float = setting(0.7, "rollout sampling temperature", group=R, gt=0)
    top_p: float = setting(0.95, "rollout nucleus sampling", group=R, gt=0, le=1)
    format_weight: float = setting(0.0, "reward bonus for a '#### n' line", group=S, ge=0)
    clip_eps: float = setting(0.2, "PPO-style ratio clip", group=S, gt=0, lt=1)
    clip_eps_high: float | None = setting(None, "upper clip (DAPO clip-higher)", group=S, gt=0)
    beta: float = setting(
        0.0,
        "KL-to-reference weight (k3); 0: no reference",
        group=S,
        ge=0,
        fix="0 uses no reference model",
    )
    scale_std: bool = setting(True, "divide advantages by the group's reward std", group=S)
    dynamic_sampling: bool = setting(True, "drop groups whose rewards are all equal", group=S)
    max_staleness: int = setting(
        1,
        "drop groups more than this many versions old",
        group=S,
        ge=0,
        fix="0 trains only on the newest policy's groups",
    )
    max_buffer_groups: int = setting(
        0, "buffer size in groups (0: groups per step x max_staleness)", group=S, flag=False, ge=0
    )
    sequential: bool = setting(False, "rollout then train, no overlap (a baseline)")
    local: bool = setting(False, "no Ray: roll out and train in turn in this process")
    cores: str | None = setting(
        None,
        "CPU node: pin actors to cores, e.g. learner=0-3,rollout-0=4,rollout-1=5",
        check=core_spec,
    )
    lang: str = setting("en", "prompt language", choices=["en", "zh"])
    run_eval: bool = setting(
        True, "GSM8K accuracy before RL and at each iteration (1/0)", group=E, parse=truthy
    )
    run_bench: bool = setting(
        True, "the synthetic bench at each iteration (1/0)", group=E, parse=truthy
    )
    gsm8k_eval_num: int = setting(
        200, "held-out questions per evaluation (0: all)", group=E, ge=0, fix="0 uses all"
    )
    eval_max_new_tokens: int = setting(256, "reply limit of an evaluation", group=E, ge=1)
    bench_samples: int = setting(64, "synthetic bench tasks per evaluation", group=E, ge=1)
    resume: bool = setting(False, "continue the run in --out_dir (its saved settings too)")
    worker_gpus: float = setting(0.0, "GPUs each rollout worker reserves", group="ray", ge=0)
    worker_gpu_memory: float = setting(
        0.1,
        "on CUDA, the share of the GPU's memory each rollout worker keeps to",
        group="ray",
        check=fraction,
    )
    status_interval_s: float = setting(5.0, "seconds between status lines", flag=False, gt=0)
    train: TrainConfig = setting(help="the learner's training settings", factory=rl_train)

    def __post_init__(self):
        self.nest_train(rl_train)
        self.check_gpu_memory("worker_gpu_memory")
        check_fields(self)
        G = self.samples_per_prompt
        if self.num_rollouts % G:
            raise ValueError(
                f"--num_rollouts {self.num_rollouts} must be a multiple of --samples_per_prompt {G}"
            )

    def check(self) -> None:
        """Checks that read files, before anything starts (the policy, the context length)."""
        if not self.init_from:
            raise ValueError("RL needs --init_from CKPT (an SFT'd model; see --sft_steps)")
        check_start(self.init_from, None, self.train.seq_len)
        TrainConfig(**self.train_dict())

    @property
    def seed(self) -> int:
        return self.train.seed

    @property
    def max_steps(self) -> int:
        return int(self.train.max_steps or 0)

    @property
    def groups_per_step(self) -> int:
        return self.num_rollouts // self.samples_per_prompt

    @property
    def every(self) -> int:
        """Steps between evaluations and checkpoints."""
        if self.steps_per_iter:
            return self.steps_per_iter
        return max(1, math.ceil(self.max_steps / max(self.iters, 1)))

    def train_dict(self) -> dict[str, Any]:
        """The learner's `TrainConfig` fields: a step is `num_rollouts` replies; it saves
        (and the evaluator scores) every `every` steps."""
        d = self.train.to_dict()
        d.update(batch_size=self.num_rollouts, save_interval=self.every)
        return d

    def grpo(self) -> dict:
        return {
            "group_size": self.samples_per_prompt,
            "clip_eps": self.clip_eps,
            "clip_eps_high": self.clip_eps_high,
            "beta": self.beta,
            "scale_std": self.scale_std,
            "dynamic_sampling": self.dynamic_sampling,
            "max_staleness": self.max_staleness,
            "temperature": self.temperature,
        }
