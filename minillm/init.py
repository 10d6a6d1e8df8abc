"""`minillm init`: write a freshly initialised checkpoint folder."""

from __future__ import annotations

import argparse
import dataclasses

from minillm.config.model import ModelSpec
from minillm.models import ModelArgs


def add_model_args(p: argparse.ArgumentParser, preset: str = "tiny") -> None:
    """Flags shared by every verb that builds a model from a preset (`ModelSpec`'s fields)."""
    from minillm.config.flags import add_flags

    add_flags(p, ModelSpec(preset=preset), suppress=False)


def model_args_from(ns: argparse.Namespace, vocab_size: int) -> ModelArgs:
    names = [f.name for f in dataclasses.fields(ModelSpec)]
    return ModelSpec(**{k: getattr(ns, k, None) for k in names}).args(vocab_size)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="minillm init", description=__doc__)
    add_model_args(p)
    p.add_argument("--out_dir", required=True, help="checkpoint folder to write")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--dtype", default="bfloat16", help="float32 | bfloat16 | float16")
    p.add_argument("--tokenizer_path", default=None, help="HF tokenizer folder (default: built-in)")
    ns = p.parse_args(argv)

    from minillm.checkpoint import cast_model, load_or_init, parse_dtype, save_model
    from minillm.models import num_params

    dtype = parse_dtype(ns.dtype)
    model, tokenizer = load_or_init(None, ns.tokenizer_path, lambda v: model_args_from(ns, v), ns.seed)  # fmt: skip
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
