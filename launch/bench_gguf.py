"""GGUF parity: a checkpoint exported with `minillm export gguf`, run in llama.cpp, vs MiniLLM.

    python launch/bench_gguf.py --checkpoint /tmp/exp_tiny --dtypes f32,f16 --new_tokens 32

Exports the checkpoint to GGUF (one file per `--dtypes` entry), loads each with
`llama_cpp.Llama` (llama-cpp-python), and on a fixed chat prompt compares: llama.cpp's
tokenization of the rendered prompt with MiniLLM's, the last prompt position's logits (max
absolute difference; llama.cpp keeps its KV cache in f16 unless `--kv_f32`) and `--new_tokens` greedy tokens (argmax decoding in both, stopping at
an end token). Prints one table row per dtype; reports "skipped" when llama_cpp is missing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

PROMPT = "Write a short poem about the sea and the wind."


def llama_cpp_run(
    path: Path, ids: list[int], text: str, new_tokens: int, stops: set[int], kv_f32: bool
):
    from llama_cpp import Llama

    kv = {"type_k": 0, "type_v": 0} if kv_f32 else {}  # GGML_TYPE_F32; llama.cpp's default is f16

    llm = Llama(
        model_path=str(path),
        logits_all=True,
        n_ctx=len(ids) + new_tokens + 8,
        n_batch=512,
        n_threads=2,
        verbose=False,
        **kv,
    )
    lc_ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    llm.reset()
    llm.eval(ids)
    logits = np.array(llm.scores[len(ids) - 1], dtype=np.float32)
    out, nxt = [], int(np.argmax(logits))
    while len(out) < new_tokens and nxt not in stops:
        out.append(nxt)
        llm.eval([nxt])
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    return lc_ids, logits, out


def minillm_run(model, tok, ids: list[int], new_tokens: int):
    import mlx.core as mx

    from minillm.generate import generate

    logits = np.array(model(mx.array([ids]))[0, -1].astype(mx.float32))
    gen = generate(model, tok, [ids], max_new_tokens=new_tokens, temperature=0.0)[0]
    return logits, gen.tokens


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--adapter_path", default=None)
    p.add_argument("--dtypes", default="f32,f16")
    p.add_argument("--new_tokens", type=int, default=32)
    p.add_argument("--prompt", default=PROMPT)
    p.add_argument("--kv_f32", action="store_true", help="float32 KV cache in llama.cpp")
    ns = p.parse_args(argv)
    try:
        import llama_cpp
    except ImportError:
        print("llama.cpp: skipped (llama_cpp is not importable; pip install llama-cpp-python)")
        return 0

    from minillm.checkpoint import load_with_adapters
    from minillm.export.gguf import export_gguf
    from minillm.infer import chat_prompt

    model, tok = load_with_adapters(ns.checkpoint, adapter_path=ns.adapter_path)
    messages = [{"role": "user", "content": ns.prompt}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True)
    ids = chat_prompt(tok, messages)
    ref_logits, ref_tokens = minillm_run(model, tok, ids, ns.new_tokens)
    print(
        f"llama-cpp-python {llama_cpp.__version__}; checkpoint {ns.checkpoint}; "
        f"prompt {len(ids)} tokens; MiniLLM greedy: {len(ref_tokens)} tokens"
    )
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for dtype in ns.dtypes.split(","):
            path = export_gguf(
                ns.checkpoint, Path(d) / f"model-{dtype}.gguf", ns.adapter_path, dtype
            )
            lc_ids, logits, tokens = llama_cpp_run(
                path, ids, text, ns.new_tokens, tok.eos_ids, ns.kv_f32
            )
            same = next(
                (i for i, (a, b) in enumerate(zip(tokens, ref_tokens, strict=False)) if a != b),
                min(len(tokens), len(ref_tokens)),
            )
            rows.append(
                (
                    dtype,
                    f"{path.stat().st_size / 2**20:.1f}",
                    "yes" if lc_ids == ids else "NO",
                    f"{np.abs(logits - ref_logits).max():.2e}",
                    f"{float(np.abs(ref_logits).max()):.2f}",
                    "yes" if int(np.argmax(logits)) == int(np.argmax(ref_logits)) else "NO",
                    f"{same}/{len(ref_tokens)}" + ("" if tokens == ref_tokens else " (differ)"),
                )
            )
    head = (
        "gguf",
        "MiB",
        "same prompt ids",
        "max |dlogit|",
        "max |logit|",
        "same argmax",
        "greedy",
    )
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
