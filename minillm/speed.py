"""`minillm speed`: train-step and decode throughput on random tokens, with MiniLLM's step."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from minillm.init import add_model_args, model_args_from
from minillm.models import Model, ModelArgs, init_weights
from minillm.train.config import (
    LORA_TARGETS,
    OPTIMIZERS,
    STATE_DTYPES,
    SWITCHES,
    TRAIN_DTYPES,
    TrainConfig,
)

MIB = 2**20


class _NullTokenizer:
    """What `minillm.generate` needs of a tokenizer, for random-token decoding."""

    pad_id, eos_ids = 0, set()

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def decode(self, ids: list[int]) -> str:
        return ""


def make_batch(
    args: ModelArgs, batch_size: int, seq_len: int, density: float, sparse: bool, seed: int
) -> dict[str, mx.array]:
    """Random tokens; the loss covers the last `density` fraction of each row."""
    key = mx.random.key(seed)
    ids = mx.random.randint(0, args.vocab_size, (batch_size, seq_len + 1), key=key)
    ids = ids.astype(mx.int32)
    k = max(1, math.ceil(density * seq_len))
    mask = (mx.arange(seq_len) >= seq_len - k).astype(mx.float32)
    batch = {
        "inputs": ids[:, :-1],
        "targets": ids[:, 1:],
        "mask": mx.broadcast_to(mask, (batch_size, seq_len)),
    }
    if sparse:
        pos = mx.arange(seq_len - k, seq_len, dtype=mx.int32)
        batch["label_pos"] = mx.broadcast_to(pos, (batch_size, k))
        batch["label_mask"] = mx.ones((batch_size, k), mx.float32)
    mx.eval(batch)
    return batch


@dataclass
class TrainTiming:
    """How `bench_train` times the step."""

    steps: int = 5  # timed optimizer steps per run
    warmup_steps: int = 1  # untimed steps (compile) first
    runs: int = 1
    mask_density: float = 1.0  # trained fraction of each row
    trace: str | None = None  # Metal: capture the first timed run to this .gputrace


@dataclass
class DecodeTiming:
    """How `bench_decode` times greedy decoding."""

    prompt_len: int = 1024
    new_tokens: int = 256
    batch_size: int = 1
    runs: int = 1


def bench_train(model: Model, cfg: TrainConfig, timing: TrainTiming) -> list[dict[str, Any]]:
    """Time `train()`'s own `Step` for `model` under `cfg`: warm up, then `timing.steps`
    steps per run, each dispatched before the last one's loss is read, as in the loop."""
    from minillm.train.step import make_step

    step = make_step(model, cfg)
    batches = [
        make_batch(model.args, cfg.batch_size, cfg.seq_len, timing.mask_density, cfg.sparse_loss, i)
        for i in range(cfg.accum_steps)
    ]
    pending: list[mx.array] = []

    def check() -> None:
        if pending and not math.isfinite(pending.pop().item()):
            raise ValueError("the loss is not finite; try --dtype float32")

    def one() -> None:
        out = step(batches)
        check()
        pending.append(out.loss)

    def drain() -> None:
        step.sync()
        check()

    for _ in range(timing.warmup_steps):
        one()
    drain()
    active = mx.get_active_memory() / MIB
    tokens = cfg.batch_size * cfg.seq_len * cfg.accum_steps
    rows = []
    for _ in range(timing.runs):
        mx.reset_peak_memory()
        step.timer.reset()
        step.timer.counting = True
        trace = timing.trace and not rows and mx.metal.is_available()
        if trace:
            mx.metal.start_capture(timing.trace)
        t0 = time.perf_counter()
        for _ in range(timing.steps):
            one()
        drain()
        dt = time.perf_counter() - t0
        if trace:
            mx.metal.stop_capture()
        row = {
            "steps": timing.steps,
            "bs": cfg.batch_size,
            "seq": cfg.seq_len,
            "step_ms": 1e3 * dt / timing.steps,
            "tok_s": tokens * timing.steps / dt,
            "active_mem": active,
            "peak_mem": mx.get_peak_memory() / MIB,
        }
        if cfg.profile_timing:
            ms = step.timer.ms
            row["ms"] = {k: ms[k] / timing.steps for k in ("fwd_bwd", "clip", "opt")}
        rows.append(row)
    return rows


def bench_decode(model: Model, timing: DecodeTiming) -> list[dict[str, Any]]:
    """Prefill a random prompt, then time greedy decoding with `minillm.generate`."""
    from minillm.generate import generate

    model.eval()
    V, P, n = model.args.vocab_size, timing.prompt_len, timing.new_tokens
    prompts = mx.random.randint(0, V, (timing.batch_size, P), key=mx.random.key(7)).tolist()
    tok = _NullTokenizer(V)
    kw = dict(max_new_tokens=n, min_new_tokens=n, stop_ids=[], max_seq_len=P + n + 1)
    generate(model, tok, prompts, **{**kw, "max_new_tokens": 2, "min_new_tokens": 2})
    rows = []
    for _ in range(timing.runs):
        mx.reset_peak_memory()
        gens = generate(model, tok, prompts, **kw)
        steps = len(gens[0].tokens) - 1
        dt = max(gens[0].gen_time, 1e-9)
        rows.append(
            {
                "steps": steps,
                "bs": timing.batch_size,
                "seq": P,
                "prefill_ms": 1e3 * gens[0].prompt_time,
                "step_ms": 1e3 * dt / steps,
                "tok_s": timing.batch_size * steps / dt,
                "active_mem": mx.get_active_memory() / MIB,
                "peak_mem": mx.get_peak_memory() / MIB,
            }
        )
    return rows


def format_row(tag: str, r: dict[str, Any]) -> str:
    line = (
        f"[{tag}] steps={r['steps']} bs={r['bs']} seq={r['seq']} step_ms={r['step_ms']:.2f} "
        f"tok/s={r['tok_s']:.1f} active_mem={r['active_mem']:.0f} MiB "
        f"peak_mem={r['peak_mem']:.0f} MiB"
    )
    if "prefill_ms" in r:
        line += f" prefill_ms={r['prefill_ms']:.1f}"
    if "ms" in r:
        line += " " + " ".join(f"{k}={v:.1f}ms" for k, v in r["ms"].items())
    return line


def mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(rows[0])
    for k, v in rows[0].items():
        if isinstance(v, float):
            out[k] = sum(r[k] for r in rows) / len(rows)
        elif isinstance(v, dict):
            out[k] = mean_row([r[k] for r in rows])
    return out


def check_trace(path: str | None) -> None:
    """Metal: `path` must end in .gputrace. CUDA: print how to trace under nsys. CPU: error."""
    if path is None:
        return
    if mx.metal.is_available():
        if not path.endswith(".gputrace"):
            raise ValueError(f"--trace {path!r} must end in .gputrace (opened by Xcode)")
        return
    if mx.cuda.is_available():
        print(
            "[speed] MLX has no in-process CUDA capture; run this command under "
            "`nsys profile -o speed_trace --trace=cuda,nvtx python -m minillm.speed ...` "
            "(timeline) or `ncu --target-processes all python -m minillm.speed ...` (kernels)",
            file=sys.stderr,
        )
        return
    raise ValueError("--trace needs a GPU backend (Metal .gputrace, or nsys on CUDA); not on CPU")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="minillm speed", description=__doc__)
    add_model_args(p)
    p.set_defaults(preset="200mb")
    p.add_argument("--seq_len", type=int, default=1024)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--accum_steps", type=int, default=1)
    p.add_argument("--steps", type=int, default=5, help="timed optimizer steps per run")
    p.add_argument("--warmup_steps", type=int, default=1, help="untimed steps (compile) first")
    p.add_argument("--runs", type=int, default=1, help="repeat the timing; adds *_mean rows")
    p.add_argument("--dtype", default="bfloat16", choices=TRAIN_DTYPES)
    p.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS)
    p.add_argument("--optim_state_dtype", default="float32", choices=STATE_DTYPES)
    p.add_argument("--mask_density", type=float, default=1.0, help="trained fraction of a row")
    p.add_argument("--sparse_loss", action="store_true", help="logits only at trained positions")
    p.add_argument("--logits_chunk_size", type=int, default=0)
    p.add_argument("--checkpoint_every_n", type=int, default=0)
    p.add_argument("--lora_r", type=int, default=0)
    p.add_argument("--lora_alpha", type=float, default=16.0)
    p.add_argument("--lora_targets", default=",".join(LORA_TARGETS))
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--fused_kernels", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--profile_timing", action="store_true", help="per-phase ms (adds syncs)")
    for f in dataclasses.fields(TrainConfig):  # the step's switches, as `minillm train` has them
        if f.name in SWITCHES:
            help = f"{f.metadata['help']} [default: {f.default}]"
            p.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=f.default, help=help)  # fmt: skip
    p.add_argument(
        "--trace",
        default=None,
        help="Metal: capture the first timed run to X.gputrace (needs MTL_CAPTURE_ENABLED=1)",
    )
    p.add_argument("--no_infer", action="store_true", help="skip the decode benchmark")
    p.add_argument("--infer_prompt_len", type=int, default=1024)
    p.add_argument("--infer_new_tokens", type=int, default=256)
    p.add_argument("--infer_batch_size", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    ns = p.parse_args(argv)

    for name in ("steps", "runs", "infer_prompt_len", "infer_new_tokens", "infer_batch_size"):
        if getattr(ns, name) < 1:
            raise ValueError(f"--{name}={getattr(ns, name)} must be >= 1")
    if ns.warmup_steps < 0:
        raise ValueError(f"--warmup_steps={ns.warmup_steps} must be >= 0")
    if not 0 < ns.mask_density <= 1:
        raise ValueError(f"--mask_density={ns.mask_density} must be in (0, 1]")
    check_trace(ns.trace)
    cfg = TrainConfig(  # a step driver: nothing is written to out_dir
        seq_len=ns.seq_len,
        batch_size=ns.batch_size,
        accum_steps=ns.accum_steps,
        dtype=ns.dtype,
        optimizer=ns.optimizer,
        optim_state_dtype=ns.optim_state_dtype,
        compile=ns.compile,
        checkpoint_every_n=ns.checkpoint_every_n,
        logits_chunk_size=ns.logits_chunk_size,
        sparse_loss=ns.sparse_loss,
        lora_r=ns.lora_r,
        lora_alpha=ns.lora_alpha,
        lora_targets=ns.lora_targets,
        profile_timing=ns.profile_timing,
        **{k: getattr(ns, k) for k in SWITCHES},
    )
    args = model_args_from(ns, ModelArgs.vocab_size)
    mx.random.seed(ns.seed)
    model = Model(args)
    init_weights(model, ns.seed)
    model.set_fused(ns.fused_kernels)
    timing = TrainTiming(ns.steps, ns.warmup_steps, ns.runs, ns.mask_density, ns.trace)
    out: dict[str, Any] = {"device": str(mx.default_device()), "train": bench_train(model, cfg, timing)}  # fmt: skip
    if not ns.no_infer:
        decode = DecodeTiming(
            ns.infer_prompt_len, ns.infer_new_tokens, ns.infer_batch_size, ns.runs
        )
        out["infer_decode"] = bench_decode(model, decode)
    if ns.json:
        print(json.dumps(out, indent=2))
        return
    for tag in ("train", "infer_decode"):
        for r in out.get(tag, []):
            print(format_row(tag, r))
        if ns.runs > 1 and tag in out:
            print(format_row(f"{tag}_mean", mean_row(out[tag])))


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
