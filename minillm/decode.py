"""KV-cached decoding with one compiled call per generated token.

Eager decoding builds ~20 ops per layer and token in Python, and each runs as its own
kernel; at small batch sizes that host work, not the device, sets the pace. `Decoder` keeps
every layer's keys and values in buffers of a fixed capacity, so all decode steps have the
same shapes and run as one `mx.compile`d function: no per-op Python, fused elementwise
kernels, q/k/v and gate/up as one matmul each. A step attends over the positions written so far
rounded up to WINDOW_STEP (so a generation traces the step capacity / 64 times at most), with a
mask for the rest and for left padding. The prompt is prefilled eagerly into the same buffers.

MINILLM_COMPILED_DECODE=0 (or a model that is not a fused `Model`) takes the eager path.
"""

from __future__ import annotations

import os

import mlx.core as mx
import mlx.nn as nn

from minillm.model import MLP, Model

CAPACITY_STEP = 256  # capacities are rounded up to this, so few shapes get compiled
WINDOW_STEP = 64  # a step attends over the positions written so far, rounded up to this
JOIN = os.environ.get("MINILLM_DECODE_JOIN", "1") != "0"  # joined q/k/v and gate/up matmuls


def compiled_decoding(model) -> bool:
    if os.environ.get("MINILLM_COMPILED_DECODE", "1") == "0":
        return False
    return isinstance(model, Model) and all(b.self_attn.fused for b in model.layers)


class StaticCache:
    """One layer's keys/values [B, Hkv, capacity, D]; the eager (prefill) side of `Decoder`."""

    def __init__(self, batch: int, n_kv: int, capacity: int, head_dim: int, dtype: mx.Dtype):
        self.keys = mx.zeros((batch, n_kv, capacity, head_dim), dtype)
        self.values = mx.zeros((batch, n_kv, capacity, head_dim), dtype)
        self.offset = 0

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        prev, n = self.offset, keys.shape[2]
        if prev + n > self.keys.shape[2]:
            raise ValueError(f"{prev + n} positions exceed the cache capacity {self.keys.shape[2]}")
        self.keys[..., prev : prev + n, :] = keys
        self.values[..., prev : prev + n, :] = values
        self.offset += n
        return self.keys[..., : self.offset, :], self.values[..., : self.offset, :]


class _StepCache:
    """The compiled step's view of a StaticCache: writes one position at `offset` (an array)
    and returns the first `window` positions of the buffers."""

    def __init__(self, keys: mx.array, values: mx.array, offset: mx.array, window: int):
        self.keys, self.values, self.offset, self.window = keys, values, offset, window

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        start = self.offset.reshape(1)
        self.keys = mx.slice_update(self.keys, keys, start, axes=(2,))
        self.values = mx.slice_update(self.values, values, start, axes=(2,))
        w = self.window
        return self.keys[..., :w, :], self.values[..., :w, :]


def joinable(model: Model) -> bool:
    """Whether every layer is plain (nn.Linear projections, dense MLP): then a decode step
    computes q/k/v and gate/up as one matmul each over joined copies of their weights."""
    names = ("q_proj", "k_proj", "v_proj")
    for b in model.layers:
        if not isinstance(b.mlp, MLP):
            return False
        mods = [getattr(b.self_attn, n) for n in names] + [b.mlp.gate_proj, b.mlp.up_proj]
        if any(type(m) is not nn.Linear or "bias" in m for m in mods):
            return False
    return True


def joined_weights(model: Model) -> list[mx.array]:
    """[qkv_0, gate_up_0, qkv_1, ...]: each layer's q/k/v and gate/up weights concatenated,
    kept on the model until any of those weights is replaced."""
    src = []
    for b in model.layers:
        a, m = b.self_attn, b.mlp
        src += [
            a.q_proj.weight,
            a.k_proj.weight,
            a.v_proj.weight,
            m.gate_proj.weight,
            m.up_proj.weight,
        ]
    cached = getattr(model, "_joined", None)
    if (
        cached is None
        or len(cached[0]) != len(src)
        or any(x is not y for x, y in zip(cached[0], src, strict=True))
    ):
        out = []
        for i in range(0, len(src), 5):
            out += [mx.concatenate(src[i : i + 3]), mx.concatenate(src[i + 3 : i + 5])]
        cached = (src, out)
        object.__setattr__(model, "_joined", cached)  # a plain attribute, not a parameter
    return cached[1]


def _joined_layer(block, w_qkv, w_gu, h, mask, cache):
    """`block(h, mask, cache)` for one decoded position with joined projections."""
    attn, B = block.self_attn, h.shape[0]
    nq, nkv = attn.n_heads, attn.n_kv_heads
    x = block.input_layernorm(h)
    qkv = (x @ w_qkv.T).reshape(B, 1, nq + 2 * nkv, -1).transpose(0, 2, 1, 3)
    qk = attn.rope(qkv[:, : nq + nkv], offset=cache.offset)
    k, v = cache.update_and_fetch(qk[:, nq:], qkv[:, nq + nkv :])
    o = mx.fast.scaled_dot_product_attention(qk[:, :nq], k, v, scale=attn.scale, mask=mask)
    h = h + attn.o_proj(o.transpose(0, 2, 1, 3).reshape(B, 1, -1))
    gu = block.post_attention_layernorm(h) @ w_gu.T
    inter = gu.shape[-1] // 2
    return h + block.mlp.down_proj(nn.silu(gu[..., :inter]) * gu[..., inter:])


def _build_step(model: Model):
    def step(tokens, pos, allowed, kv, joined, window):
        caches = [
            _StepCache(kv[2 * i], kv[2 * i + 1], pos, window) for i in range(len(model.layers))
        ]
        mask = (allowed[:, :window] & (mx.arange(window) <= pos))[:, None, None, :]
        h = model.model.embed_tokens(tokens)
        for i, (layer, cache) in enumerate(zip(model.layers, caches, strict=True)):
            if joined:
                h = _joined_layer(layer, joined[2 * i], joined[2 * i + 1], h, mask, cache)
            else:
                h = layer(h, mask, cache)
        logits = model.logits(model.final_norm(h)[:, -1, :])
        return logits, pos + 1, [a for c in caches for a in (c.keys, c.values)]

    return mx.compile(step, inputs=model.state)


class Decoder:
    """Logits of the last position for `batch` rows: the prompt first (`ids` [B, P]), then
    one token per call ([B, 1]). `pad` [B, >= P + steps] marks left padding (True) or is None.
    """

    def __init__(self, model, batch: int, length: int, pad: mx.array | None = None):
        self.model, self.pad = model, pad
        self.compiled = compiled_decoding(model)
        if not self.compiled:
            self.cache: list = model.make_cache()
            return
        a = model.args
        cap = -(-length // CAPACITY_STEP) * CAPACITY_STEP
        dtype = model.model.embed_tokens.weight.dtype
        self.cache = [
            StaticCache(batch, a.num_key_value_heads, cap, a.head_dim, dtype) for _ in model.layers
        ]
        allowed = mx.ones((batch, cap), mx.bool_)
        if pad is not None:
            n = min(pad.shape[1], cap)
            allowed = mx.concatenate([~pad[:, :n], allowed[:, n:]], axis=1)
        self.allowed = allowed
        self.pos: mx.array | None = None
        self.joined = joined_weights(model) if JOIN and joinable(model) else []
        if getattr(model, "_decode_step", None) is None:
            object.__setattr__(model, "_decode_step", _build_step(model))

    @property
    def offset(self) -> int:
        return self.cache[0].offset

    def __call__(self, x: mx.array) -> mx.array:
        if not self.compiled or self.pos is None:
            return self._eager(x)
        kv = [a for c in self.cache for a in (c.keys, c.values)]
        for c in self.cache:  # the step's slice updates may then reuse the buffers in place
            c.keys = c.values = None
        # attend over the written positions rounded up to WINDOW_STEP: a few traced shapes
        window = min(self.allowed.shape[1], -(-(self.offset + 1) // WINDOW_STEP) * WINDOW_STEP)
        step = self.model._decode_step
        logits, self.pos, kv = step(x, self.pos, self.allowed, kv, self.joined, window)
        for i, c in enumerate(self.cache):
            c.keys, c.values = kv[2 * i], kv[2 * i + 1]
            c.offset += 1
        return logits

    def _eager(self, x: mx.array) -> mx.array:
        offset = self.offset
        mask = None if self.pad is None else self.pad[:, : offset + x.shape[1]]
        h = self.model.hidden(x, cache=self.cache, pad=mask)[:, -1, :]
        if self.compiled:
            self.pos = mx.array(self.offset, mx.int32)
        return self.model.logits(h)
