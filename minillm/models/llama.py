"""LLaMA-style decoder in MLX. Attribute names equal Hugging Face Llama weight names."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from minillm.models.args import ModelArgs
from minillm.models.cache import KVCache, make_mask
from minillm.models.layers import MLP, Attention, RMSNorm, rms_norm_ref
from minillm.models.moe import MoE


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
