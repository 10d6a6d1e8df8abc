"""`minillm eval` / `python -m minillm.eval`: token-weighted loss and perplexity on JSONL data.

The loss is summed over every trained target token (pretrain: all real tokens; SFT: the
assistant tokens) of the first `--max_batches` batches and divided by their count. The LM
head runs in chunks of `--logits_chunk_size` positions, so [B, T, vocab] logits never exist.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from minillm.data.jsonl import add_max_line_flag


def evaluate(
    model: nn.Module,
    batches: Iterable,
    *,
    max_batches: int = 0,
    chunk_size: int = 256,
    on_batch: Callable[[int, float, float], None] | None = None,
) -> dict[str, Any]:
    """Token-weighted mean next-token loss of `model` over `batches` (at most `max_batches`,
    0 = all). Returns `{"batches", "tokens", "avg_loss", "ppl", "tok_s", "seconds"}`.
    `on_batch(i, loss_sum, n_tokens)` is called after each batch with running totals."""
    from minillm.train.loop import to_arrays
    from minillm.train.losses import lm_loss

    model.eval()
    total, n_tok, n_batches = 0.0, 0.0, 0
    t0 = time.perf_counter()
    for batch in batches:
        if max_batches and n_batches >= max_batches:
            break
        arrays = to_arrays(batch)
        loss, n = lm_loss(
            model, {k: arrays[k] for k in ("inputs", "targets", "mask")}, chunk_size=chunk_size
        )
        mx.eval(loss, n)
        total += loss.item()
        n_tok += n.item()
        n_batches += 1
        if on_batch is not None:
            on_batch(n_batches, total, n_tok)
    dt = time.perf_counter() - t0
    if n_tok == 0:
        raise ValueError(
            f"no trained tokens in {n_batches} batches; check --task and the data "
            "(SFT needs assistant turns)"
        )
    avg = total / n_tok
    return {
        "batches": n_batches,
        "tokens": int(n_tok),
        "avg_loss": avg,
        "ppl": math.exp(avg) if avg < 700 else float("inf"),
        "tok_s": n_tok / max(dt, 1e-9),
        "seconds": dt,
    }


def resolve_checkpoint(path: str) -> str:
    """`path`, or the newest checkpoint of run folder `path` when it has no config.json."""
    from minillm.checkpoint import find_checkpoint

    p = Path(path)
    if p.is_dir() and not (p / "config.json").is_file():
        ckpt = find_checkpoint(p)
        if ckpt is not None:
            return str(ckpt)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minillm eval", description=__doc__)
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint folder, or a run folder (its newest checkpoint)",
    )
    p.add_argument(
        "--adapter_path",
        default=None,
        help="LoRA adapter folder, fused into the checkpoint's weights at load",
    )
    p.add_argument(
        "--tokenizer_path",
        default=None,
        help="tokenizer folder (default: the checkpoint's, else the built-in one)",
    )
    p.add_argument(
        "--dtype",
        default=None,
        help="cast weights to float32 | bfloat16 | float16 (default: as saved)",
    )
    p.add_argument("--task", choices=["pretrain", "sft"], default="pretrain")
    p.add_argument(
        "--data_path",
        required=True,
        help="comma list of JSONL files, dirs, globs, http(s) URLs, minimind:* aliases",
    )
    p.add_argument("--data_dir", default="./dataset", help="download cache for URLs and aliases")
    p.add_argument("--hf_dataset_repo", default="jingyaogong/minimind_dataset")
    p.add_argument("--hf_endpoint", default=None, help="hub endpoint (default: $HF_ENDPOINT)")
    p.add_argument("--force_download", action="store_true")
    p.add_argument("--max_download_mb", type=float, default=2048, help="0 disables the guard")
    p.add_argument("--seq_len", type=int, default=1024)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--max_batches", type=int, default=100, help="0 evaluates all the data")
    p.add_argument(
        "--logits_chunk_size",
        type=int,
        default=256,
        help="LM-head positions per chunk (0: full logits at once)",
    )
    p.add_argument(
        "--log_interval",
        type=int,
        default=10,
        help="print the running loss every n batches (0: only the result)",
    )
    p.add_argument(
        "--skip_bad_lines",
        action="store_true",
        help="count and skip malformed JSONL lines instead of stopping",
    )
    add_max_line_flag(p)
    p.add_argument("--out_json", default=None, help="also write the result to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    for name in ("seq_len", "batch_size"):
        if getattr(ns, name) < 1:
            raise ValueError(f"--{name}={getattr(ns, name)} must be >= 1")
    for name in ("max_batches", "logits_chunk_size", "log_interval"):
        if getattr(ns, name) < 0:
            raise ValueError(f"--{name}={getattr(ns, name)} must be >= 0 (0 disables it)")

    from minillm.checkpoint import find_adapters, load_with_adapters
    from minillm.data.batching import Batches
    from minillm.data.hub import resolve_data_spec
    from minillm.data.jsonl import format_skipped

    checkpoint = resolve_checkpoint(ns.checkpoint)
    adapters = None
    if ns.adapter_path:
        adapters = str(find_adapters(ns.adapter_path))
    model, tokenizer = load_with_adapters(checkpoint, ns.tokenizer_path, ns.dtype, adapters)
    limit = model.args.max_position_embeddings
    if ns.seq_len > limit:
        raise ValueError(
            f"--seq_len={ns.seq_len} exceeds the model's max_position_embeddings="
            f"{limit}; lower --seq_len"
        )
    paths = resolve_data_spec(
        ns.data_path,
        task=ns.task,
        data_dir=ns.data_dir,
        hf_endpoint=ns.hf_endpoint,
        max_download_mb=ns.max_download_mb,
        force_download=ns.force_download,
        repo_id=ns.hf_dataset_repo,
    )
    batches = Batches(
        paths, tokenizer, ns.task, ns.seq_len, ns.batch_size, skip_bad_lines=ns.skip_bad_lines
    )
    of = f"/{ns.max_batches}" if ns.max_batches else ""

    def on_batch(i: int, total: float, n: float) -> None:
        if ns.log_interval and i % ns.log_interval == 0:
            print(
                f"[eval] batch {i}{of} loss={total / max(n, 1.0):.4f} tokens={int(n)}",
                file=sys.stderr,
                flush=True,
            )

    res = evaluate(
        model,
        batches,
        max_batches=ns.max_batches,
        chunk_size=ns.logits_chunk_size,
        on_batch=on_batch,
    )
    if batches.skipped:
        print(f"[eval] {format_skipped(batches.skipped)}", file=sys.stderr)
    print(
        f"[eval] batches={res['batches']} tokens={res['tokens']} "
        f"avg_loss={res['avg_loss']:.4f} ppl={res['ppl']:.2f} tok/s={res['tok_s']:.0f}"
    )
    record = {
        "checkpoint": checkpoint,
        "adapter_path": adapters,
        "task": ns.task,
        "data": [str(p) for p in paths],
        "seq_len": ns.seq_len,
        "skipped": sum(batches.skipped.values()),
        **res,
    }
    line = json.dumps(record)
    print(line, flush=True)
    if ns.out_json:
        out = Path(ns.out_json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(line + "\n", encoding="utf-8")
    return 0
