"""`minillm export hf`: a standalone transformers folder (LoRA fused; MoE as Mixtral)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from minillm.export.checks import check_ckpt, check_moe_export, check_out


def mixtral_config(cfg: dict, args) -> dict:
    """A Llama-style `hf_config` dict turned into a transformers `MixtralConfig` dict."""
    from minillm.models import MOE_KEYS

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

    from minillm.checkpoint import (
        hf_config,
        load_with_adapters,
        model_dtype,
        parse_dtype,
        read_config,
        write_json,
    )

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
