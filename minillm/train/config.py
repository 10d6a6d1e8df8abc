"""`TrainConfig`: every training setting, with help strings for the CLI and cross-field checks."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from minillm.config.flags import check_fields, path, setting

OPTIMIZERS = ("adamw", "adafactor", "lion")
STATE_DTYPES = ("float32", "param")
TRAIN_DTYPES = ("auto", "bfloat16", "float16", "float32")
DPO_LOSSES = ("sigmoid", "ipo")
SWITCHES = ("fast_ce", "whole_step", "fused_adam", "multi_tensor", "swiglu_vjp", "norm_split_grad")
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


def betas(v: tuple) -> None:
    if len(v) != 2 or not all(0.0 <= b < 1.0 for b in v):
        raise ValueError("must be two values in [0, 1), e.g. 0.9,0.95")


def lora_targets(v: tuple) -> None:
    bad = [t for t in v if t not in LORA_TARGETS]
    if bad or not v:
        raise ValueError(f"set it to a comma-separated subset of {','.join(LORA_TARGETS)}")


@dataclass
class TrainConfig:
    """Settings of one training run (pretrain, SFT, LoRA; later DPO/GRPO)."""

    out_dir: str = setting(
        "out", "run folder: run.json, metrics.jsonl, checkpoints/, plots/", check=path
    )
    seq_len: int = setting(
        512, "tokens per sequence (the data pipeline packs or pads to this)", ge=1
    )
    batch_size: int = setting(8, "sequences per micro-batch", ge=1)
    accum_steps: int = setting(1, "micro-batches per optimizer step (gradient accumulation)", ge=1)
    max_steps: int | None = setting(
        None,
        "optimizer steps (unset or 0: computed from the data and epochs)",
        ge=1,
        fix="leave it unset (or 0) to train for `epochs` passes over the data",
    )
    epochs: float = setting(1.0, "passes over the data when max_steps is not set", gt=0)
    learning_rate: float = setting(3e-4, "peak learning rate (after warmup)", gt=0)
    weight_decay: float = setting(
        0.1, "decoupled weight decay, applied to >=2-D weights only", ge=0
    )
    warmup_steps: int | None = setting(
        None,
        "linear LR warm-up steps before cosine decay; default: 100, at most 10% of the run",
        aliases=("lr_warmup_steps",),
        ge=0,
        fix="0 disables it",
    )
    min_lr_ratio: float = setting(
        0.1, "cosine decays to min_lr_ratio * learning_rate at the last step", ge=0, le=1
    )
    grad_clip: float = setting(
        1.0, "global gradient-norm clip (0 disables clipping)", ge=0, fix="0 disables clipping"
    )
    optimizer: str = setting("adamw", "adamw | adafactor | lion", choices=OPTIMIZERS)
    optim_state_dtype: str = setting(
        "float32",
        "optimizer state dtype: float32 | param (the parameters' dtype)",
        choices=STATE_DTYPES,
    )
    adam_betas: tuple[float, float] = setting(
        (0.9, 0.95), "AdamW betas (Lion uses (0.9, 0.99))", check=betas
    )
    adam_eps: float = setting(1e-8, "AdamW epsilon", gt=0)
    dtype: str = setting(
        "auto",
        "parameter dtype during training and in checkpoints; auto: bfloat16 on a GPU (Metal, "
        "CUDA), float32 on the CPU (MLX's CPU bfloat16 matmul is ~12x slower than float32)",
        choices=TRAIN_DTYPES,
    )
    compile: bool = setting(True, "mx.compile the training step")
    checkpoint_every_n: int = setting(
        0,
        "gradient checkpointing: recompute every segment of n "
        "layers in the backward pass (0 disables)",
        ge=0,
        fix="0 disables it",
    )
    logits_chunk_size: int = setting(
        0,
        "compute the LM-head loss in chunks of this many positions "
        "so full [B,T,V] logits never exist (0 disables)",
        ge=0,
        fix="0 disables it",
    )
    sparse_loss: bool = setting(False, "compute logits only at label_pos (the trained positions)")
    lora_r: int = setting(0, "LoRA rank (0 trains all weights)", ge=0, fix="0 trains all weights")
    lora_alpha: float = setting(16.0, "LoRA alpha; the adapter output is scaled by alpha / r", gt=0)
    lora_dropout: float = setting(0.0, "dropout on the LoRA adapter input", ge=0, lt=1)
    lora_targets: tuple[str, ...] = setting(
        LORA_TARGETS, "linear layers to adapt (comma-separated names)", check=lora_targets
    )
    dpo_beta: float = setting(
        0.1,
        "DPO beta: strength of the KL tie to the reference model (rewards are beta*logratio)",
        gt=0,
    )
    dpo_loss: str = setting(
        "sigmoid",
        "DPO loss: sigmoid (-log sigmoid(beta*margin)) | ipo ((margin - 1/(2*beta))^2)",
        choices=DPO_LOSSES,
    )
    save_interval: int = setting(
        1000,
        "save a checkpoint every n steps (0: only at the end)",
        ge=0,
        fix="0 saves only at the end",
    )
    log_interval: int = setting(10, "print a log line and append metrics every n steps", ge=1)
    keep_last_checkpoints: int = setting(
        3, "keep the newest n checkpoints (0 keeps all)", ge=0, fix="0 keeps all"
    )
    seed: int = setting(
        1337,
        "seed of a fresh model's weights, dropout and LoRA init",
        aliases=("train_seed",),
        ge=0,
    )
    profile_timing: bool = setting(
        False, "log per-phase ms (data, h2d, fwd+bwd, clip, optimizer); adds device syncs"
    )
    progress: bool | None = setting(None, "tqdm progress bar (default: when stdout is a terminal)")
    # The step's A/B switches (`launch/profile_train.py --variants` times each): all on by
    # default; they are settings of the run, recorded in run.json, not module globals.
    fast_ce: bool = setting(
        True, "GPU: the LM-head loss as one fused kernel (mx.fast.cross_entropy), no fp32 logits"
    )
    whole_step: bool = setting(
        True, "one compiled call per optimizer step when accum_steps is 1 (off: three calls)"
    )
    fused_adam: bool = setting(
        True, "CUDA, fp32 state: AdamW as one kernel per parameter, gradients scaled inside it"
    )
    multi_tensor: bool = setting(
        False,
        "CUDA: AdamW and the gradient norm over many parameters per kernel launch (off until "
        "measured on a GPU)",
    )
    swiglu_vjp: bool = setting(
        True, "the MLP's SwiGLU with a VJP that keeps only gate and up (sigmoid recomputed)"
    )
    norm_split_grad: bool = setting(
        True, "RMSNorm weight gradients summed in two stages (spreads the reduction on a GPU)"
    )

    def __post_init__(self):
        if self.max_steps == 0:  # the same as unset, in every verb
            self.max_steps = None
        if isinstance(self.lora_targets, str):
            self.lora_targets = tuple(t.strip() for t in self.lora_targets.split(",") if t.strip())
        self.lora_targets = tuple(self.lora_targets)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        check_fields(self)
        if self.max_steps and self.warmup_steps is not None and self.warmup_steps >= self.max_steps:
            raise ValueError(
                f"warmup_steps={self.warmup_steps} leaves no decay phase in "
                f"max_steps={self.max_steps}; set warmup_steps below "
                f"{self.max_steps} (e.g. {self.max_steps // 10})"
            )
        if self.dtype == "float16" and self.optim_state_dtype == "param":
            raise ValueError(
                "optim_state_dtype='param' with dtype='float16' underflows the "
                "second moment; set optim_state_dtype='float32'"
            )
        if self.lora_r:
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
