"""The decoding state: the per-layer KV cache and the attention mask over it."""

from __future__ import annotations

import mlx.core as mx


class KVCache:
    """Per-layer key/value cache grown in steps of `step` positions."""

    step = 256

    def __init__(self):
        self.keys: mx.array | None = None
        self.values: mx.array | None = None
        self.offset = 0

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        prev, n = self.offset, keys.shape[2]
        if self.keys is None or prev + n > self.keys.shape[2]:
            B, H, _, D = keys.shape
            grow = ((n + self.step - 1) // self.step) * self.step
            new_k = mx.zeros((B, H, grow, D), keys.dtype)
            new_v = mx.zeros((B, H, grow, values.shape[3]), values.dtype)
            if self.keys is None:
                self.keys, self.values = new_k, new_v
            else:
                self.keys = mx.concatenate([self.keys[..., :prev, :], new_k], axis=2)
                self.values = mx.concatenate([self.values[..., :prev, :], new_v], axis=2)
        self.offset += n
        self.keys[..., prev : self.offset, :] = keys
        self.values[..., prev : self.offset, :] = values
        return self.keys[..., : self.offset, :], self.values[..., : self.offset, :]


def make_mask(length: int, offset: int = 0, pad: mx.array | None = None):
    """Attention mask for `length` new queries after `offset` cached positions.

    `pad` is an optional bool array [B, offset + length], True where a key is left padding.
    Returns "causal" (the fused path) when no padding and a single-shot prefill.
    """
    if pad is None:
        if length == 1:
            return None
        if offset == 0:
            return "causal"
    q = mx.arange(offset, offset + length)[:, None]
    k = mx.arange(offset + length)[None, :]
    allowed = k <= q
    if pad is not None:
        # A pad query still sees itself, so no row is fully masked (NaN on some backends).
        allowed = (allowed[None, None] & ~pad[:, None, None, :]) | (k == q)[None, None]
    return allowed
