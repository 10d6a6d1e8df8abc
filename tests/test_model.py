"""Model shape, presets, init determinism and logit parity with transformers' LlamaForCausalLM."""

from __future__ import annotations

import json

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import make_tiny

from minillm.checkpoint import load, save_model
from minillm.model import Model, ModelArgs, init_weights, make_mask, num_params


def test_preset_param_counts():
    assert num_params(Model(ModelArgs.from_preset("tiny"))) == 4_589_824
    big = ModelArgs.from_preset("200mb")
    assert (
        big.hidden_size,
        big.num_hidden_layers,
        big.num_attention_heads,
        big.num_key_value_heads,
        big.head_dim,
        big.intermediate_size,
        big.vocab_size,
    ) == (768, 15, 12, 3, 64, 2048, 6400)
    n = num_params(Model(big))
    assert n == 97_836_288
    assert 190e6 < 2 * n < 200e6  # about 196 MB in bf16


def test_preset_overrides_and_errors():
    a = ModelArgs.from_preset("tiny", num_hidden_layers=2, hidden_size=None)
    assert (a.num_hidden_layers, a.hidden_size) == (2, 256)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ModelArgs.from_preset("huge")
    with pytest.raises(ValueError, match="num_key_value_heads"):
        ModelArgs(hidden_size=64, num_attention_heads=4, num_key_value_heads=3)
    assert (
        ModelArgs.from_dict(
            {"hidden_size": 64, "num_attention_heads": 4, "some_future_key": 1}
        ).hidden_size
        == 64
    )


def test_no_biases_tied_head_and_hf_names():
    model, _ = make_tiny()
    names = [k for k, _ in nn.utils.tree_flatten(model.parameters())]
    assert "model.embed_tokens.weight" in names and "model.norm.weight" in names
    assert "model.layers.1.self_attn.k_proj.weight" in names
    assert "model.layers.0.post_attention_layernorm.weight" in names
    assert not [n for n in names if "bias" in n or "lm_head" in n]


def test_init_is_deterministic_under_seed():
    a, _ = make_tiny(seed=3)
    b, _ = make_tiny(seed=3)
    c, _ = make_tiny(seed=4)
    fa, fb, fc = (dict(nn.utils.tree_flatten(m.parameters())) for m in (a, b, c))
    assert all(mx.array_equal(fa[k], fb[k]) for k in fa)
    assert not mx.array_equal(fa["model.embed_tokens.weight"], fc["model.embed_tokens.weight"])


def test_causal_and_padding_masks():
    assert make_mask(5) == "causal" and make_mask(1, offset=4) is None
    m = make_mask(2, offset=2, pad=mx.array([[True, False, False, False]]))
    assert m.shape == (1, 1, 2, 4)
    assert m[0, 0].tolist() == [[False, True, True, False], [False, True, True, True]]


def hf_logits(path, ids: np.ndarray) -> np.ndarray:
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        return hf(torch.from_numpy(ids)).logits.numpy()


@pytest.mark.parametrize(
    "shape",
    [
        dict(preset="tiny"),
        dict(preset="200mb", num_hidden_layers=2),
        dict(preset="tiny", num_hidden_layers=1, num_key_value_heads=1),  # multi-query
    ],
)
def test_logits_match_transformers_llama(tmp_path, shape):
    _, tok = make_tiny()
    preset = shape.pop("preset")
    model = Model(ModelArgs.from_preset(preset, vocab_size=tok.vocab_size, **shape))
    init_weights(model, seed=7)
    path = save_model(tmp_path / "ckpt", model, tok)
    prompt = "MiniLLM 用 MLX 训练小模型。" * 6
    ids = np.array([tok.encode(prompt)[:96], tok.encode(prompt[::-1])[:96]])
    assert ids.shape[1] >= 64
    ours = np.array(model(mx.array(ids)))
    ref = hf_logits(path, ids)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4


def test_bf16_saves_and_reloads_as_bf16(tmp_path):
    model, tok = make_tiny(dtype="bfloat16")
    path = save_model(tmp_path / "bf16", model, tok)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["torch_dtype"] == "bfloat16"
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["tie_word_embeddings"]
    with open(path / "model.safetensors", "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert header["__metadata__"] == {"format": "mlx"}
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"BF16"}
    loaded, _ = load(path)
    flat = dict(nn.utils.tree_flatten(loaded.parameters()))
    assert {v.dtype for v in flat.values()} == {mx.bfloat16}
    orig = dict(nn.utils.tree_flatten(model.parameters()))
    assert all(mx.array_equal(orig[k], flat[k]) for k in orig)


def test_checkpoint_folder_is_an_hf_model_folder(tiny_ckpt):
    from pathlib import Path

    files = {p.name for p in Path(tiny_ckpt).iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= files
    gen = json.loads((Path(tiny_ckpt) / "generation_config.json").read_text())
    assert 2 in gen["eos_token_id"] and gen["pad_token_id"] == 0
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(tiny_ckpt)
    model, tok = load(tiny_ckpt)
    text = "你好, MiniLLM!"
    assert hf_tok.encode(text, add_special_tokens=False) == tok.encode(text)
    ids = np.array([tok.encode("The same weights give the same logits. " * 4)])
    assert np.abs(np.array(model(mx.array(ids))) - hf_logits(tiny_ckpt, ids)).max() <= 1e-4


def test_mlx_lm_loads_the_same_folder(tiny_ckpt):
    mlx_lm = pytest.importorskip("mlx_lm")
    theirs, their_tok = mlx_lm.load(tiny_ckpt)
    ours, tok = load(tiny_ckpt)
    ids = mx.array([tok.encode("mlx-lm opens MiniLLM checkpoints, 也能打开。")])
    assert mx.array_equal(theirs(ids), ours(ids))
    msgs = [{"role": "user", "content": "hi"}]
    assert their_tok.apply_chat_template(
        msgs, add_generation_prompt=True, tokenize=False
    ) == tok.apply_chat_template(msgs, add_generation_prompt=True)


def test_reference_ops_match_fused_kernels():
    model, _ = make_tiny(seed=1)
    ids = mx.random.randint(3, 6400, (2, 40), key=mx.random.key(0))
    pad = mx.array([[True] * 5 + [False] * 35, [False] * 40])
    fused, fused_pad = model(ids), model(ids, pad=pad)
    model.set_fused(False)
    try:
        assert mx.abs(model(ids) - fused).max().item() < 1e-5
        assert mx.abs(model(ids, pad=pad) - fused_pad).max().item() < 1e-5
        cache = model.make_cache()
        model(ids[:, :30], cache)
        step = model(ids[:, 30:31], cache)
        assert mx.abs(step[:, 0] - fused[:, 30]).max().item() < 1e-5
    finally:
        model.set_fused(True)


def test_rms_norm_split_weight_grad_matches_fused():
    """RMSNorm's two-stage weight gradient (inputs of >= 4096 rows) equals mx.fast.rms_norm's."""
    from minillm.model import RMSNorm

    mx.random.seed(3)
    norm = RMSNorm(32, eps=1e-5)
    norm.weight = mx.random.normal((32,))
    x, g = mx.random.normal((2, 2500, 32)), mx.random.normal((2, 2500, 32))

    def grads(fn):
        return mx.grad(lambda x, w: (fn(x, w) * g).sum(), argnums=(0, 1))(x, norm.weight)

    def ours(x, w):
        norm.weight = w
        return norm(x)

    for a, b in zip(grads(ours), grads(lambda x, w: mx.fast.rms_norm(x, w, 1e-5)), strict=True):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        np.array(ours(x, norm.weight)), np.array(mx.fast.rms_norm(x, norm.weight, 1e-5))
    )


def test_swiglu_vjp_matches_autodiff():
    """The training MLP's SwiGLU (a VJP that keeps only gate and up) gives autodiff's values."""
    from minillm.model import swiglu

    mx.random.seed(5)
    g, u, c = (mx.random.normal((64, 48)) * 3 for _ in range(3))

    def grads(fn):
        return mx.grad(lambda g, u: (fn(g, u) * c).sum(), argnums=(0, 1))(g, u)

    ours, ref = grads(swiglu), grads(lambda g, u: nn.silu(g) * u)
    np.testing.assert_allclose(np.array(swiglu(g, u)), np.array(nn.silu(g) * u), rtol=1e-6)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-5)
    bf = [t.astype(mx.bfloat16) for t in (g, u)]
    d = mx.grad(lambda g, u: swiglu(g, u).astype(mx.float32).sum(), argnums=(0, 1))(*bf)
    assert all(t.dtype == mx.bfloat16 for t in d)
