"""Mixture-of-Experts (`use_moe`, MiniMind's MOEFeedForward): routing, aux loss, training,
checkpoints, generation, export and stats on a d64 model."""

from __future__ import annotations

import json

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import TINY, TINY_FLAGS, make_tiny

from minillm.model import MOE_KEYS, ModelArgs, MoE

MOE = dict(use_moe=True, intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2)


def moe_layer(seed=0, **over) -> MoE:
    args = ModelArgs(**{**TINY, "vocab_size": 100, **MOE, **over})
    mx.random.seed(seed)
    layer = MoE(args)
    # larger gate weights than init_weights' so the routing is not near-uniform
    layer.gate.weight = 0.5 * mx.random.normal(layer.gate.weight.shape, key=mx.random.key(seed))
    mx.eval(layer.parameters())
    return layer


def x_in(B=2, T=7, seed=1):
    return mx.random.normal((B, T, TINY["hidden_size"]), key=mx.random.key(seed))


def test_each_token_goes_to_exactly_k_distinct_experts():
    layer = moe_layer(n_routed_experts=5, num_experts_per_tok=3)
    inds, weights, scores = layer.route(x_in())
    inds, weights, scores = (np.array(a) for a in (inds, weights, scores))
    assert inds.shape == (2, 7, 3) and scores.shape == (2, 7, 5)
    for row in inds.reshape(-1, 3):
        assert len(set(row.tolist())) == 3 and row.min() >= 0 and row.max() < 5
    # the chosen experts are the k best scores
    top = np.sort(np.argsort(-scores, axis=-1)[..., :3], axis=-1)
    assert (np.sort(inds, axis=-1) == top).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("norm", [True, False])
def test_output_matches_a_loop_over_experts(norm):
    layer = moe_layer(norm_topk_prob=norm)
    x = x_in()
    inds, weights, scores = layer.route(x)
    picked = np.take_along_axis(np.array(scores), np.array(inds), -1)
    if norm:
        np.testing.assert_allclose(np.array(weights).sum(-1), 1.0, atol=1e-6)
    else:  # raw softmax probabilities of the chosen experts
        np.testing.assert_allclose(np.array(weights), picked, rtol=1e-6)
        assert (np.array(weights).sum(-1) < 1.0).all()
    ex = layer.experts
    want = layer.shared_experts(x)
    for e in range(4):
        g, u, d = ex.gate_proj.weight[e], ex.up_proj.weight[e], ex.down_proj.weight[e]
        y = (nn.silu(x @ g.T) * (x @ u.T)) @ d.T
        w = ((inds == e) * weights).sum(-1, keepdims=True)
        want = want + w * y
    np.testing.assert_allclose(np.array(layer(x)), np.array(want), atol=1e-5)


def aux_by_hand(scores: np.ndarray, E: int, k: int, alpha: float, seq: bool) -> float:
    B, T, _ = scores.shape
    inds = np.argsort(-scores, axis=-1)[..., :k]
    if seq:  # MiniMind: ce = selections per expert / (T*k/E); mean_b sum_e ce * mean_t score
        total = 0.0
        for b in range(B):
            counts = np.bincount(inds[b].ravel(), minlength=E)
            ce = counts / (T * k / E)
            total += (ce * scores[b].mean(0)).sum()
        return total / B * alpha
    fi = np.bincount(inds.ravel(), minlength=E) / (B * T * k) * E
    pi = scores.reshape(-1, E).mean(0)
    return float((pi * fi).sum() * alpha)


@pytest.mark.parametrize("seq_aux", [True, False])
def test_aux_loss_equals_hand_computed(seq_aux):
    layer = moe_layer(seq_aux=seq_aux, aux_loss_alpha=0.1)
    x = x_in(B=3, T=5)
    inds, _, scores = layer.route(x)
    s = np.array(scores, dtype=np.float64)
    want = aux_by_hand(s, 4, 2, 0.1, seq_aux)
    got = layer.aux_loss(inds, scores).item()
    assert got == pytest.approx(want, rel=1e-5)
    _, aux = layer.forward_aux(x)
    assert aux.item() == pytest.approx(want, rel=1e-5)
    # a fixed, hand-written case: 1 sequence of 2 tokens, 2 experts, top-1
    sc = np.array([[[0.75, 0.25], [0.25, 0.75]]])
    # seq: counts [1, 1] / (2*1/2) = [1, 1]; mean scores [0.5, 0.5] -> 1.0 * alpha
    # token: fi = [0.5, 0.5] * 2 = [1, 1]; Pi = [0.5, 0.5] -> 1.0 * alpha
    assert aux_by_hand(sc, 2, 1, 0.1, seq_aux) == pytest.approx(0.1)
    lay2 = moe_layer(n_routed_experts=2, num_experts_per_tok=1, seq_aux=seq_aux)
    got2 = lay2.aux_loss(mx.array([[[0], [1]]]), mx.array(sc, dtype=mx.float32)).item()
    assert got2 == pytest.approx(0.1)
    # all tokens on expert 0: seq ce = [2, 0]; mean score of expert 0 = 0.75 -> 1.5 * alpha
    got3 = lay2.aux_loss(mx.array([[[0], [0]]]), mx.array([[[0.75, 0.25]] * 2])).item()
    assert got3 == pytest.approx(0.15)


def test_dense_config_unchanged_and_moe_keys_saved(tmp_path):
    from minillm.checkpoint import hf_config, load_model, save_model

    dense = hf_config(ModelArgs(**TINY), mx.float32)
    assert not set(MOE_KEYS) & set(dense) and dense["architectures"] == ["LlamaForCausalLM"]
    model, tok = make_tiny(seed=3, **MOE)
    out = save_model(tmp_path / "moe", model, tok)
    cfg = json.loads((out / "config.json").read_text())
    assert {k: cfg[k] for k in MOE_KEYS} == {
        "use_moe": True,
        "n_routed_experts": 4,
        "num_experts_per_tok": 2,
        "n_shared_experts": 1,
        "scoring_func": "softmax",
        "norm_topk_prob": True,
        "aux_loss_alpha": 0.1,
        "seq_aux": True,
    }
    back = load_model(out)
    assert back.args == model.args
    ids = mx.array([[1, 5, 9, 33, 7, 2]])
    np.testing.assert_array_equal(np.array(back(ids)), np.array(model(ids)))


def test_generation_and_kv_cache_match_full_forward():
    from minillm.generate import generate

    model, tok = make_tiny(seed=4, **MOE)
    model.eval()
    ids = [1, 40, 41, 42, 43]
    gen = generate(model, tok, [ids], max_new_tokens=6, min_new_tokens=6, temperature=0.0)[0]
    assert len(gen.tokens) == 6
    full = ids + gen.tokens
    logits = model(mx.array([full]))
    # greedy: each generated token is the argmax of the full (cache-free) forward
    want = np.array(logits[0, len(ids) - 1 : -1].argmax(-1)).tolist()
    assert gen.tokens == want


def test_loss_includes_aux_only_in_training_and_checkpointing_agrees():
    from minillm.train.losses import lm_loss, make_lm_loss

    model, _ = make_tiny(seed=5, **MOE)
    rng = np.random.default_rng(0)
    seq = mx.array(rng.integers(3, 500, (2, 17)).astype(np.int32))
    batch = {"inputs": seq[:, :-1], "targets": seq[:, 1:], "mask": mx.ones((2, 16))}
    model.train()
    loss, n, aux = make_lm_loss()(model, batch)
    ce, n2 = lm_loss(model, batch)  # eval-style call: no aux
    assert n.item() == n2.item() == 32
    assert aux["moe_aux"].item() > 0
    assert loss.item() == pytest.approx(ce.item() + aux["moe_aux"].item(), rel=1e-5)
    loss_ck, _, aux_ck = make_lm_loss(checkpoint_every_n=1)(model, batch)
    assert loss_ck.item() == pytest.approx(loss.item(), rel=1e-5)
    assert aux_ck["moe_aux"].item() == pytest.approx(aux["moe_aux"].item(), rel=1e-5)
    model.eval()
    assert len(make_lm_loss()(model, batch)) == 2


def test_tiny_moe_loss_falls_through_train(tmp_path):
    from minillm.train import train
    from minillm.train.config import TrainConfig
    from minillm.train.losses import make_lm_loss

    model, tok = make_tiny(seed=0, **MOE)
    rng = np.random.default_rng(0)
    seq = rng.integers(3, 500, (2, 33)).astype(np.int32)
    batch = {"inputs": seq[:, :-1], "targets": seq[:, 1:], "mask": np.ones((2, 32), np.float32)}

    class Repeat:
        def __init__(self, n):
            self.i, self.n = 0, n

        def __iter__(self):
            return self

        def __next__(self):
            if self.i >= self.n:
                raise StopIteration
            self.i += 1
            return batch

        def state(self):
            return {"i": self.i}

        def restore(self, state):
            self.i = state["i"]

    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"),
        max_steps=30,
        warmup_steps=3,
        learning_rate=1e-2,
        dtype="float32",
        log_interval=10,
        save_interval=0,
        progress=False,
    )
    gate0 = np.array(model.layers[0].mlp.gate.weight)
    res = train(model, make_lm_loss(), Repeat(30), cfg, tokenizer=tok)
    assert res.step == 30
    assert res.losses[-1] < 0.5 * res.losses[0], res.losses
    assert not np.allclose(np.array(model.layers[0].mlp.gate.weight), gate0)
    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    aux = [r["moe_aux"] for r in logs if "moe_aux" in r]
    assert aux and all(0 < a < 1 for a in aux)
    # the final checkpoint round-trips as an MoE model
    from minillm.checkpoint import load_model

    back = load_model(res.checkpoints[-1])
    assert back.args.use_moe and back.args.n_routed_experts == 4


def test_cli_flags_build_moe_args():
    from minillm.train.cli import parser

    job = parser().parse(
        ["--data_path", "x.jsonl", *TINY_FLAGS, "--use_moe", "--n_routed_experts", "8"]
        + ["--num_experts_per_tok", "3", "--no-seq_aux", "--aux_loss_alpha", "0.01"]
    )
    a = job.model.args(6400)
    assert (a.use_moe, a.n_routed_experts, a.num_experts_per_tok) == (True, 8, 3)
    assert (a.seq_aux, a.aux_loss_alpha, a.n_shared_experts, a.norm_topk_prob) == (
        False,
        0.01,
        1,
        True,
    )
    dense = parser().parse(["--data_path", "x", *TINY_FLAGS]).model.args(6400)
    assert not dense.use_moe
    p = ModelArgs.from_preset("moe")
    assert p.use_moe and p.n_routed_experts == 4 and p.num_experts_per_tok == 2
    with pytest.raises(ValueError, match="num_experts_per_tok"):
        ModelArgs(**{**TINY, **MOE, "num_experts_per_tok": 5})


def test_stats_reports_total_and_active(capsys):
    from minillm.model import Model, num_params
    from minillm.stats import flops_per_token, param_breakdown
    from minillm.stats import main as stats_main

    a = ModelArgs.from_preset("moe")
    p = param_breakdown(a)
    assert p["total"] == num_params(Model(a))
    dense = param_breakdown(ModelArgs.from_preset("tiny"))
    assert p["active"] < p["total"] and abs(p["active"] - dense["total"]) < 0.01 * dense["total"]
    fl = flops_per_token(a, 64)
    assert fl["linear"] == 2 * a.num_hidden_layers * (p["active_per_layer"] - p["layer.norms"])
    stats_main(["--preset", "moe", "--device", "H200"])
    out = capsys.readouterr().out
    assert "active / token (MoE)" in out and f"{p['active']:,}" in out
    assert f"{p['total']:,}" in out


def test_hf_export_mixtral_parity(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from minillm.checkpoint import save_model
    from minillm.export import export_hf

    model, tok = make_tiny(seed=6, **{**MOE, "n_shared_experts": 0})
    ck = save_model(tmp_path / "ck", model, tok)
    out = export_hf(ck, tmp_path / "hf")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["MixtralForCausalLM"] and cfg["num_local_experts"] == 4
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert type(hf).__name__ == "MixtralForCausalLM"
    ids = [1, 30, 31, 32, 77, 5, 9, 120]
    with torch.no_grad():
        got = hf(torch.tensor([ids])).logits[0].numpy()
    want = np.array(model(mx.array([ids]))[0])
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


def test_export_refuses_what_does_not_fit(tmp_path):
    from minillm.checkpoint import save_model
    from minillm.export import export_hf
    from minillm.export import main as export_main

    model, tok = make_tiny(seed=7, **MOE)  # one shared expert: no transformers architecture
    ck = save_model(tmp_path / "ck", model, tok)
    with pytest.raises(ValueError, match="unsupported: n_shared_experts=1"):
        export_hf(ck, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    model, tok = make_tiny(seed=7, **{**MOE, "n_shared_experts": 0, "norm_topk_prob": False})
    ck2 = save_model(tmp_path / "ck2", model, tok)
    with pytest.raises(ValueError, match="norm_topk_prob=false"):
        export_hf(ck2, tmp_path / "hf")
    with pytest.raises(ValueError, match="GGUF export of MoE"):
        export_main(["gguf", str(ck), str(tmp_path / "m.gguf")])


def test_transformers_refuses_a_raw_moe_folder(tmp_path):
    """A MoE folder names its own model_type: transformers stops with an error instead of
    loading it as Llama with freshly initialised MLPs."""
    from transformers import AutoModelForCausalLM

    from minillm.checkpoint import save_model

    model, tok = make_tiny(seed=3, **MOE)
    out = save_model(tmp_path / "moe", model, tok)
    assert json.loads((out / "config.json").read_text())["model_type"] == "minillm_moe"
    with pytest.raises((ValueError, KeyError)):
        AutoModelForCausalLM.from_pretrained(out)
