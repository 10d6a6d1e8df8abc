"""Decode throughput: MiniLLM's generation vs mlx-lm and llama.cpp on the same weights.

    python launch/bench_decode.py --preset 200mb --dtype bfloat16 --batch_sizes 1,64
    python launch/bench_decode.py --preset tiny --dtype float32 --prompt_len 32 --new_tokens 64

Builds a seeded `--preset` model in `--dtype`, saves it as a checkpoint folder and loads that
folder in every implementation:

  minillm    `minillm.generate.stream_generate` (the API `generate`, chat and serve use):
             `minillm.decode.Decoder`, on GPUs with q/k/v and gate/up as one matmul each
  eager      the same with MINILLM_JOINED_DECODE=0: the model layer by layer, as mlx-lm
  mlx_lm     `mlx_lm.load` of the folder; `generate_step` at batch 1 (what `mlx_lm.generate`
             runs), `BatchGenerator` with the whole batch in one completion batch above
  llama_cpp  the folder exported with `minillm.export.gguf` (f32 for float32, else f16: the
             exporter's dtypes) and decoded with llama.cpp's C API through llama-cpp-python
             (`llama_decode` on a batch with one sequence id per prompt, argmax on the host as
             llama.cpp's greedy sampler does); "skipped (not installed)" without `llama_cpp`

Fairness: every implementation gets the same random prompts (`--prompt_len` tokens, equal
lengths, so no padding), decodes greedily and produces exactly `--new_tokens` tokens per prompt:
end-of-sequence tokens are not stop tokens for anyone (so the greedy tokens are comparable;
the `same` column counts the rows whose tokens equal MiniLLM's). Prefill is EXCLUDED from the
decode rate for everyone: the clock starts when the first generated token of every row is on
the host and stops when the last one is, so

    decode tok/s = batch * (new_tokens - 1) / that time

(each host read is a sync, as `mx.eval`). Prefill + first token is shown as `prefill ms`.
Best of `--runs` runs (the first also warms up); the runs take turns (minillm, peers, minillm,
...) with a `--settle` pause before each, so that machine load and spinning threads left by
the previous implementation hit everyone alike. Then per peer and batch size a `ratio` line
(MiniLLM tok/s / peer tok/s; the issue's goal is >= 1.2x mlx-lm at batch 1) and MiniLLM's
scaling line (aggregate tok/s at the largest batch / batch 1; goal >= 10x for 64 vs 1).

Runs wherever MLX runs: on the CPU (OpenBLAS preloaded as the `minillm` CLI does, when
installed) or an NVIDIA GPU with MLX CUDA (mx.default_device()).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minillm.profiling import one_line  # noqa: E402

PEERS = ("eager", "mlx_lm", "llama_cpp")
GOAL_RATIO = {("mlx_lm", 1): 1.2}  # (peer, batch) -> the goal for MiniLLM / peer
GOAL_SCALING = 10.0  # batch 64 aggregate tok/s over batch 1


class Result:
    """One run: tokens per row, prefill seconds, decode seconds."""

    def __init__(self, tokens: list[list[int]], prefill: float, decode: float):
        self.tokens, self.prefill, self.decode = tokens, prefill, decode

    def tok_s(self) -> float:
        n = sum(len(t) - 1 for t in self.tokens)
        return n / self.decode if self.decode > 0 else float("nan")


def check(r: Result, batch: int, new_tokens: int, impl: str) -> Result:
    lens = {len(t) for t in r.tokens}
    if len(r.tokens) != batch or lens != {new_tokens}:
        raise RuntimeError(f"{impl} produced {len(r.tokens)} rows of lengths {lens}")
    return r


# ----------------------------------------------------------------------------- runners


@contextlib.contextmanager
def decode_mode(joined: bool):
    """MINILLM_JOINED_DECODE=0 for the block when not `joined` (else the default), restored
    after."""
    old = os.environ.get("MINILLM_JOINED_DECODE")
    if joined:
        os.environ.pop("MINILLM_JOINED_DECODE", None)
    else:
        os.environ["MINILLM_JOINED_DECODE"] = "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINILLM_JOINED_DECODE", None)
        else:
            os.environ["MINILLM_JOINED_DECODE"] = old


def run_minillm(model, tok, prompts: list[list[int]], new_tokens: int, joined=True) -> Result:
    from minillm.generate import stream_generate

    B, t1 = len(prompts), 0.0
    with decode_mode(joined):
        t0 = time.perf_counter()
        events = stream_generate(
            model, tok, prompts, max_new_tokens=new_tokens, temperature=0.0, stop_ids=()
        )
        for seen, ev in enumerate(events, 1):
            if isinstance(ev, list):
                t2 = time.perf_counter()
                return Result([g.tokens for g in ev], t1 - t0, t2 - t1)
            if seen == B:  # every row's first token is on the host: prefill done
                t1 = time.perf_counter()
    raise RuntimeError("stream_generate ended without its result")


def run_mlx_lm(model, prompts: list[list[int]], new_tokens: int) -> Result:
    import mlx.core as mx
    from mlx_lm.generate import BatchGenerator, generate_step

    if len(prompts) == 1:  # mlx_lm.generate's path
        t0 = time.perf_counter()
        gen = generate_step(mx.array(prompts[0]), model, max_tokens=new_tokens)
        out = [next(gen)[0]]
        t1 = time.perf_counter()
        out += [t for t, _ in gen]
        t2 = time.perf_counter()
        return Result([out], t1 - t0, t2 - t1)
    B = len(prompts)
    gen = BatchGenerator(
        model,
        max_tokens=new_tokens,
        stop_tokens=None,  # no end-of-sequence stop: exactly new_tokens each
        completion_batch_size=B,
        prefill_batch_size=B,
    )
    try:
        t0 = time.perf_counter()
        uids = gen.insert(prompts, [new_tokens] * B)
        outs: dict[int, list[int]] = {u: [] for u in uids}
        t1 = None
        while responses := gen.next_generated():
            for r in responses:
                outs[r.uid].append(r.token)
            if t1 is None:
                t1 = time.perf_counter()
        t2 = time.perf_counter()
    finally:
        gen.close()
    return Result([outs[u] for u in uids], t1 - t0, t2 - t1)


class LlamaCpp:
    """A GGUF file in llama.cpp's C API: greedy batched decode, one sequence id per prompt."""

    def __init__(self, path: Path, batch: int, prompt_len: int, new_tokens: int):
        import llama_cpp as lc

        self.lc = lc
        try:  # llama-cpp-python's log switch (Llama(verbose=False) uses it too)
            from llama_cpp._logger import set_verbose

            set_verbose(False)
        except ImportError:
            pass
        lc.llama_backend_init()
        mp = lc.llama_model_default_params()
        self.model = lc.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        cp = lc.llama_context_default_params()
        cp.n_seq_max = batch
        cp.n_ctx = batch * (prompt_len + new_tokens + 8)
        cp.n_batch = batch * prompt_len
        cp.n_threads = cp.n_threads_batch = os.cpu_count() or 1
        self.ctx = lc.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self.vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model))
        self.batch = lc.llama_batch_init(batch * prompt_len, 0, 1)

    def close(self) -> None:
        lc = self.lc
        lc.llama_batch_free(self.batch)
        lc.llama_free(self.ctx)
        lc.llama_model_free(self.model)

    def decode(self, items: list[tuple[int, int, int, bool]]):
        """Decode (token, position, sequence, wants logits) items; argmax of each output."""
        import numpy as np

        b = self.batch
        b.n_tokens = len(items)
        n_out = 0
        for i, (t, p, s, want) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = t, p, 1, want
            b.seq_id[i][0] = s
            n_out += want
        rc = self.lc.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        logits = np.ctypeslib.as_array(self.lc.llama_get_logits(self.ctx), (n_out, self.vocab))
        return logits.argmax(axis=-1).tolist()

    def run(self, prompts: list[list[int]], new_tokens: int) -> Result:
        lc = self.lc
        lc.llama_memory_clear(lc.llama_get_memory(self.ctx), True)
        P = len(prompts[0])
        t0 = time.perf_counter()
        y = self.decode(
            [(t, j, s, j == P - 1) for s, p in enumerate(prompts) for j, t in enumerate(p)]
        )
        out = [[t] for t in y]
        t1 = time.perf_counter()
        for n in range(1, new_tokens):
            y = self.decode([(t, P + n - 1, s, True) for s, t in enumerate(y)])
            for row, t in zip(out, y, strict=True):
                row.append(t)
        t2 = time.perf_counter()
        return Result(out, t1 - t0, t2 - t1)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="200mb")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--prompt_len", type=int, default=128)
    p.add_argument("--new_tokens", type=int, default=256, help="generated tokens per prompt")
    p.add_argument("--batch_sizes", default="1,64", help="comma list")
    p.add_argument("--runs", type=int, default=2, help="best of N runs (the first warms up)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peers", default=",".join(PEERS), help="comma list of " + ",".join(PEERS))
    p.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="seconds of sleep before each run: llama.cpp's OpenMP and OpenBLAS threads\n"
        "spin a while after their work and would slow the next implementation",
    )
    ns = p.parse_args(argv)
    sizes = [int(x) for x in ns.batch_sizes.split(",") if x.strip()]
    peers = [x.strip() for x in ns.peers.split(",") if x.strip()]
    bad = [x for x in peers if x not in PEERS]
    if bad or not sizes or min(sizes) < 1 or ns.runs < 1 or ns.new_tokens < 2 or ns.prompt_len < 1:
        p.error(f"bad arguments (unknown peers {bad}?); new_tokens must be >= 2")
    if argv is None:  # as the `minillm` CLI: OpenBLAS preloaded on the CPU when installed
        from minillm.blas import maybe_reexec

        maybe_reexec()

    import mlx.core as mx
    import numpy as np

    from minillm.checkpoint import cast_model, load, parse_dtype, save_model
    from minillm.models import Model, ModelArgs, init_weights
    from minillm.tokenizer import load_tokenizer

    tok = load_tokenizer()
    model = Model(ModelArgs.from_preset(ns.preset, vocab_size=tok.vocab_size))
    init_weights(model, ns.seed)
    cast_model(model, parse_dtype(ns.dtype))
    tmp = Path(tempfile.mkdtemp(prefix="bench_decode_"))
    ckpt = tmp / "ckpt"
    save_model(ckpt, model, tok)
    del model
    model, tok = load(str(ckpt))
    rng = np.random.default_rng(ns.seed)
    prompts = {
        b: rng.integers(3, tok.vocab_size, (b, ns.prompt_len)).tolist() for b in sorted(set(sizes))
    }

    blas = "openblas" if "openblas" in os.environ.get("LD_PRELOAD", "") else "default"
    versions = [f"mlx={mx.__version__}"]
    for mod in ("mlx_lm", "llama_cpp"):
        if importlib.util.find_spec(mod):
            versions.append(f"{mod}={getattr(__import__(mod), '__version__', '?')}")
    gguf_dtype = "f32" if ns.dtype == "float32" else "f16"
    print(
        f"device={mx.default_device()} blas={blas} preset={ns.preset} dtype={ns.dtype} "
        f"(llama.cpp GGUF {gguf_dtype}) prompt={ns.prompt_len} new={ns.new_tokens} "
        f"batches={','.join(map(str, sizes))} runs={ns.runs} greedy, EOS ignored, "
        f"decode timed without prefill " + " ".join(versions),
        flush=True,
    )

    results: dict[tuple[str, int], Result | str] = {}
    impls = ["minillm", *[x for x in PEERS if x in peers]]
    active: dict[str, object] = {"minillm": None}  # impl -> what its runs need
    try:
        for impl in impls[1:]:
            why = None
            if impl == "eager":
                active[impl] = None
            elif importlib.util.find_spec(impl) is None:
                why = "skipped (not installed)"
            elif impl == "mlx_lm":
                try:
                    from mlx_lm import load as mlx_lm_load

                    active[impl] = mlx_lm_load(str(ckpt))[0]
                except Exception as e:
                    why = f"failed: mlx_lm.load: {one_line(e)}"
            else:
                try:
                    from minillm.export.gguf import export_gguf

                    gguf = tmp / f"model-{gguf_dtype}.gguf"
                    active[impl] = export_gguf(ckpt, gguf, dtype=gguf_dtype)
                except Exception as e:
                    why = f"failed: GGUF export: {one_line(e)}"
            if why:
                results.update({(impl, b): why for b in sizes})
                print(f"[{impl}] {why}", flush=True)

        for b in sizes:
            fns, closers = {}, []
            for impl, need in active.items():
                if impl in ("minillm", "eager"):
                    fns[impl] = lambda b=b, j=impl == "minillm": run_minillm(
                        model, tok, prompts[b], ns.new_tokens, joined=j
                    )
                elif impl == "mlx_lm":
                    fns[impl] = lambda b=b, m=need: run_mlx_lm(m, prompts[b], ns.new_tokens)
                else:
                    try:
                        lcpp = LlamaCpp(need, b, ns.prompt_len, ns.new_tokens)
                    except Exception as e:
                        results[(impl, b)] = f"failed: {one_line(e)}"
                        print(f"[{impl}] batch={b} {results[(impl, b)]}", flush=True)
                        continue
                    closers.append(lcpp.close)
                    fns[impl] = lambda b=b, m=lcpp: m.run(prompts[b], ns.new_tokens)
            # Runs take turns (minillm, peers, minillm, ...) so a load change on the machine
            # hits everyone alike; each keeps its best.
            for _ in range(ns.runs):
                for impl, fn in list(fns.items()):
                    time.sleep(ns.settle)
                    try:
                        r = check(fn(), b, ns.new_tokens, impl)
                        prev = results.get((impl, b))
                        if not isinstance(prev, Result) or r.tok_s() > prev.tok_s():
                            results[(impl, b)] = r
                    except Exception as e:  # OOM, API drift, ...: report and go on
                        results[(impl, b)] = f"failed: {one_line(e)}"
                        del fns[impl]
                    finally:
                        gc.collect()
                        mx.clear_cache()
            for close in closers:
                close()
            for impl in active:
                r = results[(impl, b)]
                msg = (
                    f"decode {r.tok_s():.1f} tok/s prefill {1e3 * r.prefill:.1f} ms"
                    if isinstance(r, Result)
                    else r
                )
                print(f"[{impl}] batch={b} {msg}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    head = f"{'impl':<9} | {'batch':>5} | {'decode tok/s':>12} | {'ms/step':>8} | {'prefill ms':>10} | same"
    print(head)
    print("-" * len(head))
    for impl in impls:
        for b in sizes:
            r = results[(impl, b)]
            if isinstance(r, str):
                print(f"{impl:<9} | {b:>5} | {r}")
                continue
            ours = results[("minillm", b)]
            same = (
                f"{sum(a == m for a, m in zip(r.tokens, ours.tokens, strict=True))}/{b}"
                if isinstance(ours, Result)
                else "n/a"
            )
            step_ms = 1e3 * r.decode / (ns.new_tokens - 1)
            print(
                f"{impl:<9} | {b:>5} | {r.tok_s():>12.1f} | {step_ms:>8.2f} | "
                f"{1e3 * r.prefill:>10.1f} | {same}"
            )
    print()
    for impl in impls[1:]:
        for b in sizes:
            ours, theirs = results[("minillm", b)], results[(impl, b)]
            if isinstance(theirs, str):
                print(f"[{impl}] batch={b} {theirs}")
                continue
            if isinstance(ours, str):
                print(f"[{impl}] batch={b} ratio=n/a (minillm {ours})")
                continue
            ratio = ours.tok_s() / theirs.tok_s()
            goal = GOAL_RATIO.get((impl, b))
            note = f" goal >= {goal}x: {'met' if ratio >= goal else 'NOT met'}" if goal else ""
            print(
                f"[{impl}] batch={b} ratio={ratio:.2f}x "
                f"(minillm {ours.tok_s():.0f} / {impl} {theirs.tok_s():.0f} tok/s){note}",
                flush=True,
            )
    lo, hi = min(sizes), max(sizes)
    r_lo, r_hi = results[("minillm", lo)], results[("minillm", hi)]
    if hi > lo and isinstance(r_lo, Result) and isinstance(r_hi, Result):
        scaling = r_hi.tok_s() / r_lo.tok_s()
        goal = (
            f" goal >= {GOAL_SCALING:g}x: {'met' if scaling >= GOAL_SCALING else 'NOT met'}"
            if (lo, hi) == (1, 64)
            else ""
        )
        print(
            f"[minillm] scaling batch={hi}/batch={lo}: {scaling:.2f}x aggregate decode tok/s "
            f"({r_hi.tok_s():.0f} / {r_lo.tok_s():.0f}){goal}",
            flush=True,
        )
    return results


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
