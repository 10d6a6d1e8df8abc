"""LLaMA-architecture GGUF export (the `gguf` package), as llama.cpp's convert_hf_to_gguf.py does.

q_proj / k_proj rows are permuted from Hugging Face's rotate-half RoPE layout to GGML's
interleaved one (`permute_qk`). The byte-level BPE tokenizer is stored as model `gpt2` with
pre-tokenizer `gpt-2`: llama.cpp maps that name to its GPT-2 split regex
(`'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)`), the regex of
our `ByteLevel(use_regex=True)` pre-tokenizer. Norm weights stay float32, like the converter's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from minillm.export.checks import check_ckpt, check_out

GGUF_DTYPES = {"f16": np.float16, "f32": np.float32, "float16": np.float16, "float32": np.float32}

MODELFILE = '''FROM ./{name}
TEMPLATE """{{{{- range .Messages }}}}<|im_start|>{{{{ .Role }}}}
{{{{ .Content }}}}<|im_end|>
{{{{ end }}}}<|im_start|>assistant
"""
PARAMETER stop "<|im_end|>"
PARAMETER stop "<|endoftext|>"
'''

TENSOR_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half row order -> GGML interleaved RoPE row order (per head)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of `permute_qk`."""
    return (
        w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def gguf_name(hf_name: str) -> str:
    """The GGUF tensor name of a Hugging Face LLaMA weight name."""
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.split(".")
    if parts[:2] != ["model", "layers"] or parts[-1] != "weight":
        raise ValueError(f"no GGUF name for weight {hf_name!r}")
    return f"blk.{parts[2]}.{TENSOR_NAMES['.'.join(parts[3:-1])]}.weight"


def gguf_tensors(model, dtype=np.float16) -> dict[str, np.ndarray]:
    """GGUF name -> numpy array for every weight of `model` (q/k permuted, norms float32)."""
    import mlx.core as mx
    import mlx.nn as nn

    args = model.args
    out = {}
    for k, v in nn.utils.tree_flatten(model.parameters()):
        w = np.array(v.astype(mx.float32))
        if k.endswith("q_proj.weight"):
            w = permute_qk(w, args.num_attention_heads)
        elif k.endswith("k_proj.weight"):
            w = permute_qk(w, args.num_key_value_heads)
        out[gguf_name(k)] = w if w.ndim == 1 else w.astype(dtype)
    return out


def token_types(tokenizer) -> tuple[list[str], list[int]]:
    from gguf import TokenType

    tk = tokenizer._tk
    if tk is None:
        raise ValueError("GGUF export needs a tokenizers `tokenizer.json` (byte-level BPE)")
    vocab = tk.get_vocab(with_added_tokens=True)
    n = tokenizer.vocab_size
    by_id = {i: t for t, i in vocab.items()}
    added = tk.get_added_tokens_decoder()
    tokens, types = [], []
    for i in range(n):
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        if i not in by_id:
            types.append(TokenType.UNUSED)
        elif i in added:
            types.append(TokenType.CONTROL if added[i].special else TokenType.USER_DEFINED)
        else:
            types.append(TokenType.NORMAL)
    return tokens, [int(t) for t in types]


def bpe_merges(tokenizer) -> list[str]:
    spec = json.loads(tokenizer._tk.to_str())
    model, pre = spec["model"], spec.get("pre_tokenizer") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"GGUF export supports BPE tokenizers, not {model.get('type')!r}")
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        raise ValueError(
            f"GGUF export needs a ByteLevel(use_regex=True) pre-tokenizer (llama.cpp 'gpt-2'), "
            f"not {pre.get('type')!r}; export to transformers (`minillm export hf`) instead"
        )
    return [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]


def write_gguf(
    path: str | os.PathLike, model, tokenizer, dtype=np.float16, name: str | None = None
) -> Path:
    """Write `model` + `tokenizer` to the GGUF file `path` (LLaMA architecture)."""
    import gguf

    args = model.args
    path = Path(path)
    tokens, types = token_types(tokenizer)
    if len(tokens) < args.vocab_size:
        tokens += [f"[PAD{i}]" for i in range(len(tokens), args.vocab_size)]
        types += [int(gguf.TokenType.UNUSED)] * (args.vocab_size - len(types))
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    w.add_name(name or path.stem)
    w.add_file_type(
        gguf.LlamaFileType.MOSTLY_F16 if dtype == np.float16 else gguf.LlamaFileType.ALL_F32
    )
    w.add_vocab_size(args.vocab_size)
    w.add_context_length(args.max_position_embeddings)
    w.add_embedding_length(args.hidden_size)
    w.add_block_count(args.num_hidden_layers)
    w.add_feed_forward_length(args.intermediate_size)
    w.add_head_count(args.num_attention_heads)
    w.add_head_count_kv(args.num_key_value_heads)
    w.add_rope_freq_base(float(args.rope_theta))
    w.add_layer_norm_rms_eps(float(args.rms_norm_eps))
    w.add_rope_dimension_count(args.head_dim)
    if args.head_dim * args.num_attention_heads != args.hidden_size:
        w.add_key_length(args.head_dim)
        w.add_value_length(args.head_dim)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(bpe_merges(tokenizer))
    for add, i in (
        (w.add_bos_token_id, tokenizer.bos_id),
        (w.add_eos_token_id, tokenizer.eos_id),
        (w.add_pad_token_id, tokenizer.pad_id),
    ):
        if i is not None:
            add(int(i))
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    w.add_chat_template(tokenizer.chat_template)
    for name, t in gguf_tensors(model, dtype).items():
        w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def export_gguf(
    ckpt: str | os.PathLike,
    out: str | os.PathLike,
    adapter_path: str | None = None,
    dtype: str = "f16",
    tokenizer_path: str | None = None,
    force: bool = False,
) -> Path:
    """Export checkpoint `ckpt` (LoRA fused) to the GGUF file `out` and a Modelfile beside it."""
    from minillm.checkpoint import load_with_adapters

    if dtype not in GGUF_DTYPES:
        raise ValueError(f"unknown GGUF dtype {dtype!r}; use f16 or f32")
    out = Path(out)
    path = check_ckpt(ckpt, out)
    check_out(out, force, is_dir=False)
    model, tokenizer = load_with_adapters(str(path), tokenizer_path, None, adapter_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        write_gguf(tmp, model, tokenizer, GGUF_DTYPES[dtype], out.stem)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    (out.parent / "Modelfile").write_text(MODELFILE.format(name=out.name), encoding="utf-8")
    return out
