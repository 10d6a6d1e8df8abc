"""LLaMA-style decoder in MLX. Attribute names equal Hugging Face Llama weight names."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from minillm import cpu_ops

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=704,
    ),
    # between the two: the student of a served `200mb` teacher (README "What it learns")
    "50mb": dict(
        hidden_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=1408,
    ),
    "200mb": dict(
        hidden_size=768,
        num_hidden_layers=15,
        num_attention_heads=12,
        num_key_value_heads=3,
        head_dim=64,
        intermediate_size=2048,
    ),
    # `tiny` with a MiniMind-style MoE MLP: 4 routed experts (2 per token) + 1 shared expert,
    # each of intermediate size 232, so a token's active MLP (3 x 232 = 696) ~ tiny's 704.
    "moe": dict(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=232,
        use_moe=True,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
    ),
}

# ModelArgs fields of the MoE MLP; written to config.json only when `use_moe`.
MOE_KEYS = (
    "use_moe",
    "n_routed_experts",
    "num_experts_per_tok",
    "n_shared_experts",
    "scoring_func",
    "norm_topk_prob",
    "aux_loss_alpha",
    "seq_aux",
)


# MoE checkpoints name their own model type, so transformers refuses them with a clear error
# instead of loading them as Llama with freshly initialised MLPs (`minillm export hf` converts).
MOE_MODEL_TYPE = "minillm_moe"


@dataclass
class ModelArgs:
    """Model config. Field names are those of Hugging Face `LlamaConfig`."""

    model_type: str = "llama"
    hidden_size: int = 512
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    num_key_value_heads: int | None = 2
    intermediate_size: int | None = None
    head_dim: int | None = None
    vocab_size: int = 6400
    max_position_embeddings: int = 32768
    rope_theta: float = 1e6
    rms_norm_eps: float = 1e-5
    hidden_act: str = "silu"
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    mlp_bias: bool = False
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0
    rope_scaling: dict | None = None
    # Mixture-of-Experts MLP (MiniMind's knobs). `intermediate_size` is then each expert's.
    use_moe: bool = False
    n_routed_experts: int = 4
    num_experts_per_tok: int = 2
    n_shared_experts: int = 1
    scoring_func: str = "softmax"
    norm_topk_prob: bool = True
    aux_loss_alpha: float = 0.1
    seq_aux: bool = True
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.intermediate_size is None:
            self.intermediate_size = 64 * math.ceil(int(self.hidden_size * 8 / 3) / 64)
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"hidden_size={self.hidden_size} is not divisible by "
                    f"num_attention_heads={self.num_attention_heads}; set head_dim explicitly"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.head_dim % 2:
            raise ValueError(
                f"head_dim={self.head_dim} (hidden_size / num_attention_heads) must be even for "
                "RoPE; change hidden_size or num_attention_heads, or set an even head_dim"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.hidden_act != "silu":
            raise ValueError(f"hidden_act={self.hidden_act!r} is not supported; use 'silu'")
        if self.model_type != "llama":
            raise ValueError(f"model_type={self.model_type!r} is not supported; use 'llama'")
        if self.attention_bias or self.mlp_bias:
            raise ValueError("biases are not supported (attention_bias/mlp_bias must be false)")
        if self.rope_scaling not in (None, {}) and self.rope_scaling.get("rope_type") != "default":
            raise ValueError(f"rope_scaling={self.rope_scaling} is not supported; remove it")
        if self.use_moe:
            if not 1 <= self.num_experts_per_tok <= self.n_routed_experts:
                raise ValueError(
                    f"num_experts_per_tok={self.num_experts_per_tok} must be in "
                    f"[1, n_routed_experts={self.n_routed_experts}]"
                )
            if self.n_shared_experts < 0:
                raise ValueError(f"n_shared_experts={self.n_shared_experts} must be >= 0")
            if self.scoring_func != "softmax":
                raise ValueError(
                    f"scoring_func={self.scoring_func!r} is not supported; use 'softmax'"
                )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelArgs:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ModelArgs:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("extra")
        if not self.use_moe:  # dense configs keep exactly their old keys
            for k in MOE_KEYS:
                d.pop(k)
        return d


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

    split_grad = True  # the profile's A/B switch

    def __call__(self, x: mx.array) -> mx.array:
        if not self.split_grad or x.size // x.shape[-1] < 4096:
            return mx.fast.rms_norm(x, self["weight"], self.eps)
        return _rms_norm_fn(float(self.eps))(x, self["weight"])


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


SWIGLU_VJP = True  # training MLPs use `swiglu` (the profile's A/B switch)


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
        self.cpu_attn = False  # set by the training step builder (minillm.cpu_ops)

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
        self.cpu_silu = False  # set by the training step builder (minillm.cpu_ops)

    def __call__(self, x: mx.array) -> mx.array:
        if self.cpu_silu and cpu_ops.use_cpu_ops():
            return self.down_proj(cpu_ops.silu(self.gate_proj(x)) * self.up_proj(x))
        gate, up = self.gate_proj(x), self.up_proj(x)
        lean = self.training and SWIGLU_VJP
        return self.down_proj(swiglu(gate, up) if lean else nn.silu(gate) * up)


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


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.self_attn = Attention(args)
        self.mlp = MoE(args) if args.use_moe else MLP(args)
        self.input_layernorm = RMSNorm(args.hidden_size, eps=args.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(args.hidden_size, eps=args.rms_norm_eps)

    def norm(self, which: nn.RMSNorm, x: mx.array) -> mx.array:
        return which(x) if self.self_attn.fused else rms_norm_ref(x, which.weight, which.eps)

    def __call__(self, x: mx.array, mask=None, cache: KVCache | None = None) -> mx.array:
        h = x + self.self_attn(self.norm(self.input_layernorm, x), mask, cache)
        return h + self.mlp(self.norm(self.post_attention_layernorm, h))

    def forward_aux(self, x: mx.array, mask=None, cache=None) -> tuple[mx.array, mx.array]:
        """`(output, MoE aux loss)`; the aux loss is 0 for a dense block."""
        if not isinstance(self.mlp, MoE):
            return self(x, mask, cache), mx.array(0.0)
        h = x + self.self_attn(self.norm(self.input_layernorm, x), mask, cache)
        y, aux = self.mlp.forward_aux(self.norm(self.post_attention_layernorm, h))
        return h + y, aux


class LlamaModel(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [Block(args) for _ in range(args.num_hidden_layers)]
        self.norm = RMSNorm(args.hidden_size, eps=args.rms_norm_eps)


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


class Model(nn.Module):
    """Decoder-only LM: `model(ids) -> logits` with an optional list of KVCache."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.model_type = args.model_type
        self.model = LlamaModel(args)
        if not args.tie_word_embeddings:
            self.lm_head = nn.Linear(args.hidden_size, args.vocab_size, bias=False)

    def hidden(
        self, ids: mx.array, cache: list[KVCache] | None = None, pad=None, layers=None
    ) -> mx.array:
        """Final-norm hidden states; `layers`, when given, replaces the blocks' own calls
        (one `fn(h, mask, cache)` per layer, as `minillm.decode` passes)."""
        h = self.model.embed_tokens(ids)
        offset = cache[0].offset if cache else 0
        mask = make_mask(ids.shape[1], offset, pad)
        for i, layer in enumerate(layers or self.model.layers):
            h = layer(h, mask, cache[i] if cache else None)
        return self.final_norm(h)

    def hidden_aux(self, ids: mx.array) -> tuple[mx.array, mx.array]:
        """`(hidden(ids), MoE load-balancing loss summed over layers)`, for training."""
        h = self.model.embed_tokens(ids)
        mask = make_mask(ids.shape[1])
        aux = mx.array(0.0)
        for layer in self.model.layers:
            h, a = layer.forward_aux(h, mask)
            aux = aux + a
        return self.final_norm(h), aux

    def final_norm(self, h: mx.array) -> mx.array:
        if self.model.layers and not self.model.layers[0].self_attn.fused:
            return rms_norm_ref(h, self.model.norm.weight, self.model.norm.eps)
        return self.model.norm(h)

    def logits(self, h: mx.array) -> mx.array:
        if self.args.tie_word_embeddings:
            return self.model.embed_tokens.as_linear(h)
        return self.lm_head(h)

    def __call__(self, ids: mx.array, cache: list[KVCache] | None = None, pad=None) -> mx.array:
        return self.logits(self.hidden(ids, cache, pad))

    def set_fused(self, enabled: bool) -> None:
        """Use mx.fast kernels (RMSNorm, RoPE, attention) or plain reference ops."""
        for layer in self.model.layers:
            layer.self_attn.fused = enabled

    def make_cache(self) -> list[KVCache]:
        return [KVCache() for _ in self.model.layers]

    @property
    def layers(self):
        return self.model.layers


def init_weights(model: Model, seed: int, std: float = 0.02) -> None:
    """GPT-2/LLaMA-style init: N(0, std); residual output projections scaled by 1/sqrt(2L)."""
    key = mx.random.key(seed)
    flat = nn.utils.tree_flatten(model.parameters())
    keys = mx.random.split(key, len(flat))
    resid_std = std / math.sqrt(2 * model.args.num_hidden_layers)
    new = []
    for (name, p), k in zip(flat, keys, strict=True):
        if name.endswith("norm.weight"):
            new.append((name, mx.ones(p.shape, p.dtype)))
            continue
        s = resid_std if name.endswith(("o_proj.weight", "down_proj.weight")) else std
        new.append((name, (mx.random.normal(p.shape, key=k) * s).astype(p.dtype)))
    model.load_weights(new)


def num_params(model: nn.Module) -> int:
    return sum(p.size for _, p in nn.utils.tree_flatten(model.parameters()))
