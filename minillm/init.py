"""`minillm init`: write a freshly initialised checkpoint folder."""

from __future__ import annotations

import argparse

from minillm.model import PRESETS, ModelArgs

DIM_FLAGS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by every verb that builds a model from a preset."""
    p.add_argument("--preset", default="tiny", help=f"one of {', '.join(PRESETS)}, or custom")
    for name in DIM_FLAGS:
        p.add_argument(f"--{name}", type=int, default=None, help="override the preset")
    p.add_argument("--rope_theta", type=float, default=None)
    p.add_argument("--rms_norm_eps", type=float, default=None)


def model_args_from(ns: argparse.Namespace, vocab_size: int) -> ModelArgs:
    over = {k: getattr(ns, k) for k in (*DIM_FLAGS, "rope_theta", "rms_norm_eps")}
    over["vocab_size"] = over["vocab_size"] or vocab_size
    if ns.preset == "custom":
        return ModelArgs(**{k: v for k, v in over.items() if v is not None})
    return ModelArgs.from_preset(ns.preset, **over)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="minillm init", description=__doc__)
    add_model_args(p)
    p.add_argument("--out_dir", required=True, help="checkpoint folder to write")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--dtype", default="bfloat16", help="float32 | bfloat16 | float16")
    p.add_argument("--tokenizer_path", default=None, help="HF tokenizer folder (default: built-in)")
    ns = p.parse_args(argv)

    from minillm.checkpoint import cast_model, check_vocab, parse_dtype, save_model
    from minillm.model import Model, init_weights, num_params
    from minillm.tokenizer import load_tokenizer

    dtype = parse_dtype(ns.dtype)
    tokenizer = load_tokenizer(ns.tokenizer_path)
    args = model_args_from(ns, tokenizer.vocab_size)
    model = Model(args)
    check_vocab(model, tokenizer, "--vocab_size")
    init_weights(model, ns.seed)
    cast_model(model, dtype)
    out = save_model(ns.out_dir, model, tokenizer)
    n = num_params(model)
    print(
        f"[init] preset={ns.preset} params={n / 1e6:.2f}M dtype={ns.dtype} "
        f"size={n * dtype.size / 2**20:.1f} MiB -> {out}"
    )


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
