"""The one batched, KV-cached decode loop (`decode_steps`): `generate`, `stream_generate`, the
server and RL rollouts all run it; the first two add text, rollouts keep the log-probs.

q/k/v and gate/up are each computed as one matmul when that is faster (`Decoder`).

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
from collections.abc import Iterator

import mlx.core as mx
import mlx.nn as nn

from minillm.models import MLP, Model
from minillm.sampling import (
    SamplingParams,
    apply_repetition_penalty,
    row_keys,
    sample,
    token_budgets,
)

Event = tuple[int, int, float | None, str | None]  # (row, token, log-prob, finish reason)


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


def stop_set(tokenizer, params: SamplingParams, vocab: int) -> set[int]:
    ids = tokenizer.eos_ids if params.stop_ids is None else params.stop_ids
    return {t for t in ids if 0 <= t < vocab}


def decode_steps(
    model, tokenizer, prompts: list[list[int]], params: SamplingParams, *, logprobs: bool = False
) -> Iterator[list[Event]]:
    """Decode all `prompts` (token ids, at least one) at once; yield per step one
    `(row, token, logprob, finish_reason)` for each row still running.

    Prompts are left-padded; row i samples with `params.seed + i`. `finish_reason` is "stop"
    when the token is a stop id, "length" when the row's budget is spent, else None. With
    `logprobs`, the log-prob is `log_softmax(logits / T)` at the token (T = 1 when greedy), after
    the penalties and masks and before top-k/top-p, as an RL learner recomputes it. The next
    step is dispatched before this one's tokens are read, so the host overlaps the device."""
    p = params
    lengths = [len(x) for x in prompts]
    budgets = token_budgets(lengths, p.max_new_tokens, p.max_seq_len or model.args.max_position_embeddings)  # fmt: skip
    B, P, steps = len(prompts), max(lengths), max(budgets)
    V = model.args.vocab_size
    stop = stop_set(tokenizer, p, V)
    vocab = mx.arange(V)
    stop_mask = (vocab[:, None] == mx.array(sorted(stop) or [-1])[None]).any(axis=1)
    banned = vocab >= tokenizer.vocab_size if tokenizer.vocab_size < V else None

    pad_id = tokenizer.pad_id or 0
    ids = mx.array([[pad_id] * (P - n) + list(x) for x, n in zip(prompts, lengths, strict=True)])
    pad = None
    if min(lengths) < P:
        pad = mx.array([[j < P - n for j in range(P)] for n in lengths])
        pad = mx.concatenate([pad, mx.zeros((B, steps), mx.bool_)], axis=1)
    penalize = p.repetition_penalty != 1.0
    context = mx.where(pad[:, :P], -1, ids) if pad is not None else ids
    window = p.repetition_context_size
    seed = int.from_bytes(os.urandom(4), "little") if p.seed is None else p.seed
    keys = row_keys(seed, B) if p.temperature > 0 else None
    decoder = Decoder(model, pad)

    def step(x: mx.array, n: int) -> tuple[mx.array, mx.array | None]:
        nonlocal context, keys
        logits = decoder(x).astype(mx.float32)
        if banned is not None:
            logits = mx.where(banned, -mx.inf, logits)
        if penalize:
            ctx = context if window is None else context[:, -window:]
            logits = apply_repetition_penalty(logits, ctx, p.repetition_penalty)
        if n < p.min_new_tokens:
            logits = mx.where(stop_mask, -mx.inf, logits)
        y, keys = sample(logits, keys, p.temperature, p.top_k, p.top_p)
        if penalize:
            context = mx.concatenate([context, y[:, None].astype(context.dtype)], axis=1)
        if not logprobs:
            return y, None
        scaled = logits / p.temperature if p.temperature > 0 else logits
        lp = scaled - mx.logsumexp(scaled, axis=-1, keepdims=True)
        return y, mx.take_along_axis(lp, y[:, None], axis=-1)[:, 0]

    running = [True] * B
    y, lp = step(ids, 0)
    mx.async_eval(y) if lp is None else mx.async_eval(y, lp)
    for n in range(steps):
        if n + 1 < steps:
            nxt = step(y[:, None], n + 1)
            mx.async_eval(*(a for a in nxt if a is not None))
        ys = y.tolist()
        ls = lp.tolist() if lp is not None else [None] * B
        events: list[Event] = []
        for i, t in enumerate(ys):
            if not running[i]:
                continue
            reason = "stop" if t in stop else "length" if n + 1 >= budgets[i] else None
            running[i] = reason is None
            events.append((i, t, ls[i], reason))
        yield events
        if not any(running):
            return
        y, lp = nxt
