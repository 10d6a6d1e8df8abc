"""Token losses returning `(sum_loss, n_tokens)`; the loop divides by the step's total tokens.

Batches reach a loss function as a dict of mx arrays: `inputs`, `targets` int32 [B,T], `mask`
float32 [B,T] and, for the sparse loss, `label_pos` int32 [B,K] + `label_mask` float32 [B,K].
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn

from minillm.models import cpu_ops, make_mask

# GPU: the LM head's loss through mx.fast.cross_entropy (the profile's A/B switch)

LossFn = Callable[[nn.Module, dict[str, mx.array]], tuple[mx.array, mx.array]]


def hidden_states(model: nn.Module, ids: mx.array, checkpoint_every_n: int = 0) -> mx.array:
    """`model.hidden(ids)`, recomputing each segment of n layers in the backward when n > 0."""
    if checkpoint_every_n <= 0:
        return model.hidden(ids)
    return hidden_and_aux(model, ids, checkpoint_every_n, with_aux=False)[0]


def hidden_and_aux(
    model: nn.Module, ids: mx.array, checkpoint_every_n: int = 0, with_aux: bool = True
) -> tuple[mx.array, mx.array]:
    """`(hidden states, MoE load-balancing loss summed over layers)` (0 for dense models)."""
    if checkpoint_every_n <= 0:
        return model.hidden_aux(ids) if with_aux else (model.hidden(ids), mx.array(0.0))
    h = model.model.embed_tokens(ids)
    mask = make_mask(ids.shape[1])
    layers = model.layers
    aux = mx.array(0.0)
    for start in range(0, len(layers), checkpoint_every_n):
        seg = layers[start : start + checkpoint_every_n]

        def run(params, x, seg=seg):
            for layer, p in zip(seg, params, strict=True):
                layer.update(p)
            if not with_aux:
                for layer in seg:
                    x = layer(x, mask)
                return x
            a = mx.array(0.0)
            for layer in seg:
                x, la = layer.forward_aux(x, mask)
                a = a + la
            return x, a

        out = mx.checkpoint(run)([layer.trainable_parameters() for layer in seg], h)
        if with_aux:
            h, a = out
            aux = aux + a
        else:
            h = out
    return model.model.norm(h), aux


def head_weight(model: nn.Module) -> mx.array:
    if model.args.tie_word_embeddings:
        return model.model.embed_tokens.weight
    return model.lm_head.weight


def masked_ce(logits: mx.array, targets: mx.array, mask: mx.array) -> tuple[mx.array, mx.array]:
    """Cross-entropy summed over positions where `mask` is 1, computed in fp32."""
    logits = logits.astype(mx.float32)
    tok = (
        mx.logsumexp(logits, axis=-1)
        - mx.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    )
    return (tok * mask).sum(), mask.sum()


def chunked_ce(
    h: mx.array, weight: mx.array, targets: mx.array, mask: mx.array, chunk_rows: int
) -> tuple[mx.array, mx.array]:
    """`masked_ce(h @ weight.T, ...)` over rows of h [N,d], `chunk_rows` rows of logits at a time.

    A custom VJP recomputes each chunk's logits in the backward, so neither pass holds more
    than one chunk of [chunk_rows, V] logits (plus its softmax).
    """
    targets, mask = targets.reshape(-1), mask.reshape(-1).astype(mx.float32)
    n = h.shape[0]
    spans = [(s, min(s + chunk_rows, n)) for s in range(0, n, chunk_rows)]

    def chunk_logits(hc, w):
        return (hc @ w.T).astype(mx.float32)

    @mx.custom_function
    def ce(h, w):
        total = mx.array(0.0)
        for s, e in spans:
            lg = chunk_logits(h[s:e], w)
            tok = (
                mx.logsumexp(lg, axis=-1)
                - mx.take_along_axis(lg, targets[s:e, None], axis=-1)[:, 0]
            )
            total = total + (tok * mask[s:e]).sum()
        return total

    @ce.vjp
    def ce_vjp(primals, cotangent, output):
        h, w = primals
        dh, dw = [], None
        for s, e in spans:
            hc, t = h[s:e], targets[s:e, None]
            if dw is not None:
                # finish the previous chunk (both consumers of its softmax) before this one
                hc = mx.depends(hc, [dh[-1], dw])
            p = mx.softmax(chunk_logits(hc, w), axis=-1)
            p = mx.put_along_axis(p, t, mx.take_along_axis(p, t, axis=-1) - 1.0, axis=-1)
            g = (p * (mask[s:e] * cotangent)[:, None]).astype(h.dtype)
            dh.append(g @ w)
            d = g.T @ hc
            dw = d if dw is None else dw + d
        return mx.concatenate(dh, axis=0), dw.astype(w.dtype)

    return ce(h, weight), mask.sum()


def _head_loss(
    model: nn.Module,
    h: mx.array,
    targets: mx.array,
    mask: mx.array,
    chunk_size: int,
    fast_ce: bool = True,
) -> tuple[mx.array, mx.array]:
    if chunk_size <= 0 and cpu_ops.use_cpu_ops():
        ce = cpu_ops.cross_entropy_sum(
            h.reshape(-1, h.shape[-1]), head_weight(model), targets, mask
        )
        return ce, mask.sum()
    if chunk_size <= 0 and fast_ce and mx.default_device().type == mx.DeviceType.gpu:
        # one fused kernel (fp32 accumulation) instead of an fp32 copy of the logits
        return (mx.fast.cross_entropy(model.logits(h), targets) * mask).sum(), mask.sum()
    if chunk_size <= 0:
        return masked_ce(model.logits(h), targets, mask)
    rows = chunk_size * (h.shape[0] if h.ndim == 3 else 1)
    return chunked_ce(h.reshape(-1, h.shape[-1]), head_weight(model), targets, mask, rows)


def lm_loss(
    model: nn.Module,
    batch: dict[str, mx.array],
    *,
    chunk_size: int = 0,
    sparse: bool = False,
    checkpoint_every_n: int = 0,
    moe_aux: bool = False,
    fast_ce: bool = True,
):
    """Next-token CE of `batch`: `(sum of token losses, number of trained tokens)`.

    `sparse` gathers hidden states at `label_pos` so logits exist only where `label_mask` is 1
    (pad `label_pos` with any valid index and `label_mask` 0). `chunk_size` > 0 computes the
    LM head in chunks of that many positions. Both give the plain masked loss.

    With `moe_aux`, an MoE model in training mode (`use_moe`, `aux_loss_alpha` > 0) adds its
    load-balancing loss (already times alpha, summed over layers) per trained token, as
    MiniMind's `loss = ce + aux_loss`, and returns `(sum_loss, n, {"moe_aux": aux * n})` so
    the loop logs the aux part too. Dense models always return `(sum_loss, n)`.
    """
    args = getattr(model, "args", None)
    use_aux = (
        moe_aux and getattr(args, "use_moe", False) and args.aux_loss_alpha > 0 and model.training
    )
    if use_aux:
        h, aux = hidden_and_aux(model, batch["inputs"], checkpoint_every_n)
    else:
        h = hidden_states(model, batch["inputs"], checkpoint_every_n)
    targets, mask = batch["targets"], batch["mask"]
    if sparse:
        pos = batch["label_pos"]
        h = mx.take_along_axis(h, pos[..., None], axis=1)
        targets = mx.take_along_axis(targets, pos, axis=1)
        mask = batch["label_mask"]
    loss, n = _head_loss(model, h, targets, mask, chunk_size, fast_ce)
    if not use_aux:
        return loss, n
    aux_sum = aux * n
    return loss + aux_sum, n, {"moe_aux": aux_sum}


def make_lm_loss(
    chunk_size: int = 0, sparse: bool = False, checkpoint_every_n: int = 0, fast_ce: bool = True
) -> LossFn:
    """`loss_fn(model, batch)` for `train`: the LM loss with the memory options bound (plus
    the MoE load-balancing loss for MoE models in training mode)."""

    def loss_fn(model, batch):
        return lm_loss(
            model,
            batch,
            chunk_size=chunk_size,
            sparse=sparse,
            checkpoint_every_n=checkpoint_every_n,
            moe_aux=True,
            fast_ce=fast_ce,
        )

    return loss_fn


def lm_loss_from_config(cfg) -> LossFn:
    """`make_lm_loss` with `cfg`'s logits_chunk_size, sparse_loss, checkpoint_every_n, fast_ce."""
    return make_lm_loss(cfg.logits_chunk_size, cfg.sparse_loss, cfg.checkpoint_every_n, cfg.fast_ce)
