"""KV-cached decoding with q/k/v and gate/up each computed as one matmul.

Decoding is bound by the host's cost per kernel, not by the device, at small batch sizes:
each matmul is a kernel of its own (a cuBLAS call MLX's CUDA backend captures into a graph).
`Decoder` keeps, per layer, copies of the q/k/v weights joined into one matrix and of the
gate/up weights into another, so a layer runs 4 matmuls instead of 7. The copies are made once
and reused until any of those weights is replaced (an RL policy update, `load_weights`).

Measured (README results, `200mb` bf16 on an H200): the bare decode step 1.14x faster at
batch 1 and 1.48x at batch 64 than layer by layer. On the CPU the joined step was slower at
batch 1 (the q/k/v views cost copies there, and a CPU kernel costs little to start), so it is
the default on GPU devices only. A fixed-shape `mx.compile`d step was slower on CUDA (its
attention over a masked buffer takes the unfused path) and was dropped.

MINILLM_JOINED_DECODE=1 / 0 forces it on / off. Models with LoRA or quantized projections or
MoE MLPs decode layer by layer.
"""

from __future__ import annotations

import functools
import os

import mlx.core as mx
import mlx.nn as nn

from minillm.models import MLP, Model


def joinable(model) -> bool:
    """Whether every layer is plain: nn.Linear projections without bias and a dense MLP."""
    if not isinstance(model, Model) or not all(b.self_attn.fused for b in model.layers):
        return False
    for b in model.layers:
        if not isinstance(b.mlp, MLP):
            return False
        a, m = b.self_attn, b.mlp
        mods = (a.q_proj, a.k_proj, a.v_proj, m.gate_proj, m.up_proj)
        if any(type(x) is not nn.Linear or "bias" in x for x in mods):
            return False
    return True


def use_joined(model) -> bool:
    """MINILLM_JOINED_DECODE=1/0, else on for GPU devices; always off if not `joinable`."""
    flag = os.environ.get("MINILLM_JOINED_DECODE", "")
    if flag == "0" or not joinable(model):
        return False
    return flag == "1" or mx.default_device().type == mx.DeviceType.gpu


def joined_weights(model: Model) -> list[mx.array]:
    """[qkv_0, gate_up_0, qkv_1, ...]: each layer's q/k/v and gate/up weights concatenated,
    kept on the model (a plain attribute, not a parameter) until any of them is replaced."""
    src = []
    for b in model.layers:
        a, m = b.self_attn, b.mlp
        src += [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]
        src += [m.gate_proj.weight, m.up_proj.weight]
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
        object.__setattr__(model, "_joined", cached)
    return cached[1]


def joined_layer(block, w_qkv: mx.array, w_gu: mx.array, h: mx.array, mask, cache) -> mx.array:
    """`block(h, mask, cache)` with q/k/v and gate/up as one matmul each."""
    attn = block.self_attn
    B, L, _ = h.shape
    nq, nkv = attn.n_heads, attn.n_kv_heads
    x = block.input_layernorm(h)
    qkv = (x @ w_qkv.T).reshape(B, L, nq + 2 * nkv, -1).transpose(0, 2, 1, 3)
    qk = attn.rope(qkv[:, : nq + nkv], offset=cache.offset)
    k, v = cache.update_and_fetch(qk[:, nq:], qkv[:, nq + nkv :])
    o = mx.fast.scaled_dot_product_attention(qk[:, :nq], k, v, scale=attn.scale, mask=mask)
    h = h + attn.o_proj(o.transpose(0, 2, 1, 3).reshape(B, L, -1))
    gu = block.post_attention_layernorm(h) @ w_gu.T
    inter = gu.shape[-1] // 2
    return h + block.mlp.down_proj(nn.silu(gu[..., :inter]) * gu[..., inter:])


class Decoder:
    """Logits of the last position for a batch: the prompt first (`ids` [B, P]), then one
    token per call ([B, 1]). `pad` [B, >= P + steps] marks left padding (True) or is None."""

    def __init__(self, model, pad: mx.array | None = None):
        self.model, self.pad = model, pad
        self.cache = model.make_cache()
        self.joined = joined_weights(model) if use_joined(model) else None
        self.layers = None
        if self.joined is not None:
            w = self.joined
            self.layers = [
                functools.partial(joined_layer, b, w[2 * i], w[2 * i + 1])
                for i, b in enumerate(model.layers)
            ]

    def __call__(self, x: mx.array) -> mx.array:
        offset = self.cache[0].offset
        pad = None if self.pad is None else self.pad[:, : offset + x.shape[1]]
        joined = {"layers": self.layers} if self.layers else {}  # wrapped models lack the kwarg
        h = self.model.hidden(x, cache=self.cache, pad=pad, **joined)
        # LM head on the last position only; over the whole prompt it is ~1/3 of the prefill.
        return self.model.logits(h[:, -1, :])
