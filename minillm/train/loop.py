"""The training loop: one `train()` for every objective, driven by a loss function and
batches. The step itself is `minillm.train.step.Step`; what the run writes is
`minillm.train.metrics`."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from minillm.train.config import TrainConfig, resolve_dtype
from minillm.train.metrics import MetricsLog, Window, format_line, write_run_json
from minillm.train.optim import build_optimizer, lr_schedule
from minillm.train.state import (
    TrainState,
    list_checkpoints,
    prune_checkpoints,
    resume,
    save_checkpoint,
)
from minillm.train.step import (  # noqa: F401  (to_arrays, batch_tokens: their old home)
    PHASES,
    PhaseTimer,
    Step,
    StepOut,
    batch_tokens,
    prepare,
    to_arrays,
)


@dataclass
class TrainResult:
    """What `train` returns: per-step losses of the steps run by this call, and where it ended."""

    step: int
    losses: list[float] = field(default_factory=list)
    tokens_seen: int = 0
    checkpoints: list[str] = field(default_factory=list)
    logs: list[dict] = field(default_factory=list)


class _Run:
    """A run's bookkeeping after each step: read its scalars, log, call back, save."""

    def __init__(self, cfg, out, total, model, tokenizer, optimizer, batches, metrics, result,
                 timer, on_log, on_step, base_model, resumed):  # fmt: skip
        self.cfg, self.out, self.total, self.model = cfg, out, total, model
        self.tokenizer, self.optimizer, self.batches = tokenizer, optimizer, batches
        self.metrics, self.result, self.timer = metrics, result, timer
        self.on_log, self.on_step, self.base_model = on_log, on_step, base_model
        self.start = result.step
        self.last_saved = result.step if resumed else None
        self.last = (0.0, 0.0)  # (lr, grad_norm) of the last finished step
        self.win = Window()
        self.bar = None
        if cfg.progress if cfg.progress is not None else sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=result.step, unit="step", dynamic_ncols=True)
        self.emit = self.bar.write if self.bar is not None else print

    def finish(self, done: StepOut) -> None:
        res, cfg = self.result, self.cfg
        res.step += 1
        res.tokens_seen += done.tokens
        ls, ns = done.loss.item(), done.n.item()
        if not math.isfinite(ls):
            raise ValueError(
                f"loss is {ls} at step {res.step}; lower learning_rate or "
                "raise warmup_steps (this step was not saved)"
            )
        res.losses.append(ls / max(ns, 1.0))
        self.win.add(ls, ns, done.tokens, {k: v.item() for k, v in done.aux.items()})
        if res.step - self.start > 2:
            self.timer.steps += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.on_step is not None:
            self.on_step(res.step, self.model)
        self.last = (float(done.lr.item()), float(done.norm.item()))
        if res.step % cfg.log_interval == 0 or res.step >= self.total:
            self.log()
        if cfg.save_interval and res.step % cfg.save_interval == 0:
            self.save()
            self.win.t = time.perf_counter()

    def log(self) -> None:
        rec = self.win.record(self.result.step, *self.last, self.result.tokens_seen)
        if self.cfg.profile_timing and self.timer.steps:
            rec["ms"] = self.timer.means()
        self.emit(format_line(rec))
        self.metrics.write(rec)
        self.result.logs.append(rec)
        if self.on_log is not None:
            self.on_log(rec)

    def save(self) -> None:
        res, b = self.result, self.batches
        cursor = b.state() if hasattr(b, "state") else None
        path = save_checkpoint(
            self.out, res.step, self.model, self.tokenizer, self.optimizer, self.cfg,
            cursor=cursor, tokens_seen=res.tokens_seen, total_steps=self.total,
            base_model=self.base_model,
        )  # fmt: skip
        self.last_saved = res.step
        res.checkpoints.append(str(path))
        prune_checkpoints(self.out, self.cfg.keep_last_checkpoints)
        self.metrics.event("checkpoint", step=res.step, path=str(path))

    def close(self) -> None:
        """After the last step: log and save what is not yet, end the metrics."""
        res = self.result
        if self.win.steps:  # the data ran out between log steps
            self.log()
        if self.last_saved != res.step and res.step > self.start:
            self.save()
        if self.bar is not None:
            self.bar.close()
        self.metrics.event("end", step=res.step, tokens_seen=res.tokens_seen)


def _start(model, cfg: TrainConfig, batches, out: Path, total: int, start_state, base_model):
    """Prepare the model and optimizer, resume from `start_state` (or seed a fresh run in an
    empty folder) and write run.json: `(optimizer, step, tokens_seen, resumed_from)`."""
    out.mkdir(parents=True, exist_ok=True)
    if start_state is None:
        if old := list_checkpoints(out):
            # a fresh run here would interleave its checkpoints with the old ones and pruning
            # by step number would delete the new ones first
            raise ValueError(
                f"{out} already holds checkpoints up to step {old[-1][0]}; resume "
                "from it or choose another out_dir"
            )
        mx.random.seed(cfg.seed)
    prepare(model, cfg)
    optimizer = build_optimizer(
        cfg, lr_schedule(cfg.learning_rate, cfg.warmup_for(total), total, cfg.min_lr_ratio)
    )
    optimizer.init(model.trainable_parameters())
    step, tokens_seen, resumed_from = 0, 0, None
    if start_state is not None:
        path = start_state.path if isinstance(start_state, TrainState) else start_state
        st = resume(path, model, optimizer, batches, cfg)
        step, tokens_seen, resumed_from = st.step, st.tokens_seen, st.path
        if st.total_steps and st.total_steps != total:
            print(
                f"[train] warning: {st.path} was a {st.total_steps}-step run, this one has "
                f"{total} steps; the LR schedule changes from step {step} on",
                file=sys.stderr,
            )
    write_run_json(
        out,
        config=cfg.to_dict(),
        total_steps=total,
        start_step=step,
        resumed_from=resumed_from,
        params=sum(v.size for _, v in tree_flatten(model.parameters())),
        trainable_params=sum(v.size for _, v in tree_flatten(model.trainable_parameters())),
        base_model=base_model,
        pid=os.getpid(),
    )
    return optimizer, step, tokens_seen, resumed_from


def train(
    model: nn.Module,
    loss_fn: Callable,
    batches: Iterable,
    cfg: TrainConfig,
    *,
    tokenizer: Any,
    total_steps: int | None = None,
    start_state: str | os.PathLike | TrainState | None = None,
    on_log: Callable[[dict], None] | None = None,
    base_model: str | None = None,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> TrainResult:
    """Train `model` on `batches` with `loss_fn(model, batch) -> (sum_loss, n_tokens)`.

    `batches` yields micro-batches (objects or dicts with numpy arrays); `accum_steps` of
    them make one optimizer step, whose loss is the sum of token losses over the real-token
    count of all of them. `total_steps` (default `cfg.max_steps`) sizes the LR schedule.
    `start_state` (a checkpoint, a run folder or a `TrainState`) resumes exactly: weights,
    optimizer, schedule, RNG and `batches.restore(cursor)`. The model is cast to `cfg.dtype`
    and, with `cfg.lora_r`, wrapped with adapters (only they train). Checkpoints are saved
    every `save_interval` steps and at the end, never after an exception.

    A loss function may return `(sum_loss, n, aux)` where `aux` maps names to sums (e.g. the
    KL summed over tokens); each is logged as its sum over the log window divided by the
    window's `n`. `on_step(step, model)` runs after every optimizer step (e.g. to publish
    weights).
    """
    if cfg.dtype == "auto":  # written resolved into run.json and the checkpoints
        cfg = dataclasses.replace(cfg, dtype=resolve_dtype(cfg.dtype))
    total = total_steps or cfg.max_steps
    if not total:
        raise ValueError(
            "the number of steps is unknown; set max_steps or pass total_steps "
            "computed from the data and epochs"
        )
    out = Path(cfg.out_dir)
    optimizer, step, tokens_seen, resumed_from = _start(
        model, cfg, batches, out, total, start_state, base_model
    )
    metrics = MetricsLog(out)
    metrics.event("start", step=step, total_steps=total, resumed_from=resumed_from)

    model.train()
    mx.reset_peak_memory()
    timer = PhaseTimer(cfg.profile_timing)
    train_step = Step(model, loss_fn, optimizer, cfg, timer)
    result = TrainResult(step=step, tokens_seen=tokens_seen)
    run = _Run(cfg, out, total, model, tokenizer, optimizer, batches, metrics, result, timer,
               on_log, on_step, base_model, resumed_from is not None)  # fmt: skip

    # A step is dispatched (mx.async_eval) before the previous one's scalars are read, so the
    # host builds step n+1 while the GPU runs step n. Steps that save, call `on_step` (it gets
    # the model), or end the run are finished before the next is dispatched.
    it = iter(batches)
    pending: StepOut | None = None
    dispatched, exhausted = result.step, False
    while dispatched < total:
        timer.counting = result.step - run.start >= 2  # skip compile/warm-up steps
        for _ in range(cfg.accum_steps):
            t = time.perf_counter()
            try:
                raw = next(it)
            except StopIteration:
                exhausted = True
                break
            t = timer.tick("data", t)
            arrays = to_arrays(raw)
            if cfg.sparse_loss and "label_pos" not in arrays:
                raise ValueError(
                    "sparse_loss is set but the batches have no label_pos/label_mask; "
                    "enable them in the data pipeline or unset sparse_loss"
                )
            timer.tick("h2d", t, arrays)
            train_step.add(arrays, batch_tokens(raw, arrays))
        if train_step.empty:
            break
        done = train_step.apply()
        dispatched += 1
        if pending is not None:
            run.finish(pending)
            pending = None
        sync = (
            cfg.profile_timing
            or on_step is not None
            or (cfg.save_interval and dispatched % cfg.save_interval == 0)
            or dispatched >= total
            or exhausted
        )
        if sync:
            train_step.sync()
            run.finish(done)
        else:
            pending = done
        if exhausted:
            break
    if pending is not None:  # the data ran out after a pipelined step
        run.finish(pending)
    run.close()
    return result
