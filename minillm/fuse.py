"""`minillm fuse`: merge LoRA adapters into their base model and save a full checkpoint folder.

Like `mlx_lm.fuse --model BASE --adapter-path DIR --save-path OUT`, with snake_case flags.
`--adapter_path` is a folder holding adapters.safetensors + adapter_config.json: a LoRA
training checkpoint (`OUT/checkpoints/step_XXXXXXXX`), or a LoRA run folder (its newest
checkpoint is used). `--model` defaults to the base model recorded in adapter_config.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from minillm.train.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS


def find_adapters(path: str | os.PathLike) -> Path:
    """The folder with the adapter files: `path` itself or the newest checkpoint of run `path`."""
    from minillm.train.state import find_checkpoint

    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(
            f"adapter folder {p} does not exist; pass a folder written by a "
            "LoRA run (`minillm train --lora_r R`)"
        )
    if not (p / ADAPTER_CONFIG).is_file():
        ckpt = find_checkpoint(p)
        if ckpt is not None and (ckpt / ADAPTER_CONFIG).is_file():
            p = ckpt
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (p / name).is_file():
            raise FileNotFoundError(
                f"{p / name} is missing; pass a folder holding "
                f"{ADAPTER_WEIGHTS} and {ADAPTER_CONFIG} (a LoRA checkpoint)"
            )
    return p


def adapter_base(path: str | os.PathLike) -> str | None:
    """The base model recorded in `path/adapter_config.json` (None if it has none)."""
    cfg_path = Path(path) / ADAPTER_CONFIG
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path}: invalid JSON ({e.msg}); re-save the adapters") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_path}: top level is not a JSON object; re-save the adapters")
    return cfg.get("base_model") or cfg.get("model") or None


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
    from minillm.infer import load_with_adapters

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
