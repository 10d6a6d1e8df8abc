"""Direct Preference Optimization: the loss, sequence log-probs and resumable pair batches.

A DPO batch holds B preference pairs as 2B rows: rows `0..B-1` are the chosen sequences,
rows `B..2B-1` the rejected ones (`inputs`/`targets`/`mask` [2B,T], padded with the
tokenizer's pad id to `seq_len`); `mask` is 1 only on the response (the last assistant turn's
content and its `<|im_end|>`). `ref_chosen_logp`/`ref_rejected_logp` [B] are the frozen
reference model's summed response log-probs, computed once when the batch is built;
`pair_mask` [B] is 0 for the padding pairs of a run's last batch.

With h = (log π(y_c) - log π_ref(y_c)) - (log π(y_r) - log π_ref(y_r)):
sigmoid loss = -log σ(β·h), IPO loss = (h - 1/(2β))²; rewards are β·(log π - log π_ref).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from minillm.data.batching import Batches
from minillm.data.jsonl import JsonlReader
from minillm.train.config import DPO_LOSSES
from minillm.train.losses import hidden_states

Pair = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def dpo_loss(
    policy_chosen_logp: mx.array,
    policy_rejected_logp: mx.array,
    ref_chosen_logp: mx.array,
    ref_rejected_logp: mx.array,
    beta: float,
    kind: str = "sigmoid",
) -> tuple[mx.array, mx.array, mx.array]:
    """Per-pair `(losses, chosen_rewards, rejected_rewards)`; rewards carry no gradient."""
    chosen_ratio = policy_chosen_logp - ref_chosen_logp
    rejected_ratio = policy_rejected_logp - ref_rejected_logp
    h = chosen_ratio - rejected_ratio
    if kind == "sigmoid":
        losses = mx.logaddexp(mx.zeros_like(h), -beta * h)  # -log σ(βh), stable
    elif kind == "ipo":
        losses = mx.square(h - 1.0 / (2.0 * beta))
    else:
        raise ValueError(f"dpo loss {kind!r} is not one of {'/'.join(DPO_LOSSES)}")
    rewards = mx.stop_gradient(beta * chosen_ratio), mx.stop_gradient(beta * rejected_ratio)
    return losses, *rewards


def sequence_logp(
    model: nn.Module,
    inputs: mx.array,
    targets: mx.array,
    mask: mx.array,
    checkpoint_every_n: int = 0,
) -> mx.array:
    """Sum of `log p(targets[b, t] | inputs[b, :t+1])` over positions where `mask` is 1: [B]."""
    h = hidden_states(model, inputs, checkpoint_every_n)
    logits = model.logits(h).astype(mx.float32)
    picked = mx.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    tok = picked - mx.logsumexp(logits, axis=-1)
    return (tok * mask.astype(mx.float32)).sum(axis=-1)


def encode_pair(tok, rec: dict, seq_len: int) -> Pair | None:
    """`((chosen_ids, chosen_mask), (rejected_ids, rejected_mask))` of a validated DPO record.

    The mask is 1 only on the response; sequences are cut to `seq_len + 1` tokens (the prompt
    comes first, so it is kept whole when it fits). None when a side has no response token
    left to train.
    """
    from minillm.tokenizer import chat_ids_and_mask

    n_prompt = len(chat_ids_and_mask(tok, rec["prompt"])[0]) if rec["prompt"] else 0
    out = []
    for side in ("chosen", "rejected"):
        turns = [*rec["prompt"], {"role": "assistant", "content": rec[side]}]
        ids, mask = chat_ids_and_mask(tok, turns)
        ids = np.asarray(ids[: seq_len + 1], dtype=np.int32)
        mask = np.asarray(mask[: seq_len + 1], dtype=np.int8)
        mask[:n_prompt] = 0  # earlier assistant turns are prompt, not response
        if len(ids) < 2 or not mask[1:].any():
            return None
        out.append((ids, mask))
    return out[0], out[1]


@dataclass
class DpoBatch:
    """One DPO micro-batch (see the module docstring); `n_tokens` = trained response tokens."""

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    ref_chosen_logp: np.ndarray
    ref_rejected_logp: np.ndarray
    pair_mask: np.ndarray
    n_tokens: int
    n_pairs: int
    epoch: int


class DpoBatches(Batches):
    """Resumable iterator of `DpoBatch`es over DPO JSONL files (see `Batches` for `paths`,
    `seed`, `epochs`, `shuffle_buffer`, `skip_bad_lines`, `state()`/`restore()`).

    Every batch holds `batch_size` pairs (the run's last one may be padded with pairs of
    `pair_mask` 0). `ref_model` (frozen, never trained here) scores each batch once as it is
    built. `dropped` counts pairs with no response token within `seq_len + 1` tokens.
    `ref_from` (the reference's path) is recorded in `state()` so a resumed run reloads it.
    """

    def __init__(
        self,
        paths: str | Sequence[str | Path],
        tokenizer,
        ref_model: nn.Module,
        seq_len: int = 512,
        batch_size: int = 4,
        *,
        seed: int = 0,
        epochs: int = 1,
        shuffle_buffer: int = 0,
        skip_bad_lines: bool = False,
        ref_from: str | None = None,
    ):
        super().__init__(
            paths,
            tokenizer,
            "dpo",
            seq_len,
            batch_size,
            seed=seed,
            epochs=epochs,
            shuffle_buffer=shuffle_buffer,
            skip_bad_lines=skip_bad_lines,
        )
        self.ref_model, self.ref_from = ref_model, ref_from
        ref_model.eval()
        ref_model.freeze()

        def ref_logp(inputs, targets, mask):
            return mx.stop_gradient(sequence_logp(ref_model, inputs, targets, mask))

        self._ref_logp = ref_logp

    def encode(self, rec: dict) -> Pair | None:
        return encode_pair(self.tok, rec, self.seq_len)

    def __next__(self) -> DpoBatch:
        if self._done:
            raise StopIteration
        items = []
        while len(items) < self.batch_size and (item := self._next_item()) is not None:
            items.append(item)
        if len(items) < self.batch_size:
            self._done = True
            if not items:
                raise StopIteration
        return self._build_pairs([(it[1], it[2]) for it in items])

    def _build_pairs(self, pairs: list[Pair]) -> DpoBatch:
        B, T1 = self.batch_size, self.seq_len + 1
        x = np.full((2 * B, T1), self.tok.pad_id, np.int32)
        m = np.zeros((2 * B, T1), np.float32)
        for i, (chosen, rejected) in enumerate(pairs):
            for row, (ids, mask) in ((i, chosen), (B + i, rejected)):
                x[row, : len(ids)], m[row, : len(ids)] = ids, mask
        inputs, targets = np.ascontiguousarray(x[:, :-1]), np.ascontiguousarray(x[:, 1:])
        mask = np.ascontiguousarray(m[:, 1:])
        logp = self._ref_logp(mx.array(inputs), mx.array(targets), mx.array(mask))
        logp = np.array(logp.astype(mx.float32))
        pair_mask = np.zeros(B, np.float32)
        pair_mask[: len(pairs)] = 1
        return DpoBatch(
            inputs,
            targets,
            mask,
            logp[:B] * pair_mask,
            logp[B:] * pair_mask,
            pair_mask,
            int(mask.sum()),
            len(pairs),
            self.epoch,
        )

    def state(self) -> dict:
        return {**super().state(), "ref_from": self.ref_from}

    def num_batches(self) -> int:
        """Batches over all epochs from a fresh start: ceil(epochs * pairs / batch_size)."""
        reader = JsonlReader(self.paths, self.task, self.tok.vocab_size, self.skip_bad_lines)
        self.count_skipped = reader.skipped  # what the count left out (for a no-rows error)
        n = sum(self.encode(rec) is not None for _, rec in reader)
        return math.ceil(self.epochs * n / self.batch_size)


def make_dpo_loss(
    cfg=None, *, beta: float | None = None, kind: str | None = None, checkpoint_every_n: int = 0
) -> Callable:
    """`loss_fn(model, batch) -> (sum of pair losses, n_pairs, aux)` for `train`.

    `beta`/`kind` default to `cfg.dpo_beta`/`cfg.dpo_loss`. `aux` holds sums over the real
    pairs of `reward_margin`, `chosen_reward`, `rejected_reward` and `accuracy` (margin > 0),
    which the loop logs divided by the pair count.
    """
    if cfg is not None:
        beta = cfg.dpo_beta if beta is None else beta
        kind = cfg.dpo_loss if kind is None else kind
        checkpoint_every_n = checkpoint_every_n or cfg.checkpoint_every_n
    beta = 0.1 if beta is None else float(beta)
    kind = kind or "sigmoid"
    if kind not in DPO_LOSSES:
        raise ValueError(f"dpo loss {kind!r} is not one of {'/'.join(DPO_LOSSES)}")

    def loss_fn(model, batch):
        logp = sequence_logp(
            model, batch["inputs"], batch["targets"], batch["mask"], checkpoint_every_n
        )
        B = logp.shape[0] // 2
        losses, rc, rr = dpo_loss(
            logp[:B],
            logp[B:],
            batch["ref_chosen_logp"],
            batch["ref_rejected_logp"],
            beta,
            kind,
        )
        pm = batch["pair_mask"]
        margin = rc - rr
        aux = {
            "reward_margin": (margin * pm).sum(),
            "chosen_reward": (rc * pm).sum(),
            "rejected_reward": (rr * pm).sum(),
            "accuracy": ((margin > 0).astype(mx.float32) * pm).sum(),
        }
        return (losses * pm).sum(), pm.sum(), aux

    return loss_fn
