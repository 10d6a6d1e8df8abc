"""Where the training step's memory goes: peak memory per layer and per token, by phase.

    python launch/probe_memory.py --preset 200mb --batch_size 16 --seq_len 1024 --layers 1,3
    python launch/probe_memory.py --preset 200mb --device cpu --dtype float32 --batch_size 4 \\
        --seq_len 128 --layers 1,3 --configs all,no_swiglu_vjp,no_whole_step

For each config (`all`: the default step; `no_<switch>`: one `TrainConfig` switch off;
`no_compile`) and each layer count it measures, in a fresh model, the peak of: `forward` (the
loss alone), `grad` (loss + gradients, `nn.value_and_grad`) and `step` (`train()`'s `Step`:
gradients, clipping, AdamW). The slope between the layer counts is one layer's cost; the rest
is fixed (embeddings, LM head and loss, optimizer state). Per layer, `grad - forward` is what a
layer keeps for its backward (saved activations); it is printed per token and in units of
`hidden_size` values of the model's dtype, the unit in which a layer's tensors are counted
(q/k/v/o, normed inputs: 1 each; gate/up/SwiGLU output: intermediate/hidden each).
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minillm.blas import load_for_mlx  # noqa: E402  (before mlx: OpenBLAS for CPU runs)

load_for_mlx(keep_torch_blas=False)

import mlx.core as mx  # noqa: E402

MIB = 2**20


def configs(names: str) -> dict[str, dict]:
    from minillm.train.config import SWITCHES

    out = {}
    for name in names.split(","):
        if name == "all":
            out[name] = {}
        elif name == "no_compile":
            out[name] = {"compile": False}
        elif name.startswith("no_") and name[3:] in SWITCHES:
            out[name] = {name[3:]: False}
        else:
            raise SystemExit(f"unknown config {name!r}: all, no_compile, no_<{'|'.join(SWITCHES)}>")
    return out


def measure(ns, layers: int, over: dict) -> dict[str, float]:
    """Peak MiB of forward, grad and step for a fresh `layers`-layer model."""
    import mlx.nn as nn

    from minillm.models import Model, ModelArgs, init_weights
    from minillm.speed import make_batch
    from minillm.train.config import TrainConfig
    from minillm.train.losses import lm_loss_from_config
    from minillm.train.step import make_step, prepare

    args = ModelArgs.from_preset(ns.preset, num_hidden_layers=layers)
    cfg = TrainConfig(seq_len=ns.seq_len, batch_size=ns.batch_size, dtype=ns.dtype, **over)
    batch = make_batch(args, ns.batch_size, ns.seq_len, 1.0, False, 0)
    out = {}

    def fresh():
        gc.collect()
        mx.clear_cache()
        mx.random.seed(0)
        model = Model(args)
        init_weights(model, 0)
        prepare(model, cfg)
        model.train()
        return model

    loss_fn = lm_loss_from_config(cfg)
    for phase in ("forward", "grad", "step"):
        model = fresh()
        if phase == "step":
            step = make_step(model, cfg)
            for _ in range(ns.steps):
                step([batch])
            step.sync()
            mx.reset_peak_memory()
            base = mx.get_active_memory()
            for _ in range(ns.steps):
                step([batch])
            step.sync()
            del step
        else:
            if phase == "forward":
                fn = lambda b, m=model: loss_fn(m, b)[0]  # noqa: E731
            else:
                vg = nn.value_and_grad(model, loss_fn)
                fn = lambda b, m=model, vg=vg: vg(m, b)  # noqa: E731
            if cfg.compile:
                fn = mx.compile(fn, inputs=[model.state], outputs=[model.state])
            mx.eval(fn(batch))
            mx.reset_peak_memory()
            base = mx.get_active_memory()
            mx.eval(fn(batch))
            del fn
        out[phase] = mx.get_peak_memory() / MIB
        out[phase + "_base"] = base / MIB
        del model
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="200mb")
    p.add_argument("--device", default="gpu", choices=("gpu", "cpu"))
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--seq_len", type=int, default=1024)
    p.add_argument("--layers", default="1,3", help="two or more layer counts")
    p.add_argument("--configs", default="all", help="all, no_compile, no_<switch>, comma list")
    p.add_argument("--steps", type=int, default=2, help="steps before and while measuring")
    ns = p.parse_args(argv)
    if ns.device == "cpu":
        mx.set_default_device(mx.cpu)
    from minillm.models import ModelArgs

    counts = sorted(int(x) for x in ns.layers.split(","))
    if len(counts) < 2:
        p.error("--layers needs two layer counts for a slope")
    args = ModelArgs.from_preset(ns.preset)
    tokens = ns.batch_size * ns.seq_len
    unit = args.hidden_size * mx.zeros((), getattr(mx, ns.dtype)).itemsize
    print(f"device={mx.default_device()} preset={ns.preset} dtype={ns.dtype} batch={ns.batch_size} "
          f"seq={ns.seq_len} tokens={tokens} layers={counts} unit=hidden_size x {unit // args.hidden_size} B", flush=True)  # fmt: skip
    for name, over in configs(ns.configs).items():
        rows = {L: measure(ns, L, over) for L in counts}
        lo, hi = counts[0], counts[-1]
        per = {k: (rows[hi][k] - rows[lo][k]) / (hi - lo) for k in rows[lo]}
        fixed = {k: rows[lo][k] - lo * per[k] for k in rows[lo]}
        kept = per["grad"] - per["forward"]
        for L in counts:
            r = rows[L]
            print(f"{name:<20} layers={L:<3} peak MiB: forward {r['forward']:9.1f}  grad {r['grad']:9.1f}  "
                  f"step {r['step']:9.1f}  (weights+state at step start {r['step_base']:.1f})", flush=True)  # fmt: skip
        print(f"{name:<20} per layer MiB: forward {per['forward']:.1f}  grad {per['grad']:.1f}  step {per['step']:.1f}; "
              f"fixed: forward {fixed['forward']:.1f}  grad {fixed['grad']:.1f}  step {fixed['step']:.1f}", flush=True)  # fmt: skip
        print(f"{name:<20} kept for backward per layer: {kept:.1f} MiB = {kept * MIB / tokens:.0f} B/token "
              f"= {kept * MIB / tokens / unit:.1f} x hidden_size values", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
