"""Compiled decoding (minillm.decode): same tokens as the eager path, traced once per shape,
and it follows weight updates."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from conftest import make_tiny
from mlx.utils import tree_flatten

from minillm.decode import Decoder, StaticCache
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
    """fn() with the eager path, then with the compiled one."""
    out = []
    for flag in ("0", "1"):
        monkeypatch.setenv("MINILLM_COMPILED_DECODE", flag)
        out.append(fn())
    return out


@pytest.mark.parametrize("moe", [False, True])
def test_compiled_decode_gives_the_eager_tokens(monkeypatch, moe):
    over = dict(use_moe=True, n_routed_experts=4, num_experts_per_tok=2) if moe else {}
    model, tok = lively(**over)

    def run():
        greedy = generate(model, tok, PROMPTS, max_new_tokens=60, stop_ids=[])  # crosses 64
        sampled = generate(
            model, tok, PROMPTS, max_new_tokens=40, stop_ids=[], temperature=0.8, top_p=0.9, seed=3
        )
        return [g.tokens for g in greedy], [g.tokens for g in sampled]

    names = {k for k, _ in tree_flatten(model.parameters())}
    eager, compiled = both(monkeypatch, run)
    assert compiled == eager
    assert len(set(map(tuple, eager[0]))) == 3  # the rows really differ
    assert {k for k, _ in tree_flatten(model.parameters())} == names
    assert not [k for k in model if k.startswith("_")]  # decode caches stay out of model.state


def test_joined_and_layerwise_steps_agree(monkeypatch):
    import minillm.decode as dec

    model, tok = lively()
    assert dec.joinable(model)
    monkeypatch.setenv("MINILLM_COMPILED_DECODE", "1")
    out = []
    for join in (False, True):
        monkeypatch.setattr(dec, "JOIN", join)
        out.append(
            [g.tokens for g in generate(model, tok, PROMPTS, max_new_tokens=40, stop_ids=[])]
        )
    assert out[0] == out[1]


def test_compiled_rollout_matches_eager_logprobs(monkeypatch):
    model, tok = lively()

    def run():
        groups = rollout(model, tok, PROMPTS[:2], 4, max_new_tokens=24, temperature=1.0, seed=5)
        return [s for g in groups for s in g]

    eager, compiled = both(monkeypatch, run)
    assert [s.tokens for s in compiled] == [s.tokens for s in eager]
    for a, b in zip(compiled, eager, strict=True):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_compiled_step_is_traced_once_per_window_and_builds_no_graph_per_token(monkeypatch):
    import minillm.decode as dec

    monkeypatch.setenv("MINILLM_COMPILED_DECODE", "1")
    model, tok = lively()
    generate(model, tok, [PROMPTS[0]], max_new_tokens=30, stop_ids=[])  # traces window 64
    step = model._decode_step
    blocks, traced = [], []
    orig_block, orig_layer = Block.__call__, dec._joined_layer
    monkeypatch.setattr(
        Block, "__call__", lambda s, *a, **k: blocks.append(1) or orig_block(s, *a, **k)
    )
    monkeypatch.setattr(dec, "_joined_layer", lambda *a: traced.append(1) or orig_layer(*a))
    out = generate(model, tok, [PROMPTS[1]], max_new_tokens=30, stop_ids=[])
    assert len(out[0].tokens) == 30 and model._decode_step is step
    assert len(blocks) == len(model.layers)  # the prefill only: no Python per decoded token
    assert traced == []  # positions 3..33: the window-64 step traced before
    generate(model, tok, [[7] * 60], max_new_tokens=10, stop_ids=[])  # positions 60..70
    assert len(traced) == len(model.layers)  # one new trace, for window 128


def test_compiled_step_follows_weight_updates(monkeypatch):
    monkeypatch.setenv("MINILLM_COMPILED_DECODE", "1")
    model, tok = lively()
    before = generate(model, tok, PROMPTS, max_new_tokens=20, stop_ids=[])
    init_weights(model, 1, std=0.2)  # new arrays, as a learner's weight update
    mx.eval(model.parameters())
    after = generate(model, tok, PROMPTS, max_new_tokens=20, stop_ids=[])
    monkeypatch.setenv("MINILLM_COMPILED_DECODE", "0")
    eager = generate(model, tok, PROMPTS, max_new_tokens=20, stop_ids=[])
    assert [g.tokens for g in after] == [g.tokens for g in eager]
    assert [g.tokens for g in after] != [g.tokens for g in before]


def test_decoder_capacity_and_overflow(monkeypatch):
    monkeypatch.setenv("MINILLM_COMPILED_DECODE", "1")
    model, _ = lively()
    dec = Decoder(model, 1, 10)
    assert dec.compiled and dec.cache[0].keys.shape[2] == 256  # rounded up to the step
    cache = StaticCache(1, 2, 4, 16, mx.float32)
    with pytest.raises(ValueError, match="exceed the cache capacity 4"):
        cache.update_and_fetch(mx.zeros((1, 2, 5, 16)), mx.zeros((1, 2, 5, 16)))
    model.set_fused(False)  # reference ops: eager decoding
    assert not Decoder(model, 1, 10).compiled
