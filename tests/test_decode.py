"""Decoding with joined q/k/v and gate/up matmuls (minillm.decode): the layer-by-layer tokens,
the joined weights follow weight updates, and models that cannot join decode as before."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from conftest import make_tiny
from mlx.utils import tree_flatten

import minillm.decode as dec
from minillm.generate import generate
from minillm.model import Block, init_weights
from minillm.rl.rollout import rollout

PROMPTS = [[5, 6, 7, 8, 9], [10, 11, 12], [3] * 20]  # unequal lengths: left padding


def lively(**over):
    """A tiny model whose continuations depend on the context (init std 0.2)."""
    model, tok = make_tiny(seed=0, **over)
    init_weights(model, 0, std=0.2)
    mx.eval(model.parameters())
    return model, tok


def both(monkeypatch, fn):
    """fn() decoding layer by layer, then with joined projections."""
    out = []
    for flag in ("0", "1"):
        monkeypatch.setenv("MINILLM_JOINED_DECODE", flag)
        out.append(fn())
    return out


def test_joined_decode_gives_the_layerwise_tokens(monkeypatch):
    model, tok = lively()
    assert dec.joinable(model)
    names = {k for k, _ in tree_flatten(model.parameters())}

    def run():
        greedy = generate(model, tok, PROMPTS, max_new_tokens=40, stop_ids=[])
        sampled = generate(
            model, tok, PROMPTS, max_new_tokens=40, stop_ids=[], temperature=0.8, top_p=0.9, seed=3
        )
        return [g.tokens for g in greedy], [g.tokens for g in sampled]

    layerwise, joined = both(monkeypatch, run)
    assert joined == layerwise
    assert len(set(map(tuple, layerwise[0]))) == 3  # the rows really differ
    assert {k for k, _ in tree_flatten(model.parameters())} == names
    assert not [k for k in model if k.startswith("_")]  # the joined copies stay out of model.state


def test_joined_logits_match_the_model(monkeypatch):
    monkeypatch.setenv("MINILLM_JOINED_DECODE", "1")
    model, _ = lively()
    ids = mx.array([PROMPTS[2]])
    d = dec.Decoder(model)
    assert d.joined is not None
    got = [d(ids[:, :12])] + [d(ids[:, i : i + 1]) for i in range(12, 20)]
    want = model(ids)[0]
    for j, g in zip(range(11, 20), got, strict=True):
        np.testing.assert_allclose(np.array(g[0]), np.array(want[j]), rtol=1e-4, atol=1e-4)


def test_joined_rollout_matches_layerwise_logprobs(monkeypatch):
    model, tok = lively()

    def run():
        groups = rollout(model, tok, PROMPTS[:2], 4, max_new_tokens=24, temperature=1.0, seed=5)
        return [s for g in groups for s in g]

    layerwise, joined = both(monkeypatch, run)
    assert [s.tokens for s in joined] == [s.tokens for s in layerwise]
    for a, b in zip(joined, layerwise, strict=True):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_joined_weights_follow_weight_updates(monkeypatch):
    monkeypatch.setenv("MINILLM_JOINED_DECODE", "1")
    model, tok = lively()
    before = generate(model, tok, PROMPTS, max_new_tokens=20, stop_ids=[])
    w = dec.joined_weights(model)
    assert dec.joined_weights(model) is w  # reused while the weights stay
    init_weights(model, 1, std=0.2)  # new arrays, as a learner's weight update
    mx.eval(model.parameters())
    after = generate(model, tok, PROMPTS, max_new_tokens=20, stop_ids=[])
    monkeypatch.setenv("MINILLM_JOINED_DECODE", "0")
    layerwise = generate(model, tok, PROMPTS, max_new_tokens=20, stop_ids=[])
    assert [g.tokens for g in after] == [g.tokens for g in layerwise]
    assert [g.tokens for g in after] != [g.tokens for g in before]


def test_joined_by_default_on_gpu_devices_only(monkeypatch):
    model, _ = lively()
    monkeypatch.delenv("MINILLM_JOINED_DECODE", raising=False)
    on_gpu = mx.default_device().type == mx.DeviceType.gpu
    assert dec.use_joined(model) == on_gpu
    monkeypatch.setenv("MINILLM_JOINED_DECODE", "1")
    assert dec.use_joined(model)
    monkeypatch.setenv("MINILLM_JOINED_DECODE", "0")
    assert not dec.use_joined(model) and dec.Decoder(model).joined is None


def test_models_that_cannot_join_decode_layer_by_layer(monkeypatch):
    monkeypatch.setenv("MINILLM_JOINED_DECODE", "1")
    moe, tok = lively(use_moe=True, n_routed_experts=4, num_experts_per_tok=2)
    assert not dec.joinable(moe) and dec.Decoder(moe).joined is None
    calls = []
    orig = Block.__call__
    monkeypatch.setattr(Block, "__call__", lambda s, *a, **k: calls.append(1) or orig(s, *a, **k))
    out = generate(moe, tok, [PROMPTS[0]], max_new_tokens=5, stop_ids=[])
    assert len(out[0].tokens) == 5 and len(calls) == 5 * len(moe.layers)
    plain, _ = lively()
    plain.set_fused(False)  # reference ops
    assert not dec.joinable(plain)
    from minillm.train.lora import apply_lora

    lora, _ = lively()
    apply_lora(lora, r=4, alpha=8, targets=("q_proj",))
    assert not dec.joinable(lora)
