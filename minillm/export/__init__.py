"""`minillm export hf|gguf CKPT OUT`: standalone model files for other runtimes.

`hf` writes a Hugging Face folder (LoRA fused) that `transformers.AutoModelForCausalLM` loads;
`gguf` writes a LLaMA-architecture GGUF file with the tokenizer embedded, for llama.cpp, plus a
`Modelfile` beside it for `ollama create NAME -f Modelfile`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minillm.export.checks import check_ckpt, check_moe_export
from minillm.export.gguf import export_gguf
from minillm.export.hf import export_hf

__all__ = ["export_gguf", "export_hf", "main"]


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
        from minillm.checkpoint import read_config

        check_moe_export(read_config(check_ckpt(ns.checkpoint, Path(ns.out))), "gguf")
        out = export_gguf(
            ns.checkpoint, ns.out, ns.adapter_path, ns.dtype, ns.tokenizer_path, ns.force
        )
        print(f"[export] {ns.checkpoint} -> {out} (+ {out.parent / 'Modelfile'})")
    return 0
