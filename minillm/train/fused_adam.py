"""AdamW as one CUDA kernel per parameter (MLX CUDA), used by `minillm.train.optim.AdamW`.

MLX's own update is a chain of elementwise ops that `mx.compile` fuses, but on CUDA that fused
kernel ran ~6x below memory bandwidth for the `200mb` model's matrices, and the gradient
scaling (1 / tokens, clipping) materialised fp32 copies of every gradient first: together
~18% of an H200 training step. This kernel reads the raw gradient, scales it, updates m and v
(fp32) and writes the parameter in its own dtype, in one pass. The step's scalars travel as
one small fp32 array so a compiled step traces it once.

`usable()` says when it applies: the GPU device with CUDA, fp32 optimizer state. Elsewhere
(CPU, Metal, bf16 state) the optimizer keeps MLX's ops, which compute the same values.
"""

from __future__ import annotations

import mlx.core as mx

_SOURCE = """
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float gi = static_cast<float>(g[i]) * h[7];
    float mi = h[1] * m[i] + (1.0f - h[1]) * gi;
    float vi = h[2] * v[i] + (1.0f - h[2]) * gi * gi;
    float pi = static_cast<float>(p[i]);
    if (DECAY) pi = pi * h[4];
    pi = pi - h[5] * mi / (sqrtf(vi) * h[6] + h[3]);
    m_out[i] = mi;
    v_out[i] = vi;
    p_out[i] = static_cast<T>(pi);
"""

_kernel = None


def usable(state: dict, enabled: bool = True) -> bool:
    """Whether the fused kernel can update a parameter with this optimizer state
    (`enabled`: `TrainConfig.fused_adam`)."""
    m = state.get("m")
    return (
        enabled
        and m is not None
        and m.dtype == mx.float32
        and mx.default_device().type == mx.DeviceType.gpu
        and mx.cuda.is_available()
    )


def hyper(
    lr, b1: float, b2: float, eps: float, decay: float, step, bias_correction: bool, grad_scale
) -> mx.array:
    """The kernel's scalars: [lr, b1, b2, eps, 1 - lr * decay, c1, c2, grad_scale]."""
    lr = lr.astype(mx.float32)
    step = mx.array(step).astype(mx.float32)
    if bias_correction:
        c1 = lr / (1 - mx.power(b1, step))
        c2 = mx.rsqrt(1 - mx.power(b2, step))
    else:
        c1, c2 = lr, mx.array(1.0)
    scale = mx.array(1.0) if grad_scale is None else grad_scale.astype(mx.float32)
    parts = [lr, mx.array(b1), mx.array(b2), mx.array(eps), 1 - lr * decay, c1, c2, scale]
    return mx.stack([mx.array(x, mx.float32).reshape(()) for x in parts])


def adamw(p: mx.array, g: mx.array, m: mx.array, v: mx.array, h: mx.array, decay: bool):
    """`(new p, new m, new v)` for one parameter; h from `hyper`."""
    global _kernel
    if _kernel is None:
        _kernel = mx.fast.cuda_kernel(
            name="minillm_adamw",
            input_names=["p", "g", "m", "v", "h"],
            output_names=["p_out", "m_out", "v_out"],
            source=_SOURCE,
        )
    p_out, m_out, v_out = _kernel(
        inputs=[p, g, m, v, h],
        template=[("T", p.dtype), ("N", p.size), ("DECAY", bool(decay))],
        grid=(p.size, 1, 1),
        threadgroup=(256, 1, 1),
        output_shapes=[p.shape, m.shape, v.shape],
        output_dtypes=[p.dtype, mx.float32, mx.float32],
    )
    return p_out, m_out, v_out
