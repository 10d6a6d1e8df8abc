"""Optimizers with decoupled decay on >=2-D weights only, a chosen state dtype, and the LR schedule.

MLX's optimizers decay every parameter (norm weights included) and compute in the gradient's
dtype. The subclasses here keep the base update rule but (1) cast gradient and parameter to the
state dtype, (2) apply `p *= 1 - lr * wd` only to matrices, (3) cast the result back to the
parameter's dtype, so bf16 parameters stay bf16 while m/v may be fp32.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map, tree_reduce

from minillm.train import fused_adam
from minillm.train.config import TrainConfig


def lr_schedule(
    learning_rate: float, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1
) -> Callable[[mx.array | int], mx.array]:
    """Linear warmup then cosine decay; `fn(i)` is the LR of the (i+1)-th update (i from 0).

    Warmup reaches `learning_rate` at update `warmup_steps` (i = warmup_steps - 1); the last
    update (i = total_steps - 1) uses exactly `min_lr_ratio * learning_rate`.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps} must be >= 1")
    if warmup_steps >= total_steps and warmup_steps > 0:
        raise ValueError(
            f"warmup_steps={warmup_steps} >= total steps {total_steps}; set "
            f"warmup_steps below {total_steps}"
        )
    lr, lo = float(learning_rate), float(learning_rate) * min_lr_ratio
    decay_len = max(1, total_steps - 1 - warmup_steps)

    def fn(i):
        i = mx.array(i).astype(mx.float32)
        warm = lr * (i + 1) / max(1, warmup_steps)
        t = mx.clip((i - warmup_steps) / decay_len, 0.0, 1.0)
        cos = lo + (lr - lo) * 0.5 * (1.0 + mx.cos(math.pi * t))
        return mx.where(i < warmup_steps, warm, cos)

    return fn


class _Decoupled:
    """Mixin: state dtype, matrix-only decoupled decay, result in the parameter dtype.

    `grad_scale`, when set (an mx scalar), multiplies every gradient first: the step builder
    passes the 1/tokens x clip factor here instead of scaling a copy of the gradient tree.
    """

    state_dtype: mx.Dtype | None = None
    decay: float = 0.0
    grad_scale: mx.array | None = None

    def init_single(self, parameter: mx.array, state: dict):
        super().init_single(parameter.astype(self.state_dtype or parameter.dtype), state)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict):
        dtype = parameter.dtype
        sdt = self.state_dtype or dtype
        g, p = gradient.astype(sdt), parameter.astype(sdt)
        if self.grad_scale is not None:
            g = g * self.grad_scale.astype(sdt)
        if self.decay and parameter.ndim >= 2:
            p = p * (1 - self.learning_rate.astype(sdt) * self.decay)
        return super().apply_single(g, p, state).astype(dtype)


class AdamW(_Decoupled, optim.Adam):
    """AdamW with bias correction; decay only on >=2-D parameters.

    On MLX CUDA with fp32 state each parameter's update is one fused kernel
    (`minillm.train.fused_adam`); elsewhere MLX's ops compute the same values.
    """

    _hyper: tuple | None = None
    fused = True  # TrainConfig.fused_adam (`build_optimizer`)
    multi = False  # TrainConfig.multi_tensor: many parameters per kernel launch

    def apply_gradients(self, gradients: dict, parameters: dict):
        """MLX's `apply_gradients`; on CUDA with `multi`, the fused updates of all parameters
        run GROUP per kernel launch (`fused_adam.multi_adamw`) instead of one each."""
        if not (self.fused and self.multi and fused_adam.on_cuda()):
            return super().apply_gradients(gradients, parameters)
        if not self._initialized:
            self.init(gradients)
        for param, scheduler in self._schedulers.items():
            self.state[param] = scheduler(self.step)
        self.state["step"] = step = self.step + 1
        rows: list[tuple] = []  # (gradient, parameter, state) in tree order
        index = tree_map(lambda g, p, st: rows.append((g, p, st)) or len(rows) - 1,
                         gradients, parameters, self.state)  # fmt: skip
        out: list = [None] * len(rows)
        fast: dict[tuple, list[int]] = {}  # parameter dtype -> rows the kernel updates
        for i, (g, p, st) in enumerate(rows):
            if fused_adam.usable(st, True):
                fast.setdefault((p.dtype, g.dtype), []).append(i)
            else:
                out[i] = self.apply_single(g, p, st)
        if fast:
            b1, b2 = self.betas
            h = fused_adam.hyper(
                self.learning_rate, b1, b2, self.eps, self.decay, step,
                self.bias_correction, self.grad_scale,
            )  # fmt: skip
            for idx in fast.values():
                ps, gs, sts = [rows[i][1] for i in idx], [rows[i][0] for i in idx], [rows[i][2] for i in idx]  # fmt: skip
                decays = [bool(self.decay) and p.ndim >= 2 for p in ps]
                new_p, new_m, new_v = fused_adam.multi_adamw(
                    ps, gs, [st["m"] for st in sts], [st["v"] for st in sts], h, decays
                )
                for k, i in enumerate(idx):
                    out[i] = new_p[k]
                    sts[k]["m"], sts[k]["v"] = new_m[k], new_v[k]
        return tree_map(lambda i: out[i], index)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict):
        if not fused_adam.usable(state, self.fused):
            return super().apply_single(gradient, parameter, state)
        step = self.state["step"]
        if self._hyper is None or self._hyper[0] is not step:  # once per update
            b1, b2 = self.betas
            h = fused_adam.hyper(
                self.learning_rate, b1, b2, self.eps, self.decay, step,
                self.bias_correction, self.grad_scale,
            )  # fmt: skip
            self._hyper = (step, h)
        p, state["m"], state["v"] = fused_adam.adamw(
            parameter, gradient, state["m"], state["v"], self._hyper[1],
            decay=bool(self.decay) and parameter.ndim >= 2,
        )  # fmt: skip
        return p


class Lion(_Decoupled, optim.Lion):
    """Lion; decay only on >=2-D parameters."""


class Adafactor(_Decoupled, optim.Adafactor):
    """Adafactor driven by the external LR schedule (no relative step / parameter scaling)."""


def build_optimizer(cfg: TrainConfig, schedule: Callable | float) -> optim.Optimizer:
    """The optimizer named by `cfg.optimizer`, its LR given by `schedule` (callable of step).

    Its state is fp32 with `optim_state_dtype="float32"`, else each parameter's own dtype.
    """
    if cfg.optimizer == "adamw":
        opt = AdamW(
            learning_rate=schedule,
            betas=list(cfg.adam_betas),
            eps=cfg.adam_eps,
            bias_correction=True,
        )
        opt.fused, opt.multi = cfg.fused_adam, cfg.multi_tensor
    elif cfg.optimizer == "lion":
        opt = Lion(learning_rate=schedule, betas=[0.9, 0.99])
    elif cfg.optimizer == "adafactor":
        opt = Adafactor(learning_rate=schedule, relative_step=False, scale_parameter=False)
    else:
        raise ValueError(f"optimizer={cfg.optimizer!r}; use adamw, adafactor or lion")
    opt.decay = float(cfg.weight_decay)
    opt.state_dtype = mx.float32 if cfg.optim_state_dtype == "float32" else None
    return opt


def global_norm(grads, multi: bool = False) -> mx.array:
    """The gradients' global L2 norm (fp32); with `multi` on CUDA, their squares are summed by
    one kernel launch for all of them (`fused_adam.sum_squares`) instead of two per array."""
    if multi and fused_adam.on_cuda():
        return mx.sqrt(fused_adam.sum_squares([g for _, g in tree_flatten(grads)]))
    return mx.sqrt(
        tree_reduce(lambda acc, g: acc + g.astype(mx.float32).square().sum(), grads, mx.array(0.0))
    )


def clip_scale(
    grads, n_tokens: mx.array, max_norm: float, multi: bool = False
) -> tuple[mx.array, mx.array]:
    """`(scale, norm)`: the factor that divides summed gradients by the step's real-token count
    and clips their global norm, and that norm before clipping (without scaling any gradient)."""
    inv = 1.0 / mx.maximum(n_tokens.astype(mx.float32), 1.0)
    norm = global_norm(grads, multi) * inv
    if max_norm > 0:
        return inv * mx.minimum(max_norm / (norm + 1e-6), 1.0), norm
    return inv, norm


def scale_and_clip(grads, n_tokens: mx.array, max_norm: float, multi: bool = False):
    """Divide summed gradients by the step's real-token count, then clip the global norm.

    Returns `(grads, norm)` with the norm measured before clipping. Gradients come back in
    fp32; the optimizer casts them to its state dtype.
    """
    scale, norm = clip_scale(grads, n_tokens, max_norm, multi)
    return tree_map(lambda g: g.astype(mx.float32) * scale, grads), norm
