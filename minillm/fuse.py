"""`minillm fuse`: merge LoRA adapters into their base model and save a full checkpoint folder.

Like `mlx_lm.fuse --model BASE --adapter-path DIR --save-path OUT`, with snake_case flags.
`--adapter_path` is a folder holding adapters.safetensors + adapter_config.json: a LoRA
training checkpoint (`OUT/checkpoints/step_XXXXXXXX`), or a LoRA run folder (its newest
checkpoint is used). `--model` defaults to the base model recorded in adapter_config.json.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from minillm.checkpoint import adapter_base, find_adapters, load_with_adapters  # noqa: F401
from minillm.train.lora import ADAPTER_CONFIG


def resolve_base(model: str | None, adapters: Path) -> str:
    base = model or adapter_base(adapters)
    if not base:
        raise ValueError(f"{adapters / ADAPTER_CONFIG} names no base model; pass --model BASE")
    return base


def fuse_adapters(
    model_path: str,
    adapter_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    dtype: str | None = None,
    tokenizer_path: str | None = None,
) -> Path:
    """Load `model_path`, fuse the adapters of `adapter_path` and save the result to `out_dir`."""
    from minillm.checkpoint import save_model

    if Path(out_dir).resolve() == Path(model_path).resolve():
        raise ValueError(f"--out_dir {out_dir} is the base model folder; choose another folder")
    model, tokenizer = load_with_adapters(model_path, tokenizer_path, dtype, str(adapter_path))
    return save_model(out_dir, model, tokenizer)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="minillm fuse",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default=None,
        help="base checkpoint folder (default: base_model in adapter_config.json)",
    )
    p.add_argument(
        "--adapter_path",
        required=True,
        help="folder with adapters.safetensors + adapter_config.json, or a LoRA run",
    )
    p.add_argument("--out_dir", required=True, help="checkpoint folder to write")
    p.add_argument(
        "--dtype",
        default=None,
        help="save as float32 | bfloat16 | float16 (default: the base model's)",
    )
    p.add_argument(
        "--tokenizer_path",
        default=None,
        help="tokenizer to save with the model (default: the base model's)",
    )
    ns = p.parse_args(argv)
    if ns.dtype:
        from minillm.checkpoint import parse_dtype

        parse_dtype(ns.dtype)
    adapters = find_adapters(ns.adapter_path)
    base = resolve_base(ns.model, adapters)
    out = fuse_adapters(base, adapters, ns.out_dir, ns.dtype, ns.tokenizer_path)
    print(f"[fuse] {base} + {adapters} -> {out}")
    return 0


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
