"""`TrainConfig`: every training setting, with help strings for the CLI and cross-field checks."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adamw", "adafactor", "lion")
STATE_DTYPES = ("float32", "param")
TRAIN_DTYPES = ("auto", "bfloat16", "float16", "float32")
DPO_LOSSES = ("sigmoid", "ipo")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def resolve_dtype(name: str) -> str:
    """`name`, or for "auto" the dtype this process trains fastest in: bfloat16 where MLX has
    a GPU (Metal or CUDA), float32 on the CPU. Resolved where the training runs (a Ray
    learner on a GPU node resolves to bfloat16 even when the driver has no GPU)."""
    if name != "auto":
        return name
    import mlx.core as mx

    gpu = mx.metal.is_available() or (hasattr(mx, "cuda") and mx.cuda.is_available())
    return "bfloat16" if gpu else "float32"


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})  # = minillm.config.setting


@dataclass
class TrainConfig:
    """Settings of one training run (pretrain, SFT, LoRA; later DPO/GRPO)."""

    out_dir: str = _f("out", "run folder: run.json, metrics.jsonl, checkpoints/, plots/")
    seq_len: int = _f(512, "tokens per sequence (the data pipeline packs or pads to this)")
    batch_size: int = _f(8, "sequences per micro-batch")
    accum_steps: int = _f(1, "micro-batches per optimizer step (gradient accumulation)")
    max_steps: int | None = _f(
        None, "optimizer steps (unset or 0: computed from the data and epochs)"
    )
    epochs: float = _f(1.0, "passes over the data when max_steps is not set")
    learning_rate: float = _f(3e-4, "peak learning rate (after warmup)")
    weight_decay: float = _f(0.1, "decoupled weight decay, applied to >=2-D weights only")
    warmup_steps: int | None = _f(
        None,
        "linear LR warm-up steps before cosine decay; default: 100, at most 10% of the run",
        aliases=("lr_warmup_steps",),
    )
    min_lr_ratio: float = _f(0.1, "cosine decays to min_lr_ratio * learning_rate at the last step")
    grad_clip: float = _f(1.0, "global gradient-norm clip (0 disables clipping)")
    optimizer: str = _f("adamw", "adamw | adafactor | lion", choices=OPTIMIZERS)
    optim_state_dtype: str = _f(
        "float32",
        "optimizer state dtype: float32 | param (the parameters' dtype)",
        choices=STATE_DTYPES,
    )
    adam_betas: tuple[float, float] = _f((0.9, 0.95), "AdamW betas (Lion uses (0.9, 0.99))")
    adam_eps: float = _f(1e-8, "AdamW epsilon")
    dtype: str = _f(
        "auto",
        "parameter dtype during training and in checkpoints; auto: bfloat16 on a GPU (Metal, "
        "CUDA), float32 on the CPU (MLX's CPU bfloat16 matmul is ~12x slower than float32)",
        choices=TRAIN_DTYPES,
    )
    compile: bool = _f(True, "mx.compile the training step")
    checkpoint_every_n: int = _f(
        0,
        "gradient checkpointing: recompute every segment of n "
        "layers in the backward pass (0 disables)",
    )
    logits_chunk_size: int = _f(
        0,
        "compute the LM-head loss in chunks of this many positions "
        "so full [B,T,V] logits never exist (0 disables)",
    )
    sparse_loss: bool = _f(False, "compute logits only at label_pos (the trained positions)")
    lora_r: int = _f(0, "LoRA rank (0 trains all weights)")
    lora_alpha: float = _f(16.0, "LoRA alpha; the adapter output is scaled by alpha / r")
    lora_dropout: float = _f(0.0, "dropout on the LoRA adapter input")
    lora_targets: tuple[str, ...] = _f(
        LORA_TARGETS, "linear layers to adapt (comma-separated names)"
    )
    dpo_beta: float = _f(
        0.1, "DPO beta: strength of the KL tie to the reference model (rewards are beta*logratio)"
    )
    dpo_loss: str = _f(
        "sigmoid",
        "DPO loss: sigmoid (-log sigmoid(beta*margin)) | ipo ((margin - 1/(2*beta))^2)",
        choices=DPO_LOSSES,
    )
    save_interval: int = _f(1000, "save a checkpoint every n steps (0: only at the end)")
    log_interval: int = _f(10, "print a log line and append metrics every n steps")
    keep_last_checkpoints: int = _f(3, "keep the newest n checkpoints (0 keeps all)")
    seed: int = _f(
        1337, "seed of a fresh model's weights, dropout and LoRA init", aliases=("train_seed",)
    )
    profile_timing: bool = _f(
        False, "log per-phase ms (data, h2d, fwd+bwd, clip, optimizer); adds device syncs"
    )
    progress: bool | None = _f(None, "tqdm progress bar (default: when stdout is a terminal)")

    def __post_init__(self):
        if self.max_steps == 0:  # the same as unset, in every verb
            self.max_steps = None
        if isinstance(self.lora_targets, str):
            self.lora_targets = tuple(t.strip() for t in self.lora_targets.split(",") if t.strip())
        self.lora_targets = tuple(self.lora_targets)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        for name, allowed in (
            ("optimizer", OPTIMIZERS),
            ("optim_state_dtype", STATE_DTYPES),
            ("dtype", TRAIN_DTYPES),
            ("dpo_loss", DPO_LOSSES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is not supported; set "
                    f"{name} to one of {', '.join(allowed)}"
                )
        for name in ("seq_len", "batch_size", "accum_steps", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be >= 0 (0 disables it)")
        for name in (
            "checkpoint_every_n",
            "logits_chunk_size",
            "lora_r",
            "save_interval",
            "keep_last_checkpoints",
            "weight_decay",
            "grad_clip",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (0 disables it)")
        if self.max_steps is not None:
            if self.max_steps < 1:
                raise ValueError(
                    f"max_steps={self.max_steps} must be >= 1; leave it unset to "
                    "train for `epochs` passes over the data"
                )
            if self.warmup_steps is not None and self.warmup_steps >= self.max_steps:
                raise ValueError(
                    f"warmup_steps={self.warmup_steps} leaves no decay phase in "
                    f"max_steps={self.max_steps}; set warmup_steps below "
                    f"{self.max_steps} (e.g. {self.max_steps // 10})"
                )
        if self.dpo_beta <= 0:
            raise ValueError(f"dpo_beta={self.dpo_beta} must be > 0")
        if self.epochs <= 0:
            raise ValueError(f"epochs={self.epochs} must be > 0")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate={self.learning_rate} must be > 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if not all(0.0 <= b < 1.0 for b in self.adam_betas) or len(self.adam_betas) != 2:
            raise ValueError(f"adam_betas={self.adam_betas} must be two values in [0, 1)")
        if self.dtype == "float16" and self.optim_state_dtype == "param":
            raise ValueError(
                "optim_state_dtype='param' with dtype='float16' underflows the "
                "second moment; set optim_state_dtype='float32'"
            )
        if self.lora_r:
            if self.lora_alpha <= 0:
                raise ValueError(f"lora_alpha={self.lora_alpha} must be > 0 when lora_r > 0")
            if not 0.0 <= self.lora_dropout < 1.0:
                raise ValueError(f"lora_dropout={self.lora_dropout} must be in [0, 1)")
            if not self.lora_targets:
                raise ValueError(
                    f"lora_targets is empty; set it to a comma-separated subset "
                    f"of {','.join(LORA_TARGETS)}"
                )
            if self.lora_dropout and self.checkpoint_every_n:
                raise ValueError(
                    "lora_dropout with checkpoint_every_n would draw other dropout "
                    "masks when the backward recomputes a segment; set "
                    "lora_dropout=0 or checkpoint_every_n=0"
                )
        elif self.lora_dropout:
            raise ValueError(
                "lora_dropout is set but lora_r=0 (full fine-tune); set lora_r "
                "(e.g. 8) or drop lora_dropout"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def warmup_for(self, total_steps: int) -> int:
        """`warmup_steps`, or by default 100 steps but at most 10% of `total_steps`."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(100, total_steps // 10)

    def steps_for(self, num_batches: int | None = None) -> int:
        """Optimizer steps of the run: `max_steps`, else `epochs` passes over `num_batches`
        micro-batches per epoch, `accum_steps` of them per step."""
        if self.max_steps:
            return self.max_steps
        if not num_batches:
            raise ValueError(
                "the number of steps is unknown: set max_steps, or pass the data's "
                "micro-batch count per epoch"
            )
        steps = max(1, math.ceil(self.epochs * num_batches / self.accum_steps))
        if self.warmup_steps is not None and self.warmup_steps >= steps:
            raise ValueError(
                f"warmup_steps={self.warmup_steps} >= the run's {steps} steps; set "
                f"warmup_steps below {steps} (e.g. {steps // 10})"
            )
        return steps
