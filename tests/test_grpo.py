"""GRPO core: advantages and the clipped loss against hand-computed values, and rollouts whose
recorded behaviour log-probs equal the learner's recomputation on the exact sampled ids."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from minillm.rl.grpo import (
    GRPOConfig,
    advantages,
    build_batch,
    grpo_terms,
    make_grpo_loss,
    token_logprobs,
)
from minillm.rl.rollout import rollout
from tests.conftest import make_tiny


def test_advantages_by_hand():
    r = np.array([[1, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 3]], np.float32)
    a = advantages(r, eps=0.0 + 1e-12)
    np.testing.assert_allclose(a[0], [1, -1, -1, 1], atol=1e-6)  # mean .5, std .5
    np.testing.assert_allclose(a[1], [0, 0, 0, 0], atol=1e-6)
    s = math.sqrt(3 * 0.75**2 + 2.25**2) / 2  # population std of [0, 0, 0, 3]
    np.testing.assert_allclose(a[2], np.array([-0.75, -0.75, -0.75, 2.25]) / s, rtol=1e-5)
    np.testing.assert_allclose(advantages(r, scale_std=False)[0], [0.5, -0.5, -0.5, 0.5])


def test_clipped_loss_by_hand():
    old = mx.zeros((2, 2))
    logp = mx.log(mx.array([[1.5, 0.9], [0.5, 1.1]]))  # ratios, since old = 0
    adv = mx.array([1.0, -2.0])
    mask = mx.array([[1, 1], [1, 0]])
    loss, n, aux = grpo_terms(logp, old, adv, mask, 0.2, 0.2)
    # row 0 (A=1):  max(-1.5, -1.2) = -1.2 (clipped), max(-0.9, -0.9) = -0.9
    # row 1 (A=-2): max(1.0, 1.6) = 1.6 (clipped); token 2 is masked out
    assert loss.item() == pytest.approx(-1.2 - 0.9 + 1.6, abs=1e-6)
    assert n.item() == 3 and aux["clip_frac"].item() == 2
    assert aux["ratio"].item() == pytest.approx(1.5 + 0.9 + 0.5, abs=1e-6)
    # an asymmetric upper bound (DAPO's clip-higher) lets the first ratio through
    loss_hi, _, aux_hi = grpo_terms(logp, old, adv, mask, 0.2, 0.6)
    assert loss_hi.item() == pytest.approx(-1.5 - 0.9 + 1.6, abs=1e-6)
    assert aux_hi["clip_frac"].item() == 1


def test_k3_kl_by_hand():
    logp = mx.array([[0.0, 0.0]])
    ref = mx.array([[math.log(2.0), 0.0]])
    mask = mx.array([[1, 1]])
    base, _, _ = grpo_terms(logp, logp, mx.array([1.0]), mask, 0.2, 0.2)
    loss, _, aux = grpo_terms(logp, logp, mx.array([1.0]), mask, 0.2, 0.2, 0.5, ref)
    k3 = 2.0 - math.log(2.0) - 1.0  # exp(d) - d - 1 at d = log 2; 0 at d = 0
    assert aux["kl"].item() == pytest.approx(k3, abs=1e-6)
    assert loss.item() - base.item() == pytest.approx(0.5 * k3, abs=1e-6)
    assert base.item() == pytest.approx(-2.0, abs=1e-6)  # ratio 1: -A per token


def test_build_batch_aligns_mask_with_response_targets():
    b = build_batch([[5, 6, 7], [5]], [[8, 9], [3, 4, 2]], [[-1.0, -2.0], [-3, -4, -5]], [1, -1], 0)
    assert b["inputs"].shape == (2, 4)
    np.testing.assert_array_equal(b["targets"][0, b["mask"][0] == 1], [8, 9])
    np.testing.assert_array_equal(b["targets"][1, b["mask"][1] == 1], [3, 4, 2])
    np.testing.assert_array_equal(b["old_logp"][1, b["mask"][1] == 1], [-3, -4, -5])
    assert b["n_tokens"] == 5
    with pytest.raises(ValueError, match="seq_len"):
        build_batch([[1, 2, 3]], [[4, 5]], [[0, 0]], [1], 0, width=2)


def test_rollout_logprobs_match_the_learner_on_the_exact_ids():
    model, tok = make_tiny(seed=3)
    prompts = [tok.encode("1+1="), tok.encode("hello there, how")]
    groups = rollout(model, tok, prompts, 4, max_new_tokens=12, temperature=0.8, seed=5)
    assert [len(g) for g in groups] == [4, 4]
    again = rollout(model, tok, prompts, 4, max_new_tokens=12, temperature=0.8, seed=5)
    assert [s.tokens for g in groups for s in g] == [s.tokens for g in again for s in g]
    samples = [s for g in groups for s in g]
    assert len({tuple(s.tokens) for s in samples}) > 2  # sampling differs across the group
    flat_p = [p for p in prompts for _ in range(4)]
    b = build_batch(flat_p, [s.tokens for s in samples], [s.logprobs for s in samples],
                    [1.0] * 8, tok.pad_id)  # fmt: skip
    arr = {k: mx.array(v) for k, v in b.items() if isinstance(v, np.ndarray)}
    lp = token_logprobs(model, arr["inputs"], arr["targets"], 0.8)
    m = arr["mask"] == 1
    diff = mx.abs(mx.where(m, lp - arr["old_logp"], 0)).max().item()
    assert diff < 1e-4  # ratio 1 on policy: sampling and learner agree token by token
    loss, n, aux = make_grpo_loss(GRPOConfig(temperature=0.8))(model, arr)
    assert aux["clip_frac"].item() == 0
    assert loss.item() == pytest.approx(-n.item(), rel=1e-3)  # -A * ratio, A = 1, ratio 1


def test_rollout_rejects_greedy():
    model, tok = make_tiny()
    with pytest.raises(ValueError, match="temperature"):
        rollout(model, tok, [[1, 2]], 2, temperature=0.0)


def test_grpo_steps_move_logprobs_with_the_advantage(tmp_path):
    """On a fixed on-policy batch, a few GRPO steps raise the log-probs of positive-advantage
    replies and lower those of negative ones (the sign of the update is right)."""
    from minillm.train import train
    from minillm.train.config import TrainConfig

    model, tok = make_tiny(seed=4)
    prompts = [tok.encode("2+3="), tok.encode("7+1=")]
    groups = rollout(model, tok, prompts, 4, max_new_tokens=8, temperature=1.0, seed=1)
    samples = [s for g in groups for s in g]
    adv = [1.0, -1.0, 1.0, -1.0] * 2
    flat_p = [p for p in prompts for _ in range(4)]
    b = build_batch(flat_p, [s.tokens for s in samples], [s.logprobs for s in samples], adv,
                    tok.pad_id)  # fmt: skip
    arr = {k: mx.array(v) for k, v in b.items() if isinstance(v, np.ndarray)}

    def seq_logp():
        lp = token_logprobs(model, arr["inputs"], arr["targets"], 1.0)
        return np.array((lp * arr["mask"]).sum(axis=1))

    start = seq_logp()
    cfg = TrainConfig(out_dir=str(tmp_path), dtype="float32", max_steps=5, learning_rate=1e-3,
                      warmup_steps=0, min_lr_ratio=1.0, weight_decay=0.0, save_interval=0,
                      log_interval=5, compile=False)  # fmt: skip
    train(model, make_grpo_loss(GRPOConfig(clip_eps=10.0)), [b] * 5, cfg, tokenizer=tok)
    delta = seq_logp() - start
    pos, neg = delta[np.array(adv) > 0], delta[np.array(adv) < 0]
    assert (pos > 0).all() and (neg < 0).all(), (pos, neg)
