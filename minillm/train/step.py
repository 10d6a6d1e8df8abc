"""One optimizer step, explicit: accumulate micro-batches, clip, apply, dispatch.

`Step` is what `train()`, `minillm speed`, `launch/bench_train.py` and
`launch/profile_train.py` drive, so a timing is a timing of the training step itself. Its
switches are `TrainConfig` fields (`whole_step`, `fused_adam`, `fast_ce`, `swiglu_vjp`,
`norm_split_grad`), set per run, never module globals.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_map

from minillm.checkpoint import cast_model, model_dtype, parse_dtype
from minillm.models.cpu_ops import enable_for_training
from minillm.models.layers import set_training_kernels
from minillm.train.config import TrainConfig, resolve_dtype
from minillm.train.lora import apply_lora
from minillm.train.optim import build_optimizer, clip_scale, scale_and_clip

PHASES = ("data", "h2d", "fwd_bwd", "clip", "opt")


def to_arrays(batch: Any) -> dict[str, mx.array]:
    """The array fields of a batch (dataclass, object or dict) as mx arrays."""
    if isinstance(batch, dict):
        items = batch.items()
    elif dataclasses.is_dataclass(batch):
        items = ((f.name, getattr(batch, f.name)) for f in dataclasses.fields(batch))
    else:
        items = vars(batch).items()
    out = {}
    for k, v in items:
        if isinstance(v, np.ndarray):
            out[k] = mx.array(v.astype(np.float32) if v.dtype == np.float64 else v)
        elif isinstance(v, mx.array):
            out[k] = v
    return out


def batch_tokens(batch: Any, arrays: dict[str, mx.array]) -> int:
    """The batch's trained-token count: its `n_tokens`, else the mask's sum, else its size."""
    n = batch.get("n_tokens") if isinstance(batch, dict) else getattr(batch, "n_tokens", None)
    if n is None:
        n = arrays["mask"].sum().item() if "mask" in arrays else arrays["inputs"].size
    return int(n)


def prepare(model: nn.Module, cfg: TrainConfig) -> None:
    """Cast `model` to the run's dtype, add LoRA adapters (`lora_r`), set the model-side
    switches of the step."""
    dtype = parse_dtype(resolve_dtype(cfg.dtype))
    if model_dtype(model) != dtype:
        cast_model(model, dtype)
    if cfg.lora_r and getattr(model, "lora_spec", None) is None:
        apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    set_training_kernels(model, cfg.swiglu_vjp, cfg.norm_split_grad)
    mx.eval(model.parameters())


class PhaseTimer:
    """Milliseconds per phase (`profile_timing`): `tick` evaluates the arrays it is given, so
    each phase's time is its own. Off, `tick` only hands the time back. Phases add up while
    `counting` (drivers skip the compile/warm-up steps)."""

    def __init__(self, enabled: bool = False):
        self.enabled, self.counting = enabled, False
        self.ms = dict.fromkeys(PHASES, 0.0)
        self.steps = 0

    def tick(self, name: str, t: float, *arrays) -> float:
        if not self.enabled:
            return t
        mx.eval(*arrays)
        now = time.perf_counter()
        if self.counting:
            self.ms[name] += (now - t) * 1000
        return now

    def reset(self) -> None:
        self.ms = dict.fromkeys(PHASES, 0.0)
        self.steps = 0

    def means(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.ms.items()}


@dataclass
class StepOut:
    """A dispatched step's results (device arrays, not yet read) and its token count."""

    loss: mx.array  # summed token losses of the step's micro-batches
    n: mx.array  # trained tokens the loss is summed over
    norm: mx.array  # gradient norm before clipping
    lr: mx.array
    aux: dict[str, mx.array]  # the loss function's extra sums
    tokens: int


class Step:
    """The optimizer step of `train()`: `add` each micro-batch, then `apply`.

    `add(arrays)` adds a micro-batch's summed-loss gradients (fp32 across `accum_steps`);
    `apply()` divides by the step's real-token count, clips, updates the model and dispatches
    the step (`mx.async_eval`), returning its `StepOut` unread, so a driver can build the next
    step while the device runs this one. With `accum_steps` 1, `whole_step` and no
    `profile_timing`, the whole step is one compiled call. The pieces are compiled with
    `cfg.compile`; `state` (model, optimizer, RNG) is what they read and write.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable,
        optimizer: Any,
        cfg: TrainConfig,
        timer: PhaseTimer | None = None,
    ):
        self.model, self.optimizer, self.cfg = model, optimizer, cfg
        self.timer = timer or PhaseTimer(cfg.profile_timing)
        self.state = [model.state, optimizer.state, mx.random.state]
        self.accum = cfg.accum_steps
        self.whole = cfg.whole_step and self.accum == 1 and not cfg.profile_timing
        enable_for_training(model, attention=cfg.compile and cfg.checkpoint_every_n <= 0)
        self._micro, self._clip, self._apply, self._whole = self._build(loss_fn)
        self._reset()

    def _build(self, loss_fn: Callable):
        model, optimizer, cfg, accum = self.model, self.optimizer, self.cfg, self.accum
        multi = cfg.multi_tensor
        loss_and_grad = nn.value_and_grad(model, loss_fn)

        def micro(batch, acc):
            out, grads = loss_and_grad(model, batch)
            loss, n, aux = (*out, {}) if len(out) == 2 else out
            if acc is not None:
                grads = tree_map(lambda a, g: a + g.astype(mx.float32), acc, grads)
            elif accum > 1:
                grads = tree_map(lambda g: g.astype(mx.float32), grads)
            return loss, n, grads, aux

        def clip(grads, n):
            return scale_and_clip(grads, n, cfg.grad_clip, multi)

        def apply(grads):
            optimizer.update(model, grads)
            return optimizer.state["learning_rate"]

        def whole(batch, micro=micro, clip=clip, apply=apply):
            loss, n, grads, aux = micro(batch, None)
            if not hasattr(optimizer, "grad_scale"):
                grads, norm = clip(grads, n)
                return loss, n, norm, apply(grads), aux
            # the optimizer scales each gradient as it reads it: no scaled fp32 copy of the tree
            optimizer.grad_scale, norm = clip_scale(grads, n, cfg.grad_clip, multi)
            try:
                lr = apply(grads)
            finally:
                optimizer.grad_scale = None
            return loss, n, norm, lr, aux

        fns = (micro, clip, apply, whole)
        if cfg.compile:  # `whole` traces the plain functions it closes over (bound above)
            fns = tuple(mx.compile(f, inputs=self.state, outputs=self.state) for f in fns)
        return fns

    def _reset(self) -> None:
        self.count, self.tokens = 0, 0
        self.acc, self.aux, self.out = None, {}, None
        self.loss, self.n = mx.array(0.0), mx.array(0.0)

    @property
    def empty(self) -> bool:
        """Whether no micro-batch was added since the last `apply`."""
        return self.count == 0

    def add(self, arrays: dict[str, mx.array], tokens: int = 0) -> None:
        """Accumulate one micro-batch (`to_arrays` form) of `tokens` trained tokens."""
        self.count += 1
        self.tokens += tokens
        if self.whole:
            self.out = self._whole(arrays)
            return
        t = time.perf_counter()
        loss, n, self.acc, aux = self._micro(arrays, self.acc)
        self.loss, self.n = self.loss + loss, self.n + n
        for k, v in aux.items():
            self.aux[k] = self.aux.get(k, 0.0) + v
        if self.accum > 1:
            mx.eval(self.acc, self.loss, self.n)
        self.timer.tick("fwd_bwd", t, self.acc, self.loss, self.n)

    def apply(self, dispatch: bool = True) -> StepOut:
        """Clip and update with what was added, dispatch (`mx.async_eval`; a profiler that
        times graph building apart from enqueueing passes False), and start the next step."""
        if self.empty:
            raise RuntimeError("Step.apply() before any Step.add(): no gradients to apply")
        t = time.perf_counter()
        if self.whole:
            loss, n, norm, lr, aux = self.out
        else:
            grads, norm = self._clip(self.acc, self.n)
            t = self.timer.tick("clip", t, grads, norm)
            lr = self._apply(grads)
            loss, n, aux = self.loss, self.n, self.aux
        out = StepOut(loss, n, norm, lr, aux, self.tokens)
        if dispatch:
            mx.async_eval(self.state, loss, n, norm, lr, aux)
        if self.timer.enabled:
            self.timer.tick("opt", t, self.state)
        self._reset()
        return out

    def __call__(self, batches: list) -> StepOut:
        """A whole step over `batches` (the step's micro-batches, any form `to_arrays` takes)."""
        for b in batches:
            arrays = to_arrays(b)
            self.add(arrays, batch_tokens(b, arrays))
        return self.apply()

    def sync(self) -> None:
        """Wait for the dispatched step."""
        mx.eval(self.state)


def make_step(
    model: nn.Module, cfg: TrainConfig, loss_fn: Callable | None = None, lr: float = 1e-4
) -> Step:
    """A `Step` for drivers that time the step (speed, benchmarks, profilers): the model
    prepared as `train()` does, the optimizer at a fixed `lr`, the LM loss of `cfg` by
    default, the model in training mode."""
    from minillm.train.losses import lm_loss_from_config

    prepare(model, cfg)
    optimizer = build_optimizer(cfg, lr)
    optimizer.init(model.trainable_parameters())
    model.train()
    return Step(model, loss_fn or lm_loss_from_config(cfg), optimizer, cfg)
