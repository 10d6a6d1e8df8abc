"""The layers of a block: RMSNorm, attention and the SwiGLU MLP, with their custom VJPs and
the plain reference ops the tests compare them to."""

from __future__ import annotations

import functools
import math

import mlx.core as mx
import mlx.nn as nn

from minillm.models import cpu_ops
from minillm.models.args import ModelArgs
from minillm.models.cache import KVCache


def rms_norm_ref(x: mx.array, weight: mx.array, eps: float) -> mx.array:
    xf = x.astype(mx.float32)
    return (xf * mx.rsqrt(mx.mean(xf * xf, axis=-1, keepdims=True) + eps)).astype(x.dtype) * weight


def rope_ref(x: mx.array, base: float, offset: int) -> mx.array:
    """Rotate-half RoPE over the last axis of [B, H, L, D] (what mx.fast.rope computes)."""
    D, L = x.shape[-1], x.shape[-2]
    inv = base ** (-mx.arange(0, D, 2, dtype=mx.float32) / D)
    ang = mx.arange(offset, offset + L, dtype=mx.float32)[:, None] * inv[None]
    cos, sin = mx.cos(ang).astype(x.dtype), mx.sin(ang).astype(x.dtype)
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return mx.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def attention_ref(q: mx.array, k: mx.array, v: mx.array, scale: float, mask) -> mx.array:
    """Softmax attention in plain ops (fp32 softmax), with GQA by repeating k/v heads."""
    rep = q.shape[1] // k.shape[1]
    if rep > 1:
        k, v = mx.repeat(k, rep, axis=1), mx.repeat(v, rep, axis=1)
    scores = (q * scale) @ k.swapaxes(-1, -2)
    if isinstance(mask, str):
        L, S = q.shape[2], k.shape[2]
        mask = mx.arange(S - L, S)[:, None] >= mx.arange(S)[None]
    if mask is not None:
        scores = mx.where(mask, scores, mx.finfo(scores.dtype).min)
    return mx.softmax(scores.astype(mx.float32), axis=-1).astype(v.dtype) @ v


@functools.cache
def _rms_norm_fn(eps: float):
    @mx.custom_function
    def rms_norm(x, w):
        return mx.fast.rms_norm(x, w, eps)

    @rms_norm.vjp
    def rms_norm_vjp(primals, cotangent, output):
        x, w = primals
        (xhat,), (dx,) = mx.vjp(lambda t: mx.fast.rms_norm(t, None, eps), [x], [cotangent * w])
        D = x.shape[-1]
        prod = (cotangent.astype(mx.float32) * xhat.astype(mx.float32)).reshape(-1, D)
        r = math.gcd(prod.shape[0], 256)
        dw = prod.reshape(-1, r, D).sum(axis=1).sum(axis=0)
        return dx, dw.astype(w.dtype)

    return rms_norm


class RMSNorm(nn.RMSNorm):
    """`nn.RMSNorm` whose weight gradient is summed in two stages (fp32).

    MLX CUDA reduces the [tokens, dim] weight-gradient products in one column reduction of
    dim/32 blocks: 170 us per norm for 16k tokens x 768 on an H200, 11% of a `200mb` training
    step. Summing 256-row groups first spreads it over the whole GPU. Small inputs (decoding)
    take the plain fused kernel.
    """

    split_grad = True  # TrainConfig.norm_split_grad, set per model by `set_training_kernels`

    def __call__(self, x: mx.array) -> mx.array:
        if not self.split_grad or x.size // x.shape[-1] < 4096:
            return mx.fast.rms_norm(x, self["weight"], self.eps)
        return _rms_norm_fn(float(self.eps))(x, self["weight"])


@mx.custom_function
def swiglu(gate: mx.array, up: mx.array) -> mx.array:
    """`silu(gate) * up`, whose VJP keeps only `gate` and `up` (sigmoid recomputed in fp32).

    Autodiff of `nn.silu(gate) * up` keeps sigmoid(gate) and silu(gate) for the backward as
    well: two more [tokens, intermediate] arrays per layer (2 GiB for the `200mb` preset at
    16 x 1024 tokens in bf16).
    """
    return nn.silu(gate) * up


@swiglu.vjp
def _swiglu_vjp(primals, cotangent, output):
    gate, up = primals
    g = gate.astype(mx.float32)
    sig = mx.sigmoid(g)
    c = cotangent.astype(mx.float32)
    d_gate = c * up.astype(mx.float32) * sig * (1 + g * (1 - sig))
    return d_gate.astype(gate.dtype), (c * g * sig).astype(up.dtype)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads = args.num_attention_heads, args.num_key_value_heads
        self.head_dim = hd = args.head_dim
        self.scale = hd**-0.5
        dim = args.hidden_size
        self.q_proj = nn.Linear(dim, self.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(dim, self.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(dim, self.n_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(self.n_heads * hd, dim, bias=False)
        self.rope = nn.RoPE(hd, traditional=False, base=args.rope_theta)
        self.fused = True
        self.cpu_attn = False  # set by the training step builder (minillm.models.cpu_ops)

    def __call__(self, x: mx.array, mask=None, cache: KVCache | None = None) -> mx.array:
        B, L, _ = x.shape
        q = self.q_proj(x).reshape(B, L, self.n_heads, -1).transpose(0, 2, 1, 3)
        k = self.k_proj(x).reshape(B, L, self.n_kv_heads, -1).transpose(0, 2, 1, 3)
        v = self.v_proj(x).reshape(B, L, self.n_kv_heads, -1).transpose(0, 2, 1, 3)
        offset = cache.offset if cache is not None else 0
        if self.fused:
            q, k = self.rope(q, offset=offset), self.rope(k, offset=offset)
        else:
            q, k = (rope_ref(t, self.rope.base, offset) for t in (q, k))
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)
        if self.cpu_attn and cache is None and isinstance(mask, str) and cpu_ops.use_cpu_ops():
            out = cpu_ops.attention(q, k, v, self.scale, causal=True)
        elif self.fused:
            out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        else:
            out = attention_ref(q, k, v, self.scale, mask)
        return self.o_proj(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class MLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        dim, hidden = args.hidden_size, args.intermediate_size
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)
        self.cpu_silu = False  # set by the training step builder (minillm.models.cpu_ops)
        self.swiglu_vjp = True  # TrainConfig.swiglu_vjp (`set_training_kernels`)

    def __call__(self, x: mx.array) -> mx.array:
        if self.cpu_silu and cpu_ops.use_cpu_ops():
            return self.down_proj(cpu_ops.silu(self.gate_proj(x)) * self.up_proj(x))
        gate, up = self.gate_proj(x), self.up_proj(x)
        lean = self.training and self.swiglu_vjp
        return self.down_proj(swiglu(gate, up) if lean else nn.silu(gate) * up)


def set_training_kernels(model: nn.Module, swiglu_vjp: bool, norm_split_grad: bool) -> None:
    """The training step's model-side switches (`TrainConfig.swiglu_vjp`, `.norm_split_grad`)
    on every MLP and RMSNorm of `model`."""
    for _, m in model.named_modules():
        if isinstance(m, MLP) or hasattr(m, "swiglu_vjp"):
            m.swiglu_vjp = swiglu_vjp
        if isinstance(m, RMSNorm):
            m.split_grad = norm_split_grad
