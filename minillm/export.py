"""`minillm export hf|gguf CKPT OUT`: standalone model files for other runtimes.

`hf` writes a Hugging Face folder (LoRA fused) that `transformers.AutoModelForCausalLM` loads;
`gguf` writes a LLaMA-architecture GGUF file with the tokenizer embedded, for llama.cpp, plus a
`Modelfile` beside it for `ollama create NAME -f Modelfile`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path


def check_out(out: Path, force: bool, is_dir: bool) -> None:
    if not out.exists():
        return
    if is_dir and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder; choose another OUT")
    if not is_dir and out.is_dir():
        raise IsADirectoryError(f"{out} is a folder; OUT must be a .gguf file path")
    if not force and (not is_dir or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not empty; pass --force to overwrite it")


def check_ckpt(ckpt: str | os.PathLike, out: Path) -> Path:
    from minillm.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(ckpt)
    if not path.is_dir():
        raise FileNotFoundError(
            f"checkpoint folder {path} does not exist; pass a folder written by `minillm init` "
            "or `minillm train`"
        )
    if out.resolve() == path.resolve():
        raise ValueError(f"OUT {out} is the checkpoint folder itself; choose another path")
    return path


def export_hf(
    ckpt: str | os.PathLike,
    out_dir: str | os.PathLike,
    adapter_path: str | None = None,
    dtype: str | None = None,
    tokenizer_path: str | None = None,
    force: bool = False,
) -> Path:
    """Write a standalone transformers folder: config.json, model.safetensors (LoRA fused),
    generation_config.json and the tokenizer files. `dtype` defaults to the checkpoint's."""
    import mlx.core as mx
    import mlx.nn as nn

    from minillm.checkpoint import hf_config, model_dtype, parse_dtype, write_json
    from minillm.infer import load_with_adapters

    if dtype is not None:
        parse_dtype(dtype)
    out = Path(out_dir)
    path = check_ckpt(ckpt, out)
    check_out(out, force, is_dir=True)
    model, tokenizer = load_with_adapters(str(path), tokenizer_path, dtype, adapter_path)
    args, dt = model.args, model_dtype(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)
    try:
        write_json(tmp / "config.json", hf_config(args, dt))
        weights = dict(nn.utils.tree_flatten(model.parameters()))
        mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "pt"})
        write_json(
            tmp / "generation_config.json",
            {
                "bos_token_id": args.bos_token_id,
                "eos_token_id": sorted({args.eos_token_id, *tokenizer.eos_ids}),
                "pad_token_id": args.pad_token_id,
                "do_sample": True,
                "temperature": 0.7,
                "top_p": 0.9,
            },
        )
        tokenizer.save(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="minillm export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="format", required=True, metavar="{hf,gguf}")
    hf = sub.add_parser("hf", help="a transformers folder (config.json + model.safetensors)")
    gg = sub.add_parser("gguf", help="a LLaMA GGUF file for llama.cpp / ollama (+ Modelfile)")
    for s, out_help in ((hf, "folder to write"), (gg, "file to write, e.g. model.gguf")):
        s.add_argument("checkpoint", help="checkpoint folder (or a run folder: newest checkpoint)")
        s.add_argument("out", help=out_help)
        s.add_argument(
            "--adapter_path", default=None, help="LoRA adapter folder or run, fused first"
        )
        s.add_argument("--tokenizer_path", default=None, help="default: the checkpoint's")
        s.add_argument("--force", action="store_true", help="overwrite an existing OUT")
    hf.add_argument(
        "--dtype", default=None, help="float32 | bfloat16 | float16 (default: the checkpoint's)"
    )
    gg.add_argument("--dtype", default="f16", help="f16 | f32 (default f16; norms stay f32)")
    ns = p.parse_args(argv)
    if ns.format == "hf":
        if ns.dtype is not None:
            from minillm.checkpoint import parse_dtype

            parse_dtype(ns.dtype)
        out = export_hf(
            ns.checkpoint, ns.out, ns.adapter_path, ns.dtype, ns.tokenizer_path, ns.force
        )
        print(f"[export] {ns.checkpoint} -> {out} (transformers)")
    else:
        from minillm.export_gguf import export_gguf

        out = export_gguf(
            ns.checkpoint, ns.out, ns.adapter_path, ns.dtype, ns.tokenizer_path, ns.force
        )
        print(f"[export] {ns.checkpoint} -> {out} (+ {out.parent / 'Modelfile'})")
    return 0


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
