"""Where a decode step's time goes: the bare step loop of each decoding path, no sampling or
detokenizing around it.

    python launch/profile_decode.py --preset 200mb --dtype bfloat16 --batch_sizes 1,64
    MLX_MAX_OPS_PER_BUFFER=200 python launch/profile_decode.py ...   # MLX CUDA graph size

Variants, each timed over --steps greedy steps after a prefill of --prompt_len random tokens,
with the next step dispatched before the last one's token is read (as `stream_generate`):

  eager     `minillm.decode.Decoder` with MINILLM_JOINED_DECODE=0: the model layer by layer
            with its KVCache (what mlx-lm's generate_step does)
  joined    MINILLM_JOINED_DECODE=1 (the default on GPUs): q/k/v and gate/up as one matmul
            each over joined weights

Prints ms/step and tokens/s per variant and batch size (best of --runs, the variants taking
turns so that a change of machine load hits each alike).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if __name__ == "__main__":  # CPU matmuls on OpenBLAS, as the `minillm` verbs get them
    from minillm.blas import load_for_mlx

    load_for_mlx(keep_torch_blas=False)

import mlx.core as mx  # noqa: E402

import minillm.decode as dec  # noqa: E402
from minillm.checkpoint import cast_model, parse_dtype  # noqa: E402
from minillm.models import Model, ModelArgs, init_weights  # noqa: E402

VARIANTS = ("eager", "joined")


def run(model: Model, variant: str, batch: int, prompt_len: int, steps: int) -> float:
    """Seconds per decode step."""
    ids = mx.random.randint(3, model.args.vocab_size, (batch, prompt_len), key=mx.random.key(1))
    os.environ["MINILLM_JOINED_DECODE"] = "1" if variant == "joined" else "0"
    fwd = dec.Decoder(model)
    y = mx.argmax(fwd(ids), axis=-1)
    mx.eval(y)
    t0 = None
    for i in range(steps + 1):
        nxt = mx.argmax(fwd(y[:, None]), axis=-1)
        mx.async_eval(nxt)
        y.tolist()
        if i == 0:
            t0 = time.perf_counter()
        y = nxt
    y.tolist()
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="200mb")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--batch_sizes", default="1,64")
    p.add_argument("--prompt_len", type=int, default=128)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--runs", type=int, default=3, help="best of N, variants taking turns")
    p.add_argument("--variants", default=",".join(VARIANTS))
    ns = p.parse_args(argv)
    model = Model(ModelArgs.from_preset(ns.preset))
    init_weights(model, 0)
    cast_model(model, parse_dtype(ns.dtype))
    mx.eval(model.parameters())
    variants = ns.variants.split(",")
    print(f"device={mx.default_device()} preset={ns.preset} dtype={ns.dtype} mlx={mx.__version__}")
    for b in (int(x) for x in ns.batch_sizes.split(",")):
        best = {v: float("inf") for v in variants}
        for _ in range(ns.runs):
            for v in variants:
                best[v] = min(best[v], run(model, v, b, ns.prompt_len, ns.steps))
        for v in variants:
            print(
                f"[{v}] batch={b} {1e3 * best[v]:.3f} ms/step {b / best[v]:.1f} tok/s", flush=True
            )


if __name__ == "__main__":
    main()
