"""Training checkpoints: `<out_dir>/checkpoints/step_XXXXXXXX/`, resumable bit for bit.

Each checkpoint is a Hugging Face model folder (for LoRA: the fused weights, so it loads as a
plain model) plus `optimizer.safetensors`, `state.json` and, for LoRA, the adapter files. It is
staged under a dot-name and renamed into place, so a crash never leaves a half-written one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

from minillm.checkpoint import (  # the finders live with the loader; imported from here too
    DTYPE_NAMES,
    PREFIX,
    STATE_FILE,
    check_weights,
    checkpoints_dir,
    find_checkpoint,
    list_checkpoints,
    model_dtype,
    save_model,
    swap_in,
)
from minillm.train.config import TrainConfig
from minillm.train.lora import LoRALinear, keep_rng, load_adapters, save_adapters

OPTIMIZER_FILE = "optimizer.safetensors"


@dataclass
class TrainState:
    """What `state.json` records; `path` is the checkpoint folder it came from."""

    step: int = 0
    tokens_seen: int = 0
    cursor: Any = None
    rng: list[int] = field(default_factory=list)
    total_steps: int | None = None
    optimizer: str = ""
    optim_state_dtype: str = ""
    dtype: str = ""
    lora: dict | None = None
    config: dict = field(default_factory=dict)
    path: str | None = None


def prune_checkpoints(out_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the `keep` highest-step checkpoints (and stale staging folders)."""
    root = checkpoints_dir(out_dir)
    removed = []
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".") and PREFIX in p.name:  # staging left by a kill
                shutil.rmtree(p, ignore_errors=True)
    if keep > 0:
        for _, p in list_checkpoints(out_dir)[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def rng_state() -> list[int]:
    return [int(x) for x in list(mx.random.state)[0].tolist()]


def set_rng_state(key: list[int]) -> None:
    # mx.random.seed(s) sets the key to [s >> 32, s & 0xffffffff]
    mx.random.seed((int(key[0]) << 32) | int(key[1]))


def _plain_copy(model: nn.Module) -> nn.Module:
    """A LoRA model's fused weights in a fresh plain model (the training model is untouched)."""
    lora = {k: m for k, m in model.named_modules() if isinstance(m, LoRALinear)}
    if not lora:
        return model
    weights = {}
    for k, v in tree_flatten(model.parameters()):
        owner, leaf = k.rsplit(".", 1)
        if leaf in ("lora_a", "lora_b"):
            continue
        if owner.endswith(".linear") and owner[: -len(".linear")] in lora:
            name = owner[: -len(".linear")]
            if leaf == "weight":
                v = lora[name].fused().weight
            k = f"{name}.{leaf}"
        weights[k] = v
    with keep_rng():  # the clone's random init must not move the training RNG
        clone = type(model)(model.args)
    clone.load_weights(list(weights.items()))
    return clone


def save_checkpoint(
    out_dir: str | os.PathLike,
    step: int,
    model: nn.Module,
    tokenizer,
    optimizer: optim.Optimizer,
    cfg: TrainConfig,
    *,
    cursor: Any = None,
    tokens_seen: int = 0,
    total_steps: int | None = None,
    base_model: str | None = None,
) -> Path:
    """Write `checkpoints/step_XXXXXXXX` for `step` and return its path."""
    root = checkpoints_dir(out_dir)
    final = root / f"{PREFIX}{step:08d}"
    stage = root / f".{final.name}.partial-{os.getpid()}"
    lora = getattr(model, "lora_spec", None)
    state = TrainState(
        step=step,
        tokens_seen=int(tokens_seen),
        cursor=cursor,
        rng=rng_state(),
        total_steps=total_steps,
        optimizer=cfg.optimizer,
        optim_state_dtype=cfg.optim_state_dtype,
        dtype=DTYPE_NAMES[model_dtype(model)],
        lora=dataclasses.asdict(lora) if lora else None,
        config=cfg.to_dict(),
    )
    record = dataclasses.asdict(state)
    record.pop("path")
    record["time"] = time.time()
    try:
        save_model(stage, _plain_copy(model), tokenizer, extra_files={STATE_FILE: record})
        opt_state = dict(tree_flatten(optimizer.state))
        mx.save_safetensors(
            str(stage / OPTIMIZER_FILE),
            opt_state,
            metadata={"step": str(step), "optimizer": cfg.optimizer},
        )
        if lora:
            save_adapters(stage, model, base_model)
        swap_in(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return final


def load_state(path: str | os.PathLike) -> TrainState:
    """Read `state.json` of checkpoint `path` (or of the newest checkpoint of run `path`)."""
    ckpt = find_checkpoint(path)
    if ckpt is None:
        raise FileNotFoundError(
            f"no checkpoint under {path}; expected {path}/checkpoints/"
            f"{PREFIX}XXXXXXXX/{STATE_FILE}, written by `minillm train`"
        )
    d = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
    names = {f.name for f in dataclasses.fields(TrainState)}
    return TrainState(**{k: v for k, v in d.items() if k in names}, path=str(ckpt))


def check_compatible(st: TrainState, cfg: TrainConfig, model: nn.Module) -> None:
    """Refuse to resume a checkpoint whose optimizer or dtypes differ from this run's."""
    wanted = {
        "optimizer": cfg.optimizer,
        "optim_state_dtype": cfg.optim_state_dtype,
        "dtype": DTYPE_NAMES[model_dtype(model)],
    }
    for name, value in wanted.items():
        if getattr(st, name) != value:
            raise ValueError(
                f"cannot resume {st.path}: it was trained with {name}={getattr(st, name)}, "
                f"this run has {name}={value}; set {name}={getattr(st, name)} to resume, or "
                "use a fresh out_dir"
            )
    if bool(st.lora) != bool(getattr(model, "lora_spec", None)):
        raise ValueError(
            f"cannot resume {st.path}: it is a {'LoRA' if st.lora else 'full'} run but this "
            f"run is {'LoRA' if not st.lora else 'full'}; set lora_r="
            f"{st.lora['r'] if st.lora else 0} to resume"
        )


def resume(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: optim.Optimizer,
    batches: Any,
    cfg: TrainConfig,
) -> TrainState:
    """Restore weights (or LoRA adapters), optimizer state + schedule position, RNG and the
    data cursor from a checkpoint (or a run folder's newest one). Returns its `TrainState`.
    """
    st = load_state(path)
    ckpt = Path(st.path)
    check_compatible(st, cfg, model)
    if st.lora:
        load_adapters(model, ckpt)
    else:
        weights = check_weights(
            model, dict(mx.load(str(ckpt / "model.safetensors"))), ckpt / "model.safetensors"
        )
        model.load_weights(list(weights.items()))
    opt_file = ckpt / OPTIMIZER_FILE
    if not opt_file.is_file():
        raise FileNotFoundError(
            f"{opt_file} is missing; the checkpoint cannot be resumed "
            "(its weights still load with minillm.load)"
        )
    opt_state = mx.load(str(opt_file))
    sdt = getattr(optimizer, "state_dtype", None)
    for k, v in opt_state.items():
        if sdt is not None and k not in ("step", "learning_rate") and v.dtype != sdt:
            raise ValueError(
                f"cannot resume {ckpt}: optimizer state {k} is {v.dtype}, this "
                f"run keeps it in {sdt}; set optim_state_dtype to match"
            )
    optimizer.state = tree_unflatten(list(opt_state.items()))
    if st.rng:
        set_rng_state(st.rng)
    if st.cursor is not None:
        if not hasattr(batches, "restore"):
            raise ValueError(
                f"{ckpt} has a data cursor but the batch iterator has no "
                "restore(); resume needs the resumable data iterator"
            )
        batches.restore(st.cursor)
    mx.eval(model.parameters(), optimizer.state)
    return st
