"""`minillm train` / `python -m minillm.train`: pretrain, SFT or DPO (full or LoRA) from JSONL."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

from minillm.config.flags import to_dict
from minillm.config.job import TrainJob
from minillm.train.config import TrainConfig, resolve_dtype

GROUPS = {"data": "data", "model": "model", "train": "training"}


def parser():
    """`minillm train`'s parser: one flag per `TrainJob` field (nested ones flat), `--config`."""
    from minillm.config.job import NO_FLAG, TrainJob
    from minillm.config.verb import RunParser

    names = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in NO_FLAG)
    return RunParser(
        "train", TrainJob, "minillm train", __doc__, {"train": names}, GROUPS, saved=False
    )


def build_parser() -> argparse.ArgumentParser:
    return parser().parser


def load_run_model(ns: TrainJob, cfg: TrainConfig):
    """Model + tokenizer for a fresh run, an --init_from run or a --resume."""
    from minillm.checkpoint import load_or_init
    from minillm.train.state import load_state

    base = base_model = ns.init_from
    if ns.resume:
        st = load_state(ns.resume)
        base, base_model = st.path, None
        if st.lora:  # adapters resume on top of the original base weights
            cfg_file = Path(st.path) / "adapter_config.json"
            base = json.loads(cfg_file.read_text(encoding="utf-8")).get("base_model") or ""
            base_model = base
        if not (Path(base) / "config.json").is_file():
            raise FileNotFoundError(
                f"LoRA base model {base} (from {st.path}) is missing; "
                "restore it to resume this LoRA run"
            )
    model, tokenizer = load_or_init(base, ns.tokenizer_path, ns.model.args, cfg.seed)
    return model, tokenizer, base_model


def dpo_ref_path(ns: TrainJob) -> str:
    """The DPO reference checkpoint: --ref_from, else --init_from, else the resumed run's
    (recorded in its data cursor, or a LoRA run's base model)."""
    if ns.ref_from or ns.init_from:
        return str(Path(ns.ref_from or ns.init_from).resolve())
    if ns.resume:
        from minillm.train.state import load_state

        st = load_state(ns.resume)
        ref = (st.cursor or {}).get("ref_from") if isinstance(st.cursor, dict) else None
        if not ref and st.lora:
            cfg_file = Path(st.path) / "adapter_config.json"
            ref = json.loads(cfg_file.read_text(encoding="utf-8")).get("base_model")
        if ref:
            return ref
        raise ValueError(
            f"{st.path} records no DPO reference model; pass --ref_from CKPT (the model the "
            "DPO run started from)"
        )
    raise ValueError(
        "--task dpo needs a reference model: pass --init_from CKPT (e.g. the SFT model; it is "
        "also the frozen reference) or --ref_from CKPT"
    )


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse(argv))


def run(job: TrainJob) -> int:
    """Train `job` (its settings written to `<out_dir>/train.json` first)."""
    job.check()
    d, cfg = job.data, job.train
    os.environ["MINILLM_MAX_LINE_MB"] = str(d.max_line_mb)  # read by every JSONL reader
    ref_path = dpo_ref_path(job) if d.task == "dpo" else None
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved = json.dumps({"verb": "train", "config": to_dict(job)}, indent=2)
    (out / "train.json").write_text(saved + "\n", encoding="utf-8")

    from minillm.checkpoint import find_checkpoint
    from minillm.data.batching import Batches
    from minillm.data.hub import resolve_data_spec
    from minillm.data.jsonl import format_skipped
    from minillm.train import train
    from minillm.train.losses import lm_loss_from_config
    from minillm.train.plots import plot_run

    model, tokenizer, base_model = load_run_model(job, cfg)
    paths = resolve_data_spec(
        d.data_path,
        task=d.task,
        data_dir=d.data_dir,
        hf_endpoint=d.hf_endpoint,
        max_download_mb=d.max_download_mb,
        force_download=d.force_download,
        repo_id=d.hf_dataset_repo,
    )
    epochs = max(1, math.ceil(cfg.epochs))
    loss_fn = lm_loss_from_config(cfg)
    if d.task == "dpo":
        from minillm.checkpoint import check_vocab, load_model, parse_dtype
        from minillm.train.dpo import DpoBatches, make_dpo_loss

        ref_model = load_model(ref_path, dtype=parse_dtype(resolve_dtype(cfg.dtype)))
        check_vocab(ref_model, tokenizer, Path(ref_path) / "config.json")
        if ref_model.args.vocab_size != model.args.vocab_size:
            raise ValueError(
                f"reference {ref_path} has vocab_size={ref_model.args.vocab_size}, the "
                f"trained model {model.args.vocab_size}; use the same model family"
            )
        batches = DpoBatches(
            paths,
            tokenizer,
            ref_model,
            cfg.seq_len,
            cfg.batch_size,
            seed=cfg.seed,
            epochs=epochs,
            shuffle_buffer=d.shuffle_buffer,
            skip_bad_lines=d.skip_bad_lines,
            ref_from=ref_path,
        )
        loss_fn = make_dpo_loss(cfg)
    else:
        batches = Batches(
            paths,
            tokenizer,
            d.task,
            cfg.seq_len,
            cfg.batch_size,
            seed=cfg.seed,
            epochs=epochs,
            shuffle_buffer=d.shuffle_buffer,
            bucket_sizes=d.bucket_sizes,
            sparse_loss=cfg.sparse_loss,
            label_bucket_sizes=d.label_bucket_sizes,
            skip_bad_lines=d.skip_bad_lines,
        )

    def no_rows(skipped: dict[str, int]) -> ValueError:
        return ValueError(
            f"no usable {d.task} rows in {','.join(map(str, paths))} "
            f"({format_skipped(skipped)}); nothing was trained. Check the files' format "
            "(README: Data formats), or drop --skip_bad_lines to see the first bad line"
        )

    if cfg.max_steps:
        total = cfg.max_steps
    else:
        # num_batches() counts all `epochs` passes (pretrain rows run on across epochs), so
        # scale epochs by 1/epochs rather than rounding a per-epoch count
        n = batches.num_batches()
        if not n:
            raise no_rows(batches.count_skipped)
        total = dataclasses.replace(cfg, epochs=cfg.epochs / epochs).steps_for(n)
    start = None
    if job.resume:
        start = find_checkpoint(job.resume)
    print(
        f"[train] task={d.task} data={','.join(map(str, paths))} steps={total} "
        f"dtype={resolve_dtype(cfg.dtype)} out_dir={cfg.out_dir}"
        + (f" resume={start}" if start else ""),
        flush=True,
    )
    result = train(
        model,
        loss_fn,
        batches,
        cfg,
        tokenizer=tokenizer,
        total_steps=total,
        start_state=start,
        base_model=base_model,
    )
    if result.step == 0 and not start:
        raise no_rows(batches.skipped)
    if batches.skipped:
        print(f"[train] {format_skipped(batches.skipped)}", file=sys.stderr)
    if d.task == "dpo" and batches.dropped:
        print(
            f"[train] dpo: left out {batches.dropped} pairs with no response token within "
            f"seq_len+1={cfg.seq_len + 1} tokens",
            file=sys.stderr,
        )
    plots = plot_run(cfg.out_dir)
    last = result.checkpoints[-1] if result.checkpoints else None
    summary = {
        "step": result.step,
        "tokens": result.tokens_seen,
        "checkpoint": last,
        "plots": [str(p) for p in plots],
    }
    print(f"[train] done {json.dumps(summary)}")
    return 0
