"""Weight snapshots as plain numpy arrays (bfloat16 travels as its uint16 bits), the form the
learner publishes through the object store and rollout workers load between batches."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten


def snapshot(model) -> dict[str, tuple[np.ndarray, str]]:
    """`{name: (array, dtype name)}` of every parameter (LoRA-fused weights are not special:
    the trainable and frozen parameters are all included)."""
    out = {}
    for k, v in tree_flatten(model.parameters()):
        if v.dtype == mx.bfloat16:
            out[k] = (np.array(v.view(mx.uint16)), "bfloat16")
        else:
            out[k] = (np.array(v), str(v.dtype).split(".")[-1])
    return out


def load_snapshot(model, snap: dict[str, tuple[np.ndarray, str]]) -> None:
    """Load a `snapshot` into `model` (same architecture), keeping its dtypes as sent."""
    items = []
    for k, (a, dt) in snap.items():
        arr = mx.array(a)
        if dt == "bfloat16":
            arr = arr.view(mx.bfloat16)
        items.append((k, arr))
    model.load_weights(items, strict=False)
    mx.eval(model.parameters())
