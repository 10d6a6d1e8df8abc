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


def moe_unsupported(args) -> str | None:
    """Why an MoE config has no matching transformers architecture (None: Mixtral fits).

    Mixtral is softmax top-k with the top-k weights always renormalised and no shared experts.
    Qwen2-MoE's shared expert has a sigmoid gate and DeepSeek-V2/V3 use MLA attention, so
    neither matches MiniMind's MoE exactly.
    """
    if args.n_shared_experts:
        return (
            f"n_shared_experts={args.n_shared_experts}: transformers has no architecture with "
            "MiniMind's ungated shared experts (Mixtral has none, Qwen2-MoE gates its shared "
            "expert with a sigmoid, DeepSeek-V2 uses MLA attention); train with "
            "--n_shared_experts 0 --norm_topk_prob to export as Mixtral"
        )
    if not args.norm_topk_prob:
        return (
            "norm_topk_prob=false: Mixtral always renormalises the top-k gate weights; "
            "train with --norm_topk_prob to export as Mixtral"
        )
    if args.scoring_func != "softmax":
        return f"scoring_func={args.scoring_func!r}: Mixtral's router is a softmax"
    return None


def mixtral_config(cfg: dict, args) -> dict:
    """A Llama-style `hf_config` dict turned into a transformers `MixtralConfig` dict."""
    from minillm.model import MOE_KEYS

    cfg = {k: v for k, v in cfg.items() if k not in MOE_KEYS}
    cfg.update(
        model_type="mixtral",
        architectures=["MixtralForCausalLM"],
        num_local_experts=args.n_routed_experts,
        num_experts_per_tok=args.num_experts_per_tok,
        router_aux_loss_coef=args.aux_loss_alpha,
        output_router_logits=False,
        router_jitter_noise=0.0,
        sliding_window=None,
    )
    for k in ("mlp_bias", "pretraining_tp"):
        cfg.pop(k, None)
    return cfg


def mixtral_weights(weights: dict, args) -> dict:
    """MiniLLM MoE weight names -> Mixtral's (`block_sparse_moe.gate`, `experts.E.w1/w2/w3`)."""
    out = {}
    for k, v in weights.items():
        if ".mlp." not in k:
            out[k] = v
            continue
        prefix, rest = k.split(".mlp.")
        moe = f"{prefix}.block_sparse_moe"
        if rest == "gate.weight":
            out[f"{moe}.gate.weight"] = v
            continue
        name = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}[rest.split(".")[1]]
        for e in range(args.n_routed_experts):
            out[f"{moe}.experts.{e}.{name}.weight"] = v[e]
    return out


def check_moe_export(args, fmt: str) -> None:
    """Raise a one-line ValueError when an MoE checkpoint cannot be exported as `fmt`."""
    if not args.use_moe:
        return
    if fmt == "gguf":
        raise ValueError(
            "GGUF export of MoE checkpoints (--use_moe) is unsupported; export to transformers "
            "with `minillm export hf` (Mixtral, when n_shared_experts=0) instead"
        )
    why = moe_unsupported(args)
    if why is not None:
        raise ValueError(f"export of this MoE checkpoint to transformers is unsupported: {why}")


def export_hf(
    ckpt: str | os.PathLike,
    out_dir: str | os.PathLike,
    adapter_path: str | None = None,
    dtype: str | None = None,
    tokenizer_path: str | None = None,
    force: bool = False,
) -> Path:
    """Write a standalone transformers folder: config.json, model.safetensors (LoRA fused),
    generation_config.json and the tokenizer files. `dtype` defaults to the checkpoint's.

    MoE checkpoints become `MixtralForCausalLM` when they fit (no shared experts, top-k
    renormalised); others raise ValueError naming why."""
    import mlx.core as mx
    import mlx.nn as nn

    from minillm.checkpoint import hf_config, model_dtype, parse_dtype, read_config, write_json
    from minillm.infer import load_with_adapters

    if dtype is not None:
        parse_dtype(dtype)
    out = Path(out_dir)
    path = check_ckpt(ckpt, out)
    check_moe_export(read_config(path), "hf")
    check_out(out, force, is_dir=True)
    model, tokenizer = load_with_adapters(str(path), tokenizer_path, dtype, adapter_path)
    args, dt = model.args, model_dtype(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)
    try:
        cfg = hf_config(args, dt)
        weights = dict(nn.utils.tree_flatten(model.parameters()))
        if args.use_moe:
            cfg, weights = mixtral_config(cfg, args), mixtral_weights(weights, args)
        write_json(tmp / "config.json", cfg)
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
        from minillm.checkpoint import read_config
        from minillm.export_gguf import export_gguf

        check_moe_export(read_config(check_ckpt(ns.checkpoint, Path(ns.out))), "gguf")
        out = export_gguf(
            ns.checkpoint, ns.out, ns.adapter_path, ns.dtype, ns.tokenizer_path, ns.force
        )
        print(f"[export] {ns.checkpoint} -> {out} (+ {out.parent / 'Modelfile'})")
    return 0


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
