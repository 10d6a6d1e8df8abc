"""`minillm export hf|gguf`: transformers parity, GGUF contents, Modelfile, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

N_NEW = 12
MESSAGES = [{"role": "user", "content": "Tell me about the sea."}]


@pytest.fixture(scope="module")
def lora_dir(tiny_ckpt, tmp_path_factory):
    """A LoRA adapter folder for `tiny_ckpt` with random, non-zero B weights."""
    import mlx.core as mx

    from minillm.checkpoint import load_model
    from minillm.train.lora import LoRALinear, apply_lora, save_adapters

    model = load_model(tiny_ckpt)
    apply_lora(model, r=4, alpha=8.0)
    mx.random.seed(3)
    for block in model.layers:
        for _, m in block.named_modules():
            if isinstance(m, LoRALinear):
                m.lora_b = 0.05 * mx.random.normal(m.lora_b.shape)
    return str(save_adapters(tmp_path_factory.mktemp("lora"), model, base_model=tiny_ckpt))


def minillm_greedy(ckpt: str, adapter_path: str | None = None) -> tuple[list[int], list[int]]:
    from minillm.generate import generate
    from minillm.infer import chat_prompt, load_with_adapters

    model, tok = load_with_adapters(ckpt, adapter_path=adapter_path)
    ids = chat_prompt(tok, MESSAGES)
    gen = generate(model, tok, [ids], max_new_tokens=N_NEW, temperature=0.0)[0]
    return ids, gen.tokens


@pytest.mark.parametrize("with_lora", [False, True])
def test_hf_export_matches_minillm(tiny_ckpt, lora_dir, tmp_path, with_lora):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from minillm.export import export_hf

    adapter = lora_dir if with_lora else None
    out = export_hf(tiny_ckpt, tmp_path / "hf", adapter_path=adapter)
    for f in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert (out / f).is_file()
    ids, want = minillm_greedy(tiny_ckpt, adapter)
    tok = AutoTokenizer.from_pretrained(out)
    hf_ids = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)
    if not isinstance(hf_ids, list):
        hf_ids = hf_ids["input_ids"]
    assert list(hf_ids) == ids
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    x = torch.tensor([ids])
    with torch.no_grad():
        y = model.generate(
            x, attention_mask=torch.ones_like(x), max_new_tokens=N_NEW, do_sample=False
        )
    got = y[0, len(ids) :].tolist()
    stops = {0, 2}
    cut = next((i for i, t in enumerate(got) if t in stops), len(got))
    assert got[:cut] == want
    assert len(want) > 0


def test_hf_export_lora_changes_weights(tiny_ckpt, lora_dir, tmp_path):
    from safetensors.numpy import load_file

    from minillm.export import export_hf

    a = load_file(export_hf(tiny_ckpt, tmp_path / "a") / "model.safetensors")
    b = load_file(export_hf(tiny_ckpt, tmp_path / "b", adapter_path=lora_dir) / "model.safetensors")
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not np.allclose(a[key], b[key])


def test_hf_export_dtype(tiny_ckpt, tmp_path):
    import json

    from safetensors import safe_open

    from minillm.export import export_hf

    out = export_hf(tiny_ckpt, tmp_path / "bf", dtype="bfloat16")
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    with safe_open(out / "model.safetensors", "pt") as f:
        assert f.metadata()["format"] == "pt"
        assert f.get_tensor("model.norm.weight").dtype.is_floating_point
        assert str(f.get_tensor("model.embed_tokens.weight").dtype) == "torch.bfloat16"


def test_permute_round_trip():
    from minillm.export.gguf import permute_qk, unpermute_qk

    w = np.arange(4 * 8 * 3, dtype=np.float32).reshape(4 * 8, 3)
    p = permute_qk(w, 4)
    assert not np.array_equal(p, w)
    np.testing.assert_array_equal(unpermute_qk(p, 4), w)
    # per head, rows [x0..x3 | y0..y3] (rotate-half pairs) become interleaved [x0 y0 x1 y1 ...]
    np.testing.assert_array_equal(p[:8, 0], w[[0, 4, 1, 5, 2, 6, 3, 7], 0])


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_gguf_export(tiny_ckpt, tmp_path, dtype):
    import gguf

    from minillm.checkpoint import load
    from minillm.export import main
    from minillm.export.gguf import gguf_name, unpermute_qk

    out = tmp_path / "m" / "model.gguf"
    assert main(["gguf", tiny_ckpt, str(out), "--dtype", dtype]) == 0
    model, tok = load(tiny_ckpt)
    args = model.args
    r = gguf.GGUFReader(str(out))

    def field(key):
        f = r.fields[key]
        return f.contents()

    assert field("general.architecture") == "llama"
    assert field("llama.block_count") == args.num_hidden_layers
    assert field("llama.embedding_length") == args.hidden_size
    assert field("llama.attention.head_count") == args.num_attention_heads
    assert field("llama.attention.head_count_kv") == args.num_key_value_heads
    assert field("llama.feed_forward_length") == args.intermediate_size
    assert field("llama.rope.freq_base") == pytest.approx(args.rope_theta)
    assert field("tokenizer.ggml.model") == "gpt2"
    assert field("tokenizer.ggml.pre") == "gpt-2"
    tokens = field("tokenizer.ggml.tokens")
    assert len(tokens) == args.vocab_size == tok.vocab_size
    assert tokens[1] == "<|im_start|>" and tokens[2] == "<|im_end|>"
    assert field("tokenizer.ggml.token_type")[:3] == [3, 3, 3]
    assert len(field("tokenizer.ggml.merges")) > 0
    assert field("tokenizer.ggml.bos_token_id") == 1
    assert field("tokenizer.ggml.eos_token_id") == 2
    assert field("tokenizer.ggml.padding_token_id") == 0
    assert "<|im_start|>" in field("tokenizer.chat_template")

    import mlx.core as mx
    import mlx.nn as nn

    want = {
        gguf_name(k): np.array(v.astype(mx.float32))
        for k, v in nn.utils.tree_flatten(model.parameters())
    }
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    assert "output.weight" not in got
    for name, w in want.items():
        t = got[name]
        # GGUF lists dims fastest-first; the data comes back in numpy (row-major) order
        assert tuple(int(d) for d in reversed(t.shape)) == w.shape
        data = np.asarray(t.data).reshape(w.shape).astype(np.float32)
        if ".attn_q." in name:
            data = unpermute_qk(data, args.num_attention_heads)
        elif ".attn_k." in name:
            data = unpermute_qk(data, args.num_key_value_heads)
        if dtype == "f32" or w.ndim == 1:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            np.testing.assert_array_equal(data, w, err_msg=name)
        else:
            assert t.tensor_type == gguf.GGMLQuantizationType.F16
            np.testing.assert_array_equal(data, w.astype(np.float16).astype(np.float32))

    modelfile = (out.parent / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model.gguf\n")
    assert "<|im_start|>{{ .Role }}" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile


def test_gguf_tokens_match_tokenizer(tiny_ckpt, tmp_path):
    import gguf

    from minillm.export.gguf import export_gguf
    from minillm.tokenizer import load_tokenizer

    out = export_gguf(tiny_ckpt, tmp_path / "t.gguf", dtype="f32")
    tokens = gguf.GGUFReader(str(out)).fields["tokenizer.ggml.tokens"].contents()
    tok = load_tokenizer(tiny_ckpt)
    for i in (0, 5, 100, 1000, tok.vocab_size - 1):
        assert tok.token_to_id(tokens[i]) == i


def test_export_bad_input(tiny_ckpt, tmp_path):
    from minillm.export import export_hf, main
    from minillm.export.gguf import export_gguf

    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_hf(tmp_path / "nope", tmp_path / "o")
    with pytest.raises(ValueError, match="unknown dtype"):
        export_hf(tiny_ckpt, tmp_path / "o", dtype="int8")
    with pytest.raises(ValueError, match="unknown GGUF dtype"):
        export_gguf(tiny_ckpt, tmp_path / "o.gguf", dtype="q4")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(ValueError, match="--force"):
        export_hf(tiny_ckpt, busy)
    assert main(["hf", tiny_ckpt, str(busy), "--force"]) == 0
    assert (busy / "config.json").is_file() and not (busy / "x").exists()
    g = tmp_path / "g.gguf"
    g.write_text("x")
    with pytest.raises(ValueError, match="--force"):
        export_gguf(tiny_ckpt, g)
    with pytest.raises(ValueError, match="checkpoint folder itself"):
        export_hf(tiny_ckpt, tiny_ckpt, force=True)
    assert Path(tiny_ckpt, "config.json").is_file()


def gguf_forward(path, ids: list[int]) -> np.ndarray:
    """Last-position logits of a LLaMA GGUF file in numpy, with GGML's interleaved RoPE
    (llama.cpp's LLAMA_ROPE_TYPE_NORM): checks the q/k permutation, not only its inverse."""
    import gguf

    r = gguf.GGUFReader(str(path))
    f = {k: r.fields[k].contents() for k in r.fields if k.startswith("llama.")}
    W = {
        t.name: np.asarray(t.data).astype(np.float64).reshape(tuple(reversed(t.shape.tolist())))
        for t in r.tensors
    }
    nh, nkv = f["llama.attention.head_count"], f["llama.attention.head_count_kv"]
    eps, base = f["llama.attention.layer_norm_rms_epsilon"], f["llama.rope.freq_base"]
    T = len(ids)

    def norm(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope(x):  # x [T, H, D]; rotates adjacent pairs (x0, x1), (x2, x3), ...
        d = x.shape[-1]
        ang = np.arange(T)[:, None] * base ** (-np.arange(0, d, 2) / d)[None]
        c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * c - b * s, a * s + b * c
        return out

    x = W["token_embd.weight"][ids]
    for i in range(f["llama.block_count"]):
        p = f"blk.{i}."
        h = norm(x, W[p + "attn_norm.weight"])
        q = rope((h @ W[p + "attn_q.weight"].T).reshape(T, nh, -1))
        k = rope((h @ W[p + "attn_k.weight"].T).reshape(T, nkv, -1))
        v = (h @ W[p + "attn_v.weight"].T).reshape(T, nkv, -1)
        k, v = np.repeat(k, nh // nkv, 1), np.repeat(v, nh // nkv, 1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(q.shape[-1])
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", a, v).reshape(T, -1) @ W[p + "attn_output.weight"].T
        h = norm(x, W[p + "ffn_norm.weight"])
        g = h @ W[p + "ffn_gate.weight"].T
        x = (
            x
            + ((g / (1 + np.exp(-g))) * (h @ W[p + "ffn_up.weight"].T)) @ W[p + "ffn_down.weight"].T
        )
    x = norm(x[-1], W["output_norm.weight"])
    return x @ W.get("output.weight", W["token_embd.weight"]).T


def test_gguf_numpy_forward_matches_minillm(tiny_ckpt, lora_dir, tmp_path):
    import mlx.core as mx

    from minillm.export.gguf import export_gguf
    from minillm.infer import chat_prompt, load_with_adapters

    model, tok = load_with_adapters(tiny_ckpt, adapter_path=lora_dir)
    ids = chat_prompt(tok, MESSAGES)
    want = np.array(model(mx.array([ids]))[0, -1])
    out = export_gguf(tiny_ckpt, tmp_path / "l.gguf", adapter_path=lora_dir, dtype="f32")
    got = gguf_forward(out, ids)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(want).max() > 1e-2


@pytest.mark.parametrize("fmt", ["hf", "gguf"])
@pytest.mark.parametrize(
    "kind,phrase", [("no_config", "config.json is missing"), ("truncated", "truncated")]
)
def test_export_corrupt_checkpoint_one_line_error(tiny_ckpt, tmp_path, capsys, fmt, kind, phrase):
    import shutil

    from minillm import cli

    bad = tmp_path / kind
    shutil.copytree(tiny_ckpt, bad)
    if kind == "no_config":
        (bad / "config.json").unlink()
    else:
        data = (bad / "model.safetensors").read_bytes()
        (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    out = tmp_path / ("out.gguf" if fmt == "gguf" else "out")
    with pytest.raises(SystemExit) as e:
        cli.main(["export", fmt, str(bad), str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("minillm export: error: ") and phrase in err
    assert not out.exists()


def test_gguf_runs_in_llama_cpp(tiny_ckpt, lora_dir, tmp_path):
    pytest.importorskip("llama_cpp")
    from launch.bench_gguf import llama_cpp_run, minillm_run
    from minillm.export.gguf import export_gguf
    from minillm.infer import chat_prompt, load_with_adapters

    model, tok = load_with_adapters(tiny_ckpt, adapter_path=lora_dir)
    ids = chat_prompt(tok, MESSAGES)
    text = tok.apply_chat_template(MESSAGES, add_generation_prompt=True)
    want_logits, want = minillm_run(model, tok, ids, N_NEW)
    out = export_gguf(tiny_ckpt, tmp_path / "m.gguf", adapter_path=lora_dir, dtype="f32")
    lc_ids, logits, got = llama_cpp_run(out, ids, text, N_NEW, tok.eos_ids, kv_f32=True)
    assert lc_ids == ids
    np.testing.assert_allclose(logits, want_logits, atol=1e-4)
    assert got == want
