"""GRPO: group-normalised advantages and the clipped, token-level policy loss.

For a prompt with G sampled replies and rewards r_1..r_G, A_j = (r_j - mean(r)) / (std(r) + eps)
(or without the std division). Per response token t with behaviour log-prob b_t (recorded at
sampling) and current log-prob p_t: ratio = exp(p_t - b_t),
    loss_t = max(-A·ratio, -A·clip(ratio, 1 - eps_low, 1 + eps_high)) + β·k3_t,
    k3_t   = exp(q_t - p_t) - (q_t - p_t) - 1     (q_t: frozen reference log-prob),
summed over every response token of the batch and divided by their count (token-level
aggregation). Log-probs are of `logits / temperature`, as at sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np


@dataclass
class GRPOConfig:
    group_size: int = 8
    clip_eps: float = 0.2
    clip_eps_high: float | None = None  # None: same as clip_eps (DAPO uses a larger one)
    beta: float = 0.0  # KL-to-reference weight (k3); 0 = no reference model
    scale_std: bool = True  # divide advantages by the group's std
    dynamic_sampling: bool = True  # drop groups whose rewards are all equal
    max_staleness: int = 1  # policy versions a rollout may lag the learner
    temperature: float = 1.0
    eps: float = 1e-6


def advantages(rewards: np.ndarray, scale_std: bool = True, eps: float = 1e-6) -> np.ndarray:
    """Group-normalised advantages of `rewards` [N, G] (population std, as GRPO)."""
    r = np.asarray(rewards, np.float64)
    a = r - r.mean(axis=1, keepdims=True)
    if scale_std:
        a = a / (r.std(axis=1, keepdims=True) + eps)
    return a.astype(np.float32)


def token_logprobs(model, inputs: mx.array, targets: mx.array, temperature: float) -> mx.array:
    """log p(targets | inputs) per position under `logits / temperature`, float32 [B, T]."""
    logits = model(inputs).astype(mx.float32)
    if temperature != 1.0:
        logits = logits / temperature
    picked = mx.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return picked - mx.logsumexp(logits, axis=-1)


def grpo_terms(
    logp: mx.array,
    old_logp: mx.array,
    adv: mx.array,
    mask: mx.array,
    clip_low: float,
    clip_high: float,
    beta: float = 0.0,
    ref_logp: mx.array | None = None,
) -> tuple[mx.array, mx.array, dict[str, mx.array]]:
    """Summed token loss, token count and summed diagnostics (clipped tokens, KL, ratio).

    `logp`, `old_logp`, `ref_logp`, `mask`: [B, T]; `adv`: [B] (one per sequence)."""
    mask = mask.astype(mx.float32)
    a = adv[:, None]
    ratio = mx.exp(logp - old_logp)
    un = -a * ratio
    cl = -a * mx.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per = mx.maximum(un, cl)
    aux = {
        "clip_frac": ((cl > un) * mask).sum(),
        "ratio": (ratio * mask).sum(),
    }
    if ref_logp is not None:
        d = ref_logp - logp
        kl = mx.exp(d) - d - 1.0
        aux["kl"] = (kl * mask).sum()
        if beta:
            per = per + beta * kl
    return (per * mask).sum(), mask.sum(), aux


def make_grpo_loss(cfg: GRPOConfig):
    """`loss_fn(model, batch) -> (sum_loss, n_tokens, aux)` for `minillm.train.train`.

    The batch holds `inputs`, `targets`, `mask` (response tokens), `old_logp` [B, T], `adv`
    [B] and, when β > 0 or KL is logged, `ref_logp` [B, T]."""
    hi = cfg.clip_eps if cfg.clip_eps_high is None else cfg.clip_eps_high

    def loss_fn(model, batch):
        logp = token_logprobs(model, batch["inputs"], batch["targets"], cfg.temperature)
        return grpo_terms(
            logp,
            batch["old_logp"],
            batch["adv"],
            batch["mask"],
            cfg.clip_eps,
            hi,
            cfg.beta,
            batch.get("ref_logp"),
        )

    return loss_fn


def build_batch(
    prompts: list[list[int]],
    responses: list[list[int]],
    logprobs: list[list[float]],
    adv: list[float],
    pad_id: int,
    width: int | None = None,
) -> dict[str, np.ndarray]:
    """Rows `prompt + response` (the exact sampled ids); the mask marks the positions whose
    target is a response token, where `old_logp` holds its behaviour log-prob."""
    seqs = [list(p) + list(r) for p, r in zip(prompts, responses, strict=True)]
    T = max(len(s) for s in seqs) - 1
    if width is not None:
        if width < T:
            raise ValueError(f"a rollout has {T + 1} tokens, more than seq_len + 1 = {width + 1}")
        T = width
    B = len(seqs)
    x = np.full((B, T + 1), pad_id, np.int32)
    mask = np.zeros((B, T), np.float32)
    old = np.zeros((B, T), np.float32)
    for i, (s, p, r, lp) in enumerate(zip(seqs, prompts, responses, logprobs, strict=True)):
        x[i, : len(s)] = s
        lo = len(p) - 1  # target index of the first response token
        mask[i, lo : lo + len(r)] = 1
        old[i, lo : lo + len(r)] = lp
    return {
        "inputs": x[:, :-1].copy(),
        "targets": x[:, 1:].copy(),
        "mask": mask,
        "old_logp": old,
        "adv": np.asarray(adv, np.float32),
        "n_tokens": int(mask.sum()),
    }
