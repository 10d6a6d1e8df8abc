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


def on_cuda() -> bool:
    """Whether arrays are computed by MLX's CUDA backend (the default device is its GPU)."""
    return mx.default_device().type == mx.DeviceType.gpu and mx.cuda.is_available()


def usable(state: dict, enabled: bool = True) -> bool:
    """Whether the fused kernel can update a parameter with this optimizer state
    (`enabled`: `TrainConfig.fused_adam`)."""
    m = state.get("m")
    return enabled and m is not None and m.dtype == mx.float32 and on_cuda()


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


# ---- many parameters per launch
#
# One launch per parameter still costs the host ~20 us each on MLX CUDA: 137 launches for the
# `200mb` model's update, and two per parameter for the gradient norm. These kernels take a
# group of parameters: grid y picks the parameter, a grid-stride loop over x its elements, so
# one launch updates (or sums the squares of) a whole group. Parameters keep their own arrays
# and optimizer state; nothing is packed or copied. Types come from the arrays themselves
# (MLX declares each input with its dtype), so bf16 parameters with fp32 gradients work too.

GROUP = 24  # parameters per AdamW launch: 7 pointers each, well inside CUDA's 4 KB of arguments
SUMSQ_GROUP = 160  # gradients per sum-of-squares launch (1 pointer each)
BLOCKS = 128  # blocks per parameter (grid x); each thread strides over the rest
_multi: dict[tuple, object] = {}


def groups(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _cases(n: int, body: str) -> str:
    return "\n".join(f"      case {j}: {body.format(j=j)} break;" for j in range(n))


_UPDATE = """
template <typename P, typename G, typename PO>
__device__ __forceinline__ void minillm_upd(unsigned int n, const P* p, const G* g,
    const float* m, const float* v, PO* p_out, float* m_out, float* v_out, const float* h,
    bool decay) {
  for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += gridDim.x * blockDim.x) {
    float gi = static_cast<float>(g[i]) * h[7];
    float mi = h[1] * m[i] + (1.0f - h[1]) * gi;
    float vi = h[2] * v[i] + (1.0f - h[2]) * gi * gi;
    float pi = static_cast<float>(p[i]);
    if (decay) pi = pi * h[4];
    pi = pi - h[5] * mi / (sqrtf(vi) * h[6] + h[3]);
    m_out[i] = mi;
    v_out[i] = vi;
    p_out[i] = static_cast<PO>(pi);
  }
}

template <typename G>
__device__ __forceinline__ float minillm_sumsq(unsigned int n, const G* g) {
  float acc = 0.0f;
  for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += gridDim.x * blockDim.x) {
    float x = static_cast<float>(g[i]);
    acc += x * x;
  }
  return acc;
}
"""


def _multi_kernel(kind: str, n: int, decays: tuple[bool, ...] = ()):
    key = (kind, n, decays)
    if key in _multi:
        return _multi[key]
    if kind == "adamw":
        ins = [f"{x}{j}" for j in range(n) for x in "pgmv"] + ["h", "sizes"]
        outs = [f"{x}{j}_out" for j in range(n) for x in "pmv"]
        call = "minillm_upd(sizes[{j}], p{j}, g{j}, m{j}, v{j}, p{j}_out, m{j}_out, v{j}_out, h, DECAY{j});"  # fmt: skip
        source = f"""
    switch (blockIdx.y) {{
{_cases(n, call)}
    }}
"""
    else:  # the sum of squares of every element of the group (fp32) into one float
        ins = [f"g{j}" for j in range(n)] + ["sizes"]
        outs = ["out"]
        source = f"""
    float x = 0.0f;
    switch (blockIdx.y) {{
{_cases(n, "x = minillm_sumsq(sizes[{j}], g{j});")}
    }}
    for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffff, x, o);
    __shared__ float warp_sums[32];
    if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = x;
    __syncthreads();
    if (threadIdx.x < 32) {{
      x = threadIdx.x < (blockDim.x >> 5) ? warp_sums[threadIdx.x] : 0.0f;
      for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffff, x, o);
      if (threadIdx.x == 0) atomicAdd(out, x);
    }}
"""
    tag = f"{kind}{n}_" + "".join("d" if d else "n" for d in decays)
    _multi[key] = mx.fast.cuda_kernel(
        name=f"minillm_multi_{tag}",
        input_names=ins,
        output_names=outs,
        source=source,
        header=_UPDATE,
    )
    return _multi[key]


def _grid(arrays) -> tuple[int, int, int]:
    return (min(max(a.size for a in arrays), 256 * BLOCKS), len(arrays), 1)


def multi_adamw(ps, gs, ms, vs, h: mx.array, decays) -> tuple[list, list, list]:
    """`adamw` for many parameters, GROUP per launch: `(new ps, new ms, new vs)`."""
    new_p, new_m, new_v = [], [], []
    for grp in groups(len(ps), GROUP):
        n, dec = len(grp), tuple(bool(decays[j]) for j in grp)
        kernel = _multi_kernel("adamw", n, dec)
        inputs = [x for j in grp for x in (ps[j], gs[j], ms[j], vs[j])]
        sizes = mx.array([ps[j].size for j in grp], mx.uint32)
        shapes, dtypes = [], []
        for j in grp:
            shapes += [ps[j].shape, ps[j].shape, ps[j].shape]
            dtypes += [ps[j].dtype, mx.float32, mx.float32]
        outs = kernel(
            inputs=[*inputs, h, sizes],
            template=[(f"DECAY{k}", d) for k, d in enumerate(dec)],
            grid=_grid([ps[j] for j in grp]),
            threadgroup=(256, 1, 1),
            output_shapes=shapes,
            output_dtypes=dtypes,
        )
        new_p += outs[0::3]
        new_m += outs[1::3]
        new_v += outs[2::3]
    return new_p, new_m, new_v


def sum_squares(gs: list[mx.array]) -> mx.array:
    """The sum of squares (fp32) of every element of `gs`: one launch per SUMSQ_GROUP arrays."""
    parts = []
    for grp in groups(len(gs), SUMSQ_GROUP):
        part = [gs[j] for j in grp]
        kernel = _multi_kernel("sumsq", len(part))
        (out,) = kernel(
            inputs=[*part, mx.array([g.size for g in part], mx.uint32)],
            template=[],
            grid=_grid(part),
            threadgroup=(256, 1, 1),
            output_shapes=[(1,)],
            output_dtypes=[mx.float32],
            init_value=0.0,
        )
        parts.append(out)
    return (mx.concatenate(parts) if len(parts) > 1 else parts[0]).sum()
