"""Decode throughput: MiniLLM's batched KV-cache `generate` vs mlx-lm on the same weights.

    python launch/bench_generate.py --preset 200mb --dtype bfloat16 --batch_sizes 1,8,32

Builds a seeded model, saves it as a checkpoint folder, loads that folder in both MiniLLM and
mlx-lm (`generate_step` at batch 1, `batch_generate` above), decodes `--new_tokens` greedy
tokens after random prompts of `--prompt_len` tokens and prints aggregate decode tokens/s and
the ratio per batch size. mlx-lm is reported as skipped when it is not installed.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import mlx.core as mx
import numpy as np


def time_ours(model, tok, prompts, new_tokens: int) -> float:
    from minillm.generate import generate

    out = generate(model, tok, prompts, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    n = sum(len(g.tokens) for g in out)
    return n / sum(g.gen_time for g in out[:1])


def time_mlx_lm(path: str, prompts, new_tokens: int) -> float:
    from mlx_lm import load
    from mlx_lm.generate import batch_generate, generate_step

    model, tok = load(path)
    if len(prompts) == 1:
        gen = generate_step(mx.array(prompts[0]), model, max_tokens=new_tokens)
        next(gen)  # prefill + first token, not timed (as ours)
        t = time.perf_counter()
        n = 1 + sum(1 for _ in gen)
        return (n - 1) / (time.perf_counter() - t)
    r = batch_generate(model, tok, prompts, max_tokens=new_tokens)
    return r.stats.generation_tps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="200mb")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--prompt_len", type=int, default=128)
    p.add_argument("--new_tokens", type=int, default=256)
    p.add_argument("--batch_sizes", default="1,8")
    p.add_argument("--runs", type=int, default=2, help="best of N runs")
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args(argv)

    from minillm.checkpoint import cast_model, load, parse_dtype, save_model
    from minillm.model import Model, ModelArgs, init_weights
    from minillm.tokenizer import load_tokenizer

    tok = load_tokenizer()
    model = Model(ModelArgs.from_preset(ns.preset, vocab_size=tok.vocab_size))
    init_weights(model, ns.seed)
    cast_model(model, parse_dtype(ns.dtype))
    tmp = tempfile.mkdtemp(prefix="bench_generate_")
    save_model(f"{tmp}/ckpt", model, tok)
    model, tok = load(f"{tmp}/ckpt")
    rng = np.random.default_rng(ns.seed)
    print(
        f"device={mx.default_device()} preset={ns.preset} dtype={ns.dtype} "
        f"prompt={ns.prompt_len} new={ns.new_tokens} mlx={mx.__version__}"
    )
    print(f"{'batch':>5} | {'minillm tok/s':>13} | {'mlx-lm tok/s':>12} | ratio")
    for b in [int(x) for x in ns.batch_sizes.split(",")]:
        prompts = rng.integers(3, tok.vocab_size, (b, ns.prompt_len)).tolist()
        ours = max(time_ours(model, tok, prompts, ns.new_tokens) for _ in range(ns.runs))
        try:
            theirs = max(time_mlx_lm(f"{tmp}/ckpt", prompts, ns.new_tokens) for _ in range(ns.runs))
            ratio = f"{ours / theirs:.2f}x ratio vs mlx-lm"
            theirs_s = f"{theirs:12.0f}"
        except ImportError:
            theirs_s, ratio = f"{'skipped':>12}", "mlx-lm not installed"
        print(f"{b:>5} | {ours:13.0f} | {theirs_s} | {ratio}", flush=True)


if __name__ == "__main__":
    main()
