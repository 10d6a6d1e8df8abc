"""Exp-heavy ops (softmax, sigmoid, cross-entropy) for the MLX CPU backend.

The `mlx[cpu]` wheel for x86 evaluates `exp` one element at a time (no SIMD, libm calls for
floor/fma): ~30 ns an element, ~12x PyTorch's vectorised exp, and it dominates a small model's
training step (the attention softmax, SiLU's sigmoid, the LM-head cross-entropy). `fast_exp`
builds exp from multiply/add/shift ops that `mx.compile` fuses into vectorised loops. The ops
here use it with hand-written VJPs (no autodiff through the bit tricks) and match the plain MLX
ops to fp32 rounding (relative error ~1e-7). `use_cpu_ops()` says whether to take them: on the
CPU device only (GPU backends have fast exp kernels); MINILLM_CPU_OPS=0 turns them off.
"""

from __future__ import annotations

import os

import mlx.core as mx

LOG2E = 1.4426950408889634
_ROUND = 12582912.0  # 1.5 * 2**23: (t + _ROUND) - _ROUND rounds t to the nearest integer
# 2**f on [-0.5, 0.5] (Cephes, as in MLX's own simd::exp), highest degree first
_POLY = (
    1.535336188319500e-4,
    1.339887440266574e-3,
    9.618437357674640e-3,
    5.550332471162809e-2,
    2.402264791363012e-1,
    6.931472028550421e-1,
    1.0,
)


def use_cpu_ops() -> bool:
    if os.environ.get("MINILLM_CPU_OPS", "1") == "0":
        return False
    return mx.default_device().type == mx.DeviceType.cpu


def enable_for_training(model, attention: bool = True) -> None:
    """On the CPU device: the fast SiLU (and, with `attention`, the fast causal attention) in
    `model`'s layers, and a larger MLX buffer cache. The attention keeps more temporaries
    than MLX's own, so the step builder asks for it only for compiled steps without
    gradient checkpointing."""
    if not use_cpu_ops():
        return
    for _, m in model.named_modules():  # minillm.models.layers' MLP and Attention
        if hasattr(m, "cpu_silu"):
            m.cpu_silu = True
        elif hasattr(m, "cpu_attn") and m.fused:
            m.cpu_attn = attention
    raise_cache_limit()


def raise_cache_limit(nbytes: int = 1 << 30) -> None:
    """Keep up to `nbytes` of freed buffers for reuse (MLX's CPU default keeps 32 MiB).

    With the default, a training step's larger temporaries (logits, attention scores) go back
    to the OS and their pages fault in again every step (~10% of a `tiny` step's time).
    """
    old = mx.set_cache_limit(nbytes)
    if old > nbytes:
        mx.set_cache_limit(old)


def fast_exp(x: mx.array) -> mx.array:
    """exp(x) for fp32 x <= 0; 0 below about -87.7 (no denormals), NaN stays NaN.

    exp(x) = 2**n * 2**f with n = round(x / ln 2) and |f| <= 0.5: 2**n from exponent bits,
    2**f from a degree-6 polynomial. The two halves are written so that `mx.compile` fuses
    each into one loop (every intermediate has its consumers in the same loop, and the
    depth stays under MLX's fusion limit): the output plus one int32 array of memory.
    """
    t = x * LOG2E
    t = mx.where(t < -127.0, -127.0, t)  # 2**-127 gets exponent bits 0: exactly 0.0
    scale = mx.left_shift(((t + _ROUND) - _ROUND).astype(mx.int32) + 127, 23).view(mx.float32)
    # f = t - round(t), from a separately built -t (shared nodes would split the loops)
    u = x * -LOG2E
    u = mx.where(u > 127.0, 127.0, u)
    f = ((u - _ROUND) + _ROUND) - u
    f2 = f * f
    c6, c5, c4, c3, c2, c1, c0 = _POLY
    p = (c0 + c1 * f) + f2 * ((c2 + c3 * f) + f2 * ((c4 + c5 * f) + f2 * c6))
    return p * scale


@mx.compile
def _softmax(x: mx.array) -> mx.array:
    e = fast_exp(x - x.max(axis=-1, keepdims=True))
    return e * (1.0 / e.sum(axis=-1, keepdims=True))


@mx.compile
def _sigmoid(x: mx.array) -> mx.array:
    z = fast_exp(-mx.abs(x))
    inv = 1.0 / (1.0 + z)
    return mx.where(x >= 0, inv, z * inv)


@mx.custom_function
def sigmoid(x: mx.array) -> mx.array:
    return _sigmoid(x.astype(mx.float32)).astype(x.dtype)


@sigmoid.vjp
def _sigmoid_vjp(primals, cotangent, output):
    return (cotangent * output * (1.0 - output),)


def silu(x: mx.array) -> mx.array:
    return x * sigmoid(x)


@mx.custom_function
def softmax(x: mx.array) -> mx.array:
    """Softmax over the last axis (fp32 in, fp32 out); -inf entries give exactly 0."""
    return _softmax(x)


@softmax.vjp
def _softmax_vjp(primals, cotangent, output):
    return (output * (cotangent - (cotangent * output).sum(axis=-1, keepdims=True)),)


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float, causal: bool) -> mx.array:
    """Softmax attention over [B, H, L, D] q and [B, Hkv, S, D] k/v (GQA without repeating k/v)."""
    B, H, L, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    rep = H // Hkv
    qg = (q * scale).reshape(B, Hkv, rep * L, D)  # query head h uses kv head h // rep
    scores = (qg @ k.swapaxes(-1, -2)).astype(mx.float32)
    if causal:
        qpos = mx.arange(rep * L) % L + (S - L)
        allowed = qpos[:, None] >= mx.arange(S)[None]
        scores = mx.where(allowed, scores, -mx.inf)
    p = softmax(scores).astype(v.dtype)
    return (p @ v).reshape(B, H, L, -1)


def cross_entropy_sum(h: mx.array, weight: mx.array, targets: mx.array, mask: mx.array) -> mx.array:
    """sum(mask * CE(h @ weight.T, targets)) over rows of h [N, d], logits in fp32.

    One exp pass: the forward keeps exp(logits - max) and its row sums for the backward.
    """
    targets = targets.reshape(-1, 1)
    mask = mask.reshape(-1).astype(mx.float32)

    @mx.custom_function
    def ce(h, w):
        lg = (h @ w.T).astype(mx.float32)
        m = lg.max(axis=-1, keepdims=True)
        e = fast_exp(lg - m)
        s = e.sum(axis=-1, keepdims=True)
        tok = (m + mx.log(s))[:, 0] - mx.take_along_axis(lg, targets, axis=-1)[:, 0]
        return (tok * mask).sum(), e, s

    @ce.vjp
    def ce_vjp(primals, cotangents, outputs):
        h, w = primals
        _, e, s = outputs
        cm = (mask * cotangents[0])[:, None]
        # softmax - one_hot(target), times the row's cotangent: one fused loop over [N, V]
        hit = mx.arange(e.shape[-1])[None] == targets
        g = (e * (cm / s) - mx.where(hit, cm, 0.0)).astype(h.dtype)
        return g @ w, (g.T @ h).astype(w.dtype)

    return ce(h, weight)[0]
