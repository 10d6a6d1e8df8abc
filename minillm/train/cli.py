"""`minillm train` / `python -m minillm.train`: pretrain, SFT or DPO (full or LoRA) from JSONL."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from minillm.data.jsonl import add_max_line_flag
from minillm.init import add_model_args, model_args_from
from minillm.train.config import TrainConfig, resolve_dtype

SKIP = {"progress", "adam_betas"}


def add_config_args(p: argparse.ArgumentParser) -> None:
    """One flag per `TrainConfig` field, with the field's help string and default."""
    from minillm.config.flags import add_flags

    add_flags(p, TrainConfig(), skip=SKIP, suppress=False)


def int_list(s: str | None) -> list[int] | None:
    if not s:
        return None
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{s!r} is not a comma-separated list of integers") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minillm train", description=__doc__)
    d = p.add_argument_group("data")
    d.add_argument(
        "--data_path",
        required=True,
        help="comma list of JSONL files, dirs, globs, http(s) URLs, minimind:* aliases",
    )
    d.add_argument("--data_dir", default="./dataset", help="download cache for URLs and aliases")
    d.add_argument("--task", choices=["pretrain", "sft", "dpo"], default="pretrain")
    d.add_argument("--hf_dataset_repo", default="jingyaogong/minimind_dataset")
    d.add_argument("--hf_endpoint", default=None, help="hub endpoint (default: $HF_ENDPOINT)")
    d.add_argument("--force_download", action="store_true")
    d.add_argument("--max_download_mb", type=float, default=2048, help="0 disables the guard")
    d.add_argument("--shuffle_buffer", type=int, default=2048, help="0 keeps file order")
    d.add_argument("--bucket_sizes", default=None, help="SFT length buckets, e.g. 128,256")
    d.add_argument("--label_bucket_sizes", default=None, help="sparse-loss label buckets")
    d.add_argument(
        "--skip_bad_lines",
        action="store_true",
        help="count and skip malformed JSONL lines instead of stopping",
    )
    add_max_line_flag(d)
    m = p.add_argument_group("model")
    add_model_args(m)
    m.set_defaults(preset="200mb")
    m.add_argument("--tokenizer_path", default=None, help="HF tokenizer folder")
    m.add_argument("--init_from", default=None, help="checkpoint folder: load weights only")
    m.add_argument(
        "--resume",
        default=None,
        help="run folder or checkpoint: restore weights, optimizer, schedule, RNG, data",
    )
    m.add_argument(
        "--ref_from",
        default=None,
        help="DPO: frozen reference checkpoint [default: --init_from, or the resumed run's]",
    )
    add_config_args(p.add_argument_group("training"))
    return p


def load_run_model(ns: argparse.Namespace, cfg: TrainConfig):
    """Model + tokenizer for a fresh run, an --init_from run or a --resume."""
    from minillm.checkpoint import check_vocab, load_model
    from minillm.model import Model, init_weights
    from minillm.tokenizer import load_tokenizer
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
    tok_path = ns.tokenizer_path
    if tok_path is None and base and (Path(base) / "tokenizer.json").is_file():
        tok_path = base
    tokenizer = load_tokenizer(tok_path)
    if base:
        model = load_model(base)
    else:
        model = Model(model_args_from(ns, tokenizer.vocab_size))
        init_weights(model, cfg.seed)
    check_vocab(model, tokenizer, Path(base or "--vocab_size") / "config.json")
    return model, tokenizer, base_model


def dpo_ref_path(ns: argparse.Namespace) -> str:
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
    ns = build_parser().parse_args(argv)
    if ns.init_from and ns.resume:
        raise ValueError(
            "--init_from and --resume exclude each other: --resume continues a run "
            "(weights, optimizer, data position), --init_from starts a new one"
        )
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - SKIP
    cfg = TrainConfig(**{k: v for k, v in vars(ns).items() if k in fields})
    ref_path = dpo_ref_path(ns) if ns.task == "dpo" else None
    if ns.ref_from and ns.task != "dpo":
        raise ValueError("--ref_from is for --task dpo only")

    from minillm.data.batching import Batches
    from minillm.data.hub import resolve_data_spec
    from minillm.data.jsonl import format_skipped
    from minillm.train import train
    from minillm.train.losses import lm_loss_from_config
    from minillm.train.plots import plot_run
    from minillm.train.state import find_checkpoint

    model, tokenizer, base_model = load_run_model(ns, cfg)
    paths = resolve_data_spec(
        ns.data_path,
        task=ns.task,
        data_dir=ns.data_dir,
        hf_endpoint=ns.hf_endpoint,
        max_download_mb=ns.max_download_mb,
        force_download=ns.force_download,
        repo_id=ns.hf_dataset_repo,
    )
    epochs = max(1, math.ceil(cfg.epochs))
    loss_fn = lm_loss_from_config(cfg)
    if ns.task == "dpo":
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
            shuffle_buffer=ns.shuffle_buffer,
            skip_bad_lines=ns.skip_bad_lines,
            ref_from=ref_path,
        )
        loss_fn = make_dpo_loss(cfg)
    else:
        batches = Batches(
            paths,
            tokenizer,
            ns.task,
            cfg.seq_len,
            cfg.batch_size,
            seed=cfg.seed,
            epochs=epochs,
            shuffle_buffer=ns.shuffle_buffer,
            bucket_sizes=int_list(ns.bucket_sizes),
            sparse_loss=cfg.sparse_loss,
            label_bucket_sizes=int_list(ns.label_bucket_sizes),
            skip_bad_lines=ns.skip_bad_lines,
        )

    def no_rows(skipped: dict[str, int]) -> ValueError:
        return ValueError(
            f"no usable {ns.task} rows in {','.join(map(str, paths))} "
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
    if ns.resume:
        start = find_checkpoint(ns.resume)
    print(
        f"[train] task={ns.task} data={','.join(map(str, paths))} steps={total} "
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
    if ns.task == "dpo" and batches.dropped:
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
