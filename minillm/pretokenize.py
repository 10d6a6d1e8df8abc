"""`minillm pretokenize`: tokenize JSONL data once, on all cores, into `{"ids": [...]}` lines.

    python -m minillm.pretokenize --data_path data/pretrain.jsonl --task pretrain \\
        --out_path out/pretrain_ids.jsonl

Output lines are in input order: `{"ids": [...]}` (pretrain, document tokens without the EOS
that packing adds) or `{"ids": [...], "mask": [...]}` (SFT). Training reads the output like the
raw data (records with `ids` skip the tokenizer) and yields the same batches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path

from minillm.data.batching import tokenize_record
from minillm.data.jsonl import (
    BadLine,
    add_max_line_flag,
    format_skipped,
    max_line_bytes,
    parse_line,
    read_line,
    resolve_paths,
    too_long,
)

CHUNK_LINES, CHUNK_BYTES = 1024, 1 << 20
Chunk = tuple[str, list[tuple[int, bytes]]]

_W: dict = {}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minillm pretokenize", description=__doc__.split("\n")[0])
    p.add_argument(
        "--data_path",
        required=True,
        help="comma list of JSONL files, directories (*.jsonl) or globs",
    )
    p.add_argument("--task", choices=("pretrain", "sft"), default="pretrain")
    p.add_argument("--out_path", required=True, help="output JSONL (overwritten atomically)")
    p.add_argument("--tokenizer_path", default=None, help="tokenizer folder (default: built-in)")
    p.add_argument(
        "--seq_len",
        type=int,
        default=0,
        help="SFT: keep the first seq_len+1 tokens (0 = keep all); pretrain packs "
        "whole documents, so it is not clipped",
    )
    p.add_argument(
        "--keep_fields", action="store_true", help="keep the input fields and add ids (and mask)"
    )
    p.add_argument(
        "--num_workers", type=int, default=_cores(), help="tokenizer processes (default: all cores)"
    )
    p.add_argument(
        "--skip_bad_lines",
        action="store_true",
        help="count and drop malformed lines instead of stopping at the first",
    )
    add_max_line_flag(p)
    return p


def _init(
    tokenizer_path: str | None, task: str, seq_len: int, keep_fields: bool, skip_bad_lines: bool
) -> None:
    from minillm.tokenizer import load_tokenizer

    _W.update(
        tok=load_tokenizer(tokenizer_path),
        task=task,
        seq_len=seq_len,
        keep_fields=keep_fields,
        skip=skip_bad_lines,
    )


def _work(chunk: Chunk) -> tuple[list[bytes], dict[str, int], str | None, int]:
    """Encode one chunk: (output lines, skipped per reason, first error, token count)."""
    path, lines = chunk
    tok, task, seq_len = _W["tok"], _W["task"], _W["seq_len"]
    out, skipped, n_tokens = [], {}, 0
    for line_no, raw, n in lines:
        try:
            if raw is None:
                raise too_long(n, max_line_bytes())
            rec = parse_line(raw, task, tok.vocab_size)
        except BadLine as e:
            if not _W["skip"]:
                return out, skipped, e.message(f"{path}:{line_no}"), n_tokens
            skipped[e.kind] = skipped.get(e.kind, 0) + 1
            continue
        if rec is None:
            continue
        ids, mask = tokenize_record(tok, rec, task)
        if task == "sft" and seq_len > 0:
            ids, mask = ids[: seq_len + 1], mask[: seq_len + 1]
        obj = json.loads(raw) if _W["keep_fields"] else {}
        obj["ids"] = ids.tolist()
        if mask is not None:
            obj["mask"] = mask.tolist()
        n_tokens += len(ids)
        out.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    return out, skipped, None, n_tokens


def _chunks(paths: list[Path]) -> Iterator[tuple[Chunk, int]]:
    for path in paths:
        limit = max_line_bytes()
        with open(path, "rb") as f:
            lines, size, line_no = [], 0, 0
            while True:
                raw, n = read_line(f, limit)
                if not n:
                    break
                line_no += 1
                if line_no == 1 and raw is not None:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                lines.append((line_no, raw, n))
                size += len(raw or b"")
                if len(lines) >= CHUNK_LINES or size >= CHUNK_BYTES:
                    yield (str(path), lines), size
                    lines, size = [], 0
            if lines:
                yield (str(path), lines), size


def pretokenize(
    paths: list[Path],
    out_path: str | Path,
    task: str = "pretrain",
    tokenizer_path: str | None = None,
    seq_len: int = 0,
    keep_fields: bool = False,
    num_workers: int = 0,
    skip_bad_lines: bool = False,
    progress: bool = True,
) -> dict:
    """Write the tokenized lines of `paths` to `out_path` in input order; return a summary
    dict (lines, tokens, skipped, seconds, workers). `num_workers` 0 = all cores."""
    from tqdm import tqdm

    out_path = Path(out_path)
    if any(out_path.resolve() == p.resolve() for p in paths):
        raise ValueError(f"--out_path {out_path} is also an input; write to another file")
    workers = num_workers or _cores()
    init = (tokenizer_path, task, seq_len, keep_fields, skip_bad_lines)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    stats = {"lines": 0, "tokens": 0, "skipped": {}, "workers": workers}
    t0 = time.perf_counter()
    bar = tqdm(
        total=sum(p.stat().st_size for p in paths),
        unit="B",
        unit_scale=True,
        desc="pretokenize",
        disable=None if progress else True,
    )

    def take(res: tuple, size: int) -> None:
        lines, skipped, err, n_tokens = res
        f.writelines(lines)
        stats["lines"] += len(lines)
        stats["tokens"] += n_tokens
        for k, v in skipped.items():
            stats["skipped"][k] = stats["skipped"].get(k, 0) + v
        if err:
            raise ValueError(err)
        bar.update(size)

    try:
        with open(tmp, "wb") as f:
            if workers == 1:
                _init(*init)
                for chunk, size in _chunks(paths):
                    take(_work(chunk), size)
            else:
                with get_context().Pool(workers, initializer=_init, initargs=init) as pool:
                    pending: deque = deque()
                    for chunk, size in _chunks(paths):
                        pending.append((pool.apply_async(_work, (chunk,)), size))
                        if len(pending) >= 4 * workers:  # bounded: memory stays flat
                            res, sz = pending.popleft()
                            take(res.get(), sz)
                    while pending:
                        res, sz = pending.popleft()
                        take(res.get(), sz)
        os.replace(tmp, out_path)
    finally:
        bar.close()
        tmp.unlink(missing_ok=True)
    stats["seconds"] = time.perf_counter() - t0
    return stats


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.num_workers < 1:
        raise ValueError(f"--num_workers must be >= 1, got {args.num_workers}")
    if args.seq_len < 0:
        raise ValueError(f"--seq_len must be >= 0, got {args.seq_len}")
    if args.task == "pretrain" and args.seq_len:
        print(
            "pretokenize: --seq_len is ignored for pretrain (documents are packed whole)",
            file=sys.stderr,
        )
    paths = resolve_paths(args.data_path)
    s = pretokenize(
        paths,
        args.out_path,
        args.task,
        args.tokenizer_path,
        args.seq_len,
        args.keep_fields,
        args.num_workers,
        args.skip_bad_lines,
    )
    rate = s["tokens"] / max(s["seconds"], 1e-9)
    line = (
        f"pretokenize: {s['lines']} lines, {s['tokens']} tokens -> {args.out_path} in "
        f"{s['seconds']:.1f}s ({rate:,.0f} tok/s, {s['workers']} workers)"
    )
    if args.skip_bad_lines:
        line += "; " + format_skipped(s["skipped"])
    print(line)
    return 0


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
