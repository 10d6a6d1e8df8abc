"""The training loop: one `train()` for every objective, driven by a loss function and batches."""

from __future__ import annotations

import dataclasses
import json
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
import numpy as np
from mlx.utils import tree_flatten, tree_map

from minillm.checkpoint import cast_model, model_dtype, parse_dtype
from minillm.models.cpu_ops import enable_for_training
from minillm.train.config import TrainConfig, resolve_dtype
from minillm.train.lora import apply_lora
from minillm.train.optim import build_optimizer, clip_scale, lr_schedule, scale_and_clip
from minillm.train.state import (
    TrainState,
    list_checkpoints,
    prune_checkpoints,
    resume,
    save_checkpoint,
)

# one compiled call per step when accum_steps is 1 (the profile's A/B switch)
WHOLE_STEP = True
PHASES = ("data", "h2d", "fwd_bwd", "clip", "opt")


@dataclass
class TrainResult:
    """What `train` returns: per-step losses of the steps run by this call, and where it ended."""

    step: int
    losses: list[float] = field(default_factory=list)
    tokens_seen: int = 0
    checkpoints: list[str] = field(default_factory=list)
    logs: list[dict] = field(default_factory=list)


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
    n = batch.get("n_tokens") if isinstance(batch, dict) else getattr(batch, "n_tokens", None)
    if n is None:
        n = arrays["mask"].sum().item() if "mask" in arrays else arrays["inputs"].size
    return int(n)


class MetricsLog:
    """`<out_dir>/metrics.jsonl`: one JSON object per line, flushed at once."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / "metrics.jsonl"

    def write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def format_line(rec: dict) -> str:
    line = (
        f"step={rec['step']} loss={rec['loss']:.4f} lr={rec['lr']:.3e} "
        f"grad_norm={rec['grad_norm']:.3f} tok/s={rec['tok_s']:.0f} "
        f"ms/step={rec['ms_step']:.1f} peak_mem={rec['peak_mem_mib']:.0f}MiB"
    )
    extra = [k for k in rec.get("aux_keys", ())]
    line += "".join(f" {k}={rec[k]:.4g}" for k in extra)
    if "ms" in rec:
        line += " " + " ".join(f"{k}={v:.1f}ms" for k, v in rec["ms"].items())
    return line


def _prepare(model: nn.Module, cfg: TrainConfig) -> None:
    dtype = parse_dtype(resolve_dtype(cfg.dtype))
    if model_dtype(model) != dtype:
        cast_model(model, dtype)
    if cfg.lora_r and getattr(model, "lora_spec", None) is None:
        apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    mx.eval(model.parameters())


def build_step(model: nn.Module, loss_fn: Callable, optimizer: Any, cfg: TrainConfig):
    """The step's pieces, compiled when `cfg.compile`: returns `(micro, clip, apply, state)`.

    `micro.whole(batch) -> (sum_loss, n, grad_norm, lr, aux)`, set when `accum_steps` is 1
    and per-phase timing is off, does a whole step in one compiled call.
    `micro(batch, acc) -> (sum_loss, n, acc)` adds a micro-batch's summed-loss gradients to
    `acc` (None at the first); `micro.aux` holds the loss function's extra sums of that call
    (a dict, empty when the loss returns only `(sum_loss, n)`); `clip(acc, n_total) -> (grads, grad_norm)` divides by the step's
    real-token count and clips; `apply(grads) -> lr` updates the model. `state` is what they
    read and write (model, optimizer, RNG): `mx.eval(state)` after a step.
    """
    state = [model.state, optimizer.state, mx.random.state]
    loss_and_grad = nn.value_and_grad(model, loss_fn)
    enable_for_training(model, attention=cfg.compile and cfg.checkpoint_every_n <= 0)
    accum = cfg.accum_steps

    def micro_aux(batch, acc):
        out, grads = loss_and_grad(model, batch)
        loss, n, aux = (*out, {}) if len(out) == 2 else out
        if acc is not None:
            grads = tree_map(lambda a, g: a + g.astype(mx.float32), acc, grads)
        elif accum > 1:
            grads = tree_map(lambda g: g.astype(mx.float32), grads)
        return loss, n, grads, aux

    def clip(grads, n):
        return scale_and_clip(grads, n, cfg.grad_clip)

    def apply(grads):
        optimizer.update(model, grads)
        return optimizer.state["learning_rate"]

    def whole(batch, micro_aux=micro_aux, clip=clip, apply=apply):
        loss, n, grads, aux = micro_aux(batch, None)
        if not hasattr(optimizer, "grad_scale"):
            grads, norm = clip(grads, n)
            return loss, n, norm, apply(grads), aux
        # the optimizer scales each gradient as it reads it: no scaled fp32 copy of the tree
        optimizer.grad_scale, norm = clip_scale(grads, n, cfg.grad_clip)
        try:
            lr = apply(grads)
        finally:
            optimizer.grad_scale = None
        return loss, n, norm, lr, aux

    if cfg.compile:  # `whole` traces the plain functions it closes over (bound above)
        whole = mx.compile(whole, inputs=state, outputs=state)
        micro_aux, clip, apply = (
            mx.compile(f, inputs=state, outputs=state) for f in (micro_aux, clip, apply)
        )

    def micro(batch, acc):
        loss, n, grads, micro.aux = micro_aux(batch, acc)
        return loss, n, grads

    micro.aux = {}
    # one compiled graph for the whole step (no fp32 gradient tree materialised between the
    # pieces); the per-phase timing needs the pieces apart
    micro.whole = whole if accum == 1 and WHOLE_STEP and not cfg.profile_timing else None
    return micro, clip, apply, state


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
    _prepare(model, cfg)
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
    n_params = sum(v.size for _, v in tree_flatten(model.parameters()))
    n_train = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    (out / "run.json").write_text(
        json.dumps(
            {
                "config": cfg.to_dict(),
                "total_steps": total,
                "start_step": step,
                "resumed_from": resumed_from,
                "params": n_params,
                "trainable_params": n_train,
                "base_model": base_model,
                "pid": os.getpid(),
                "time": time.time(),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    metrics = MetricsLog(out)
    metrics.write(
        {
            "event": "start",
            "step": step,
            "total_steps": total,
            "resumed_from": resumed_from,
            "time": time.time(),
        }
    )

    model.train()
    mx.reset_peak_memory()
    micro, clip, apply, state = build_step(model, loss_fn, optimizer, cfg)
    accum = cfg.accum_steps

    show_bar = cfg.progress if cfg.progress is not None else sys.stdout.isatty()
    bar = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True)
    emit = bar.write if bar is not None else print

    result = TrainResult(step=step, tokens_seen=tokens_seen)
    it = iter(batches)
    prof = {k: 0.0 for k in PHASES}
    prof_steps = 0
    win = {"loss": 0.0, "n": 0.0, "tokens": 0, "steps": 0, "t": time.perf_counter(), "aux": {}}
    last_saved = step if resumed_from else None
    exhausted = False

    def tick(name, t, *arrays):
        if cfg.profile_timing:
            mx.eval(*arrays)
            now = time.perf_counter()
            if result.step - step_at_start >= 2:  # skip compile/warm-up steps
                prof[name] += (now - t) * 1000
            return now
        return t

    def save():
        nonlocal last_saved
        cursor = batches.state() if hasattr(batches, "state") else None
        path = save_checkpoint(
            out,
            result.step,
            model,
            tokenizer,
            optimizer,
            cfg,
            cursor=cursor,
            tokens_seen=result.tokens_seen,
            total_steps=total,
            base_model=base_model,
        )
        last_saved = result.step
        result.checkpoints.append(str(path))
        prune_checkpoints(out, cfg.keep_last_checkpoints)
        metrics.write(
            {"event": "checkpoint", "step": result.step, "path": str(path), "time": time.time()}
        )

    def log(lr, norm):
        dt = time.perf_counter() - win["t"]
        rec = {
            "event": "log",
            "step": result.step,
            "loss": win["loss"] / max(win["n"], 1.0),
            "lr": lr,
            "grad_norm": norm,
            "tok_s": win["tokens"] / max(dt, 1e-9),
            "ms_step": 1000 * dt / win["steps"],
            "peak_mem_mib": mx.get_peak_memory() / 2**20,
            "tokens_seen": result.tokens_seen,
            "time": time.time(),
        }
        for k, v in win["aux"].items():
            rec[k] = v / max(win["n"], 1.0)
        if win["aux"]:
            rec["aux_keys"] = sorted(win["aux"])
        if cfg.profile_timing and prof_steps:
            rec["ms"] = {k: v / prof_steps for k, v in prof.items()}
        emit(format_line(rec))
        metrics.write(rec)
        result.logs.append(rec)
        if on_log is not None:
            on_log(rec)
        win.update(loss=0.0, n=0.0, tokens=0, steps=0, t=time.perf_counter(), aux={})

    step_at_start, last = step, (0.0, 0.0)

    def finish(done: dict) -> None:
        """A dispatched step's bookkeeping: read its scalars, log, callback, save."""
        nonlocal last, prof_steps
        result.step += 1
        result.tokens_seen += done["ntok"]
        ls, ns = done["loss"].item(), done["n"].item()
        if not math.isfinite(ls):
            raise ValueError(
                f"loss is {ls} at step {result.step}; lower learning_rate or "
                "raise warmup_steps (this step was not saved)"
            )
        result.losses.append(ls / max(ns, 1.0))
        win["loss"] += ls
        win["n"] += ns
        win["tokens"] += done["ntok"]
        win["steps"] += 1
        for k, v in done["aux"].items():
            win["aux"][k] = win["aux"].get(k, 0.0) + v.item()
        if result.step - step_at_start > 2:
            prof_steps += 1
        if bar is not None:
            bar.update(1)
        if on_step is not None:
            on_step(result.step, model)
        last = (float(done["lr"].item()), float(done["norm"].item()))
        if result.step % cfg.log_interval == 0 or result.step >= total:
            log(*last)
        if cfg.save_interval and result.step % cfg.save_interval == 0:
            save()
            win["t"] = time.perf_counter()

    # A step is dispatched (mx.async_eval) before the previous one's scalars are read, so the
    # host builds step n+1 while the GPU runs step n. Steps that save, call `on_step` (it gets
    # the model), or end the run are finished before the next is dispatched.
    pending = None
    dispatched = result.step
    while dispatched < total:
        acc, loss_sum, n_sum, ntok, aux_sum = None, mx.array(0.0), mx.array(0.0), 0, {}
        for _ in range(accum):
            t = time.perf_counter()
            try:
                raw = next(it)
            except StopIteration:
                exhausted = True
                break
            t = tick("data", t)
            arrays = to_arrays(raw)
            if cfg.sparse_loss and "label_pos" not in arrays:
                raise ValueError(
                    "sparse_loss is set but the batches have no label_pos/"
                    "label_mask; enable them in the data pipeline or unset "
                    "sparse_loss"
                )
            t = tick("h2d", t, arrays)
            ntok += batch_tokens(raw, arrays)
            if micro.whole is not None:
                loss_sum, n_sum, norm, lr, aux_sum = micro.whole(arrays)
                acc = True
                continue
            loss, n, acc = micro(arrays, acc)
            loss_sum, n_sum = loss_sum + loss, n_sum + n
            for k, v in micro.aux.items():
                aux_sum[k] = aux_sum.get(k, 0.0) + v
            if accum > 1:
                mx.eval(acc, loss_sum, n_sum)
            t = tick("fwd_bwd", t, acc, loss_sum, n_sum)
        if acc is None:
            break
        t = time.perf_counter()
        if micro.whole is None:
            grads, norm = clip(acc, n_sum)
            t = tick("clip", t, grads, norm)
            lr = apply(grads)
        done = dict(loss=loss_sum, n=n_sum, norm=norm, lr=lr, aux=aux_sum, ntok=ntok)
        mx.async_eval(state, loss_sum, n_sum, norm, lr, aux_sum)
        dispatched += 1
        if pending is not None:
            finish(pending)
            pending = None
        sync = (
            cfg.profile_timing
            or on_step is not None
            or (cfg.save_interval and dispatched % cfg.save_interval == 0)
            or dispatched >= total
            or exhausted
        )
        if sync:
            mx.eval(state)
            tick("opt", t)
            finish(done)
        else:
            pending = done
        if exhausted:
            break
    if pending is not None:  # the data ran out after a pipelined step
        finish(pending)
    if win["steps"]:  # the data ran out between log steps
        log(*last)
    if last_saved != result.step and result.step > step_at_start:
        save()
    if bar is not None:
        bar.close()
    metrics.write(
        {
            "event": "end",
            "step": result.step,
            "tokens_seen": result.tokens_seen,
            "time": time.time(),
        }
    )
    return result
