"""AdamW's fused CUDA kernel: its scalars and formula against MLX's update (CPU), the kernel
itself against the fallback (CUDA only), and the step builder's gradient scaling."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from minillm.train import fused_adam
from minillm.train.optim import AdamW, clip_scale, global_norm, scale_and_clip

CUDA = mx.cuda.is_available()


def make_opt(decay=0.1, bias_correction=True):
    opt = AdamW(learning_rate=3e-3, betas=[0.9, 0.95], eps=1e-8, bias_correction=bias_correction)
    opt.decay, opt.state_dtype = decay, mx.float32
    return opt


def kernel_reference(p, g, m, v, h, decay):
    """The CUDA source's arithmetic in numpy (fp32), element by element the same formula."""
    h = np.array(h, np.float32)
    g = np.array(g.astype(mx.float32)) * h[7]
    m = h[1] * np.array(m) + (1 - h[1]) * g
    v = h[2] * np.array(v) + (1 - h[2]) * g * g
    p = np.array(p.astype(mx.float32))
    if decay:
        p = p * h[4]
    return p - h[5] * m / (np.sqrt(v) * h[6] + h[3]), m, v


@pytest.mark.parametrize("bias_correction", [True, False])
def test_kernel_formula_matches_mlx_update(bias_correction):
    """hyper() + the kernel's formula give MLX's AdamW (decay on matrices, scaled gradient)."""
    mx.random.seed(0)
    opt = make_opt(bias_correction=bias_correction)
    params = {"w": mx.random.normal((8, 16)), "b": mx.random.normal((16,))}
    opt.init(params)
    ref = {k: (np.array(p), np.zeros(p.shape, np.float32), np.zeros(p.shape, np.float32))
           for k, p in params.items()}  # fmt: skip
    scale = mx.array(0.25)
    for _ in range(3):
        grads = {k: mx.random.normal(p.shape) for k, p in params.items()}
        step = opt.step + 1
        h = fused_adam.hyper(
            opt.learning_rate, 0.9, 0.95, 1e-8, opt.decay, step, bias_correction, scale
        )
        for k in params:
            p, m, v = ref[k]
            ref[k] = kernel_reference(mx.array(p), grads[k], m, v, h, decay=params[k].ndim >= 2)
        opt.grad_scale = scale
        params = opt.apply_gradients(grads, params)
        opt.grad_scale = None
    for k, p in params.items():
        np.testing.assert_allclose(np.array(p), ref[k][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.array(opt.state[k]["m"]), ref[k][1], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.array(opt.state[k]["v"]), ref[k][2], rtol=1e-5, atol=1e-9)


def test_clip_scale_equals_scale_and_clip():
    mx.random.seed(1)
    grads = {"a": mx.random.normal((32, 8)) * 10, "b": mx.random.normal((8,))}
    n = mx.array(7.0)
    for max_norm in (0.0, 0.5, 1e9):
        scaled, norm = scale_and_clip(grads, n, max_norm)
        scale, norm2 = clip_scale(grads, n, max_norm)
        assert abs(norm.item() - norm2.item()) <= 1e-5 * norm.item()
        for k in grads:
            np.testing.assert_allclose(
                np.array(grads[k] * scale), np.array(scaled[k]), rtol=1e-5, atol=1e-7
            )
        if max_norm == 0.5:
            assert abs(global_norm(scaled).item() - 0.5) < 1e-4


@pytest.mark.skipif(not CUDA, reason="needs MLX CUDA")
@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float32])
def test_cuda_kernel_matches_fallback(dtype):
    mx.random.seed(2)
    shapes = {"w": (300, 257), "n": (257,)}
    params = {k: mx.random.normal(s).astype(dtype) for k, s in shapes.items()}
    fused, plain = make_opt(), make_opt()
    plain.fused = False  # TrainConfig.fused_adam=False: MLX ops
    fused.init(params), plain.init(params)
    pf = pp = params
    for i in range(4):
        grads = {k: mx.random.normal(s).astype(dtype) for k, s in shapes.items()}
        scale = mx.array(0.5 + i)
        fused.grad_scale = plain.grad_scale = scale
        pf = fused.apply_gradients(grads, pf)
        pp = plain.apply_gradients(grads, pp)
    tol = dict(rtol=1e-2, atol=1e-2) if dtype == mx.bfloat16 else dict(rtol=1e-5, atol=1e-6)
    for k in shapes:
        assert pf[k].dtype == dtype
        np.testing.assert_allclose(
            np.array(pf[k].astype(mx.float32)), np.array(pp[k].astype(mx.float32)), **tol
        )
        np.testing.assert_allclose(
            np.array(fused.state[k]["v"]), np.array(plain.state[k]["v"]), rtol=1e-5, atol=1e-9
        )


def many_params(n=30, dtype=mx.float32):
    """More parameters than one launch takes (GROUP), matrices and vectors mixed."""
    mx.random.seed(3)
    shapes = [(37, 11) if i % 3 else (11,) for i in range(n)]
    return {f"p{i}": mx.random.normal(s).astype(dtype) for i, s in enumerate(shapes)}


class FakeMulti:
    """`mx.fast.cuda_kernel` stand-in for the CPU: checks the launch's layout (inputs and
    outputs per parameter, grid y = the group) and computes the kernel's formula in numpy."""

    def __init__(self, name, input_names, output_names, source, header=""):
        self.name, self.ins, self.outs = name, input_names, output_names
        assert all(f"case {j}:" in source for j in range(len(output_names) // 3 or 1))

    def __call__(
        self, inputs, template, grid, threadgroup, output_shapes, output_dtypes, init_value=None
    ):
        assert len(inputs) == len(self.ins) and len(output_shapes) == len(self.outs)
        if "sumsq" in self.name:
            gs = inputs[:-1]
            assert grid[1] == len(gs) and init_value == 0.0
            return [mx.array([sum(float((np.array(g.astype(mx.float32)) ** 2).sum()) for g in gs)])]
        n = len(self.outs) // 3
        assert grid[1] == n <= fused_adam.GROUP
        h, decay = inputs[-2], dict(template)
        out = []
        for j in range(n):
            p, g, m, v = inputs[4 * j : 4 * j + 4]
            np_p, np_m, np_v = kernel_reference(p, g, m, v, h, decay[f"DECAY{j}"])
            out += [mx.array(np_p).astype(p.dtype), mx.array(np_m), mx.array(np_v)]
        return out


def test_multi_tensor_update_and_norm_plumbing_on_cpu(monkeypatch):
    """On the CPU with a stand-in kernel: the grouped path (30 parameters over two launches)
    updates every parameter and its state as the per-parameter path does, and the norm of the
    grouped sum of squares is the tree's global norm."""
    monkeypatch.setattr(fused_adam, "on_cuda", lambda: True)
    monkeypatch.setattr(fused_adam, "_multi", {})
    monkeypatch.setattr(mx.fast, "cuda_kernel", FakeMulti)
    params = many_params()
    multi, plain = make_opt(), make_opt()
    multi.multi, plain.fused = True, False
    multi.init(params), plain.init(params)
    monkeypatch.setattr(fused_adam, "usable", lambda st, enabled=True: enabled and "m" in st)
    pm = pp = params
    for i in range(3):
        grads = {k: mx.random.normal(p.shape) for k, p in params.items()}
        multi.grad_scale = plain.grad_scale = mx.array(0.5 + i)
        pm = multi.apply_gradients(grads, pm)
        with monkeypatch.context() as m:
            m.setattr(fused_adam, "on_cuda", lambda: False)
            pp = plain.apply_gradients(grads, pp)
    assert multi.state["step"].item() == plain.state["step"].item() == 3
    for k in params:
        np.testing.assert_allclose(np.array(pm[k]), np.array(pp[k]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.array(multi.state[k]["m"]), np.array(plain.state[k]["m"]), rtol=1e-5, atol=1e-7)  # fmt: skip
    assert len([k for k in fused_adam._multi if k[0] == "adamw"]) == 2  # 24 + 6
    n_multi = global_norm(grads, multi=True).item()
    with monkeypatch.context() as m:
        m.setattr(fused_adam, "on_cuda", lambda: False)
        assert n_multi == pytest.approx(global_norm(grads).item(), rel=1e-5)


@pytest.mark.skipif(not CUDA, reason="needs MLX CUDA")
@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float32])
def test_multi_tensor_kernels_match_the_per_parameter_ones(dtype):
    """The grouped kernels against the per-parameter kernel and MLX's ops (CUDA), with bf16
    parameters and fp32 gradients (gradient accumulation) too."""
    params = many_params(dtype=dtype)
    multi, single = make_opt(), make_opt()
    multi.multi = True
    multi.init(params), single.init(params)
    pm = ps = params
    for i in range(4):
        gdt = mx.float32 if i % 2 else dtype
        grads = {k: mx.random.normal(p.shape).astype(gdt) for k, p in params.items()}
        multi.grad_scale = single.grad_scale = mx.array(0.5 + i)
        pm = multi.apply_gradients(grads, pm)
        ps = single.apply_gradients(grads, ps)
        mx.eval(pm, ps, multi.state, single.state)
    for k in params:
        assert pm[k].dtype == dtype
        np.testing.assert_allclose(np.array(pm[k].astype(mx.float32)), np.array(ps[k].astype(mx.float32)), rtol=1e-5, atol=1e-6)  # fmt: skip
        np.testing.assert_allclose(np.array(multi.state[k]["v"]), np.array(single.state[k]["v"]), rtol=1e-5, atol=1e-9)  # fmt: skip
    big = {f"g{i}": mx.random.normal((1000 + i, 513)).astype(dtype) for i in range(5)}
    ref = mx.sqrt(sum((g.astype(mx.float32) ** 2).sum() for g in big.values())).item()
    assert global_norm(big, multi=True).item() == pytest.approx(ref, rel=1e-4)
