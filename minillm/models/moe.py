"""MiniMind's Mixture-of-Experts MLP: a softmax gate, top-k routed experts, shared experts."""

from __future__ import annotations

import dataclasses

import mlx.core as mx
import mlx.nn as nn

from minillm.models.args import ModelArgs
from minillm.models.layers import MLP


class ExpertLinear(nn.Module):
    """E stacked linears, weight [E, out, in]; row i of x goes through expert `idx[i]`."""

    def __init__(self, n_experts: int, dim_in: int, dim_out: int):
        super().__init__()
        scale = dim_in**-0.5
        self.weight = mx.random.uniform(-scale, scale, (n_experts, dim_out, dim_in))

    def __call__(self, x: mx.array, idx: mx.array, sorted_indices: bool) -> mx.array:
        return mx.gather_mm(
            x, self.weight.swapaxes(-1, -2), rhs_indices=idx, sorted_indices=sorted_indices
        )


class RoutedExperts(nn.Module):
    """E SwiGLU experts computed with `mx.gather_mm` (no loop over tokens or experts)."""

    def __init__(self, n_experts: int, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = ExpertLinear(n_experts, dim, hidden)
        self.up_proj = ExpertLinear(n_experts, dim, hidden)
        self.down_proj = ExpertLinear(n_experts, hidden, dim)

    def __call__(self, x: mx.array, inds: mx.array) -> mx.array:
        """x [..., D], inds [..., k] -> each selected expert's output [..., k, D]."""
        lead, k = inds.shape[:-1], inds.shape[-1]
        flat = inds.reshape(-1)
        # sort the (token, slot) pairs by expert so each expert's rows are contiguous
        order = mx.argsort(flat)
        inv = mx.argsort(order)
        xs = x.reshape(-1, 1, x.shape[-1])[order // k]
        idx = flat[order]
        h = nn.silu(self.gate_proj(xs, idx, True)) * self.up_proj(xs, idx, True)
        y = self.down_proj(h, idx, True)[inv]
        return y.reshape(*lead, k, y.shape[-1])


class MoE(nn.Module):
    """MiniMind's MOEFeedForward: softmax gate over routed experts, top-k (optionally
    renormalised), plus shared experts that every token uses.

    The `n_shared_experts` shared SwiGLU experts of size I are stored as one SwiGLU of size
    n_shared * I (the sum of SwiGLUs equals one SwiGLU over the concatenated hidden units).
    """

    def __init__(self, args: ModelArgs):
        super().__init__()
        dim, hidden = args.hidden_size, args.intermediate_size
        self.n_experts, self.top_k = args.n_routed_experts, args.num_experts_per_tok
        self.norm_topk_prob, self.seq_aux = args.norm_topk_prob, args.seq_aux
        self.alpha = args.aux_loss_alpha
        self.gate = nn.Linear(dim, self.n_experts, bias=False)
        self.experts = RoutedExperts(self.n_experts, dim, hidden)
        if args.n_shared_experts:
            shared = dataclasses.replace(args, intermediate_size=hidden * args.n_shared_experts)
            self.shared_experts = MLP(shared)

    def route(self, x: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """`(inds [..., k], weights [..., k] fp32, scores [..., E] fp32)` for x [..., D]."""
        scores = mx.softmax(self.gate(x).astype(mx.float32), axis=-1)
        k = self.top_k
        inds = mx.stop_gradient(mx.argpartition(-scores, kth=k - 1, axis=-1)[..., :k])
        weights = mx.take_along_axis(scores, inds, axis=-1)
        if self.norm_topk_prob:
            weights = weights / (weights.sum(axis=-1, keepdims=True) + 1e-20)
        return inds, weights, scores

    def aux_loss(self, inds: mx.array, scores: mx.array) -> mx.array:
        """MiniMind's load-balancing loss for inds [B, T, k], scores [B, T, E] (times alpha)."""
        E, k = self.n_experts, self.top_k
        onehot = (inds[..., None] == mx.arange(E)).astype(mx.float32)  # [B, T, k, E]
        if self.seq_aux:
            T = inds.shape[1]
            ce = onehot.sum(axis=(1, 2)) / (T * k / E)  # [B, E]
            return (ce * scores.mean(axis=1)).sum(axis=1).mean() * self.alpha
        fi = onehot.reshape(-1, E).mean(axis=0) * E
        pi = scores.reshape(-1, E).mean(axis=0)
        return (pi * fi).sum() * self.alpha

    def forward_aux(self, x: mx.array, with_aux: bool = True) -> tuple[mx.array, mx.array]:
        inds, weights, scores = self.route(x)
        y = (self.experts(x, inds) * weights[..., None].astype(x.dtype)).sum(axis=-2)
        if "shared_experts" in self:
            y = y + self.shared_experts(x)
        aux = self.aux_loss(inds, scores) if with_aux and self.alpha > 0 else mx.array(0.0)
        return y, aux

    def __call__(self, x: mx.array) -> mx.array:
        return self.forward_aux(x, with_aux=False)[0]
