"""Checks every export shares: the checkpoint exists, the output is free, the MoE fits."""

from __future__ import annotations

import os
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
