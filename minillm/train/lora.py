"""LoRA adapters on named linear layers, saved in mlx-lm's adapter format.

`lora_a` is [in, r] and `lora_b` is [r, out] (mlx-lm's layout; the transposes of the paper's
A (r x in) and B (out x r)), so adapters.safetensors loads with `mlx_lm.tuner.load_adapters`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from minillm.train.config import LORA_TARGETS

ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@contextlib.contextmanager
def keep_rng():
    """Leave mx.random's key as it was (layer constructors draw their random init from it)."""
    key = list(mx.random.state)[0].tolist()
    try:
        yield
    finally:
        # mx.random.seed(s) sets the key to [s >> 32, s & 0xffffffff]
        mx.random.seed((int(key[0]) << 32) | int(key[1]))


@dataclasses.dataclass
class LoRASpec:
    r: int
    alpha: float
    dropout: float
    targets: list[str]


class LoRALinear(nn.Module):
    """`linear(x) + scale * dropout(x) @ lora_a @ lora_b`, the base linear frozen."""

    def __init__(self, linear: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        out_dims, in_dims = linear.weight.shape
        self.linear = linear
        self.linear.freeze()
        self.dropout = nn.Dropout(p=dropout)
        self.scale = alpha / r
        bound = 1 / math.sqrt(in_dims)
        dtype = linear.weight.dtype
        self.lora_a = mx.random.uniform(-bound, bound, (in_dims, r)).astype(dtype)
        self.lora_b = mx.zeros((r, out_dims), dtype)

    def __call__(self, x: mx.array) -> mx.array:
        z = (self.dropout(x) @ self.lora_a) @ self.lora_b
        return self.linear(x) + (self.scale * z).astype(x.dtype)

    def fused(self) -> nn.Linear:
        w = self.linear.weight
        with keep_rng():
            out = nn.Linear(w.shape[1], w.shape[0], bias="bias" in self.linear)
        delta = (self.scale * self.lora_b.T.astype(mx.float32)) @ self.lora_a.T.astype(mx.float32)
        out.weight = (w.astype(mx.float32) + delta).astype(w.dtype)
        if "bias" in self.linear:
            out.bias = self.linear.bias
        return out


def _block_keys(block: nn.Module, targets: tuple[str, ...] | list[str]) -> list[str]:
    return [
        k
        for k, m in block.named_modules()
        if isinstance(m, nn.Linear) and k.rsplit(".", 1)[-1] in targets
    ]


def apply_lora(
    model: nn.Module,
    r: int,
    alpha: float,
    dropout: float = 0.0,
    targets: tuple[str, ...] | list[str] = LORA_TARGETS,
) -> nn.Module:
    """Freeze `model` and wrap every linear whose name is in `targets` in every layer."""
    if r < 1:
        raise ValueError(f"lora_r={r} must be >= 1")
    model.freeze()
    found = set()
    for block in model.layers:
        keys = _block_keys(block, targets)
        found.update(k.rsplit(".", 1)[-1] for k in keys)
        block.update_modules(
            tree_unflatten(
                [
                    (k, LoRALinear(m, r, alpha, dropout))
                    for k, m in block.named_modules()
                    if k in keys
                ]
            )
        )
    missing = sorted(set(targets) - found)
    if missing:
        raise ValueError(
            f"lora_targets {missing} match no linear layer; use names among "
            f"{','.join(LORA_TARGETS)}"
        )
    # a plain object, not a dict: Module would treat a dict attribute as a child tree
    model.lora_spec = LoRASpec(r, float(alpha), float(dropout), list(targets))
    return model


def lora_param_count(model: nn.Module) -> int:
    return sum(v.size for _, v in tree_flatten(model.trainable_parameters()))


def adapter_weights(model: nn.Module) -> dict[str, mx.array]:
    return {
        k: v
        for k, v in tree_flatten(model.parameters())
        if k.rsplit(".", 1)[-1] in ("lora_a", "lora_b")
    }


def adapter_config(model: nn.Module, base_model: str | None = None) -> dict[str, Any]:
    c = dataclasses.asdict(model.lora_spec)
    keys = sorted(
        {k for block in model.layers for k, m in block.named_modules() if isinstance(m, LoRALinear)}
    )
    return {
        "fine_tune_type": "lora",
        "model": base_model,
        "num_layers": len(model.layers),
        "lora_parameters": {
            "rank": c["r"],
            "scale": c["alpha"] / c["r"],
            "dropout": c["dropout"],
            "keys": keys,
        },
        "r": c["r"],
        "alpha": c["alpha"],
        "dropout": c["dropout"],
        "targets": c["targets"],
        "base_model": base_model,
    }


def save_adapters(
    out_dir: str | os.PathLike, model: nn.Module, base_model: str | None = None
) -> Path:
    """Write `adapters.safetensors` + `adapter_config.json` (mlx-lm names) to `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(
        str(out / ADAPTER_WEIGHTS), adapter_weights(model), metadata={"format": "mlx"}
    )
    (out / ADAPTER_CONFIG).write_text(
        json.dumps(adapter_config(model, base_model), indent=2) + "\n", encoding="utf-8"
    )
    return out


def load_adapters(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Wrap `model` as the adapter config says (unless already wrapped) and load the adapters."""
    path = Path(path)
    cfg_path = path / ADAPTER_CONFIG
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} is missing; pass a folder written by save_adapters")
    c = json.loads(cfg_path.read_text(encoding="utf-8"))
    if getattr(model, "lora_spec", None) is None:
        apply_lora(
            model, int(c["r"]), float(c["alpha"]), float(c.get("dropout", 0.0)), tuple(c["targets"])
        )
    weights = mx.load(str(path / ADAPTER_WEIGHTS))
    expected = adapter_weights(model)
    bad = sorted(set(weights) ^ set(expected))
    bad += [k for k in weights if k in expected and weights[k].shape != expected[k].shape]
    if bad:
        raise ValueError(
            f"{path / ADAPTER_WEIGHTS} does not match the model (e.g. {bad[:3]}); "
            "the adapters were trained for another architecture or rank"
        )
    model.load_weights([(k, v.astype(expected[k].dtype)) for k, v in weights.items()], strict=False)
    return model


def fuse(model: nn.Module) -> nn.Module:
    """Merge every adapter into its linear weight; the model becomes a plain, trainable Model."""
    for block in model.layers:
        fused = [(k, m.fused()) for k, m in block.named_modules() if isinstance(m, LoRALinear)]
        if fused:
            block.update_modules(tree_unflatten(fused))
    model.lora_spec = None
    model.unfreeze()
    return model
