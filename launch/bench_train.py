"""Training throughput side by side: MiniLLM vs PyTorch, transformers and mlx-lm, same shape.

    python launch/bench_train.py --device gpu --preset 200mb --seq_len 1024 --batch_size 16,32
    python launch/bench_train.py --device cpu --preset tiny --seq_len 128 --batch_size 4 \
        --steps 3 --warmup_steps 1 --dtype float32

In one process, one after another, on random tokens (seq_len + 1 tokens a row, trained on
seq_len), every implementation starting from the same freshly initialised weights:

  minillm  MiniLLM's own compiled step (`minillm.speed.bench_train`: `train()`'s `Step`, fused kernels)
  torch    a lean PyTorch LLaMA written here (SDPA causal attention, GQA by repeat_interleave,
           RoPE, SwiGLU, tied head), `torch.compile`d, AdamW (fused on CUDA), bf16 autocast
           over fp32 master weights
  hf       transformers `LlamaForCausalLM` (attn_implementation="sdpa"), the same recipe
  mlx_lm   mlx-lm's llama model loaded from a saved MiniLLM checkpoint, trained with
           mlx-lm's trainer step (value_and_grad of `default_loss` + AdamW, mx.compile,
           params in --dtype)

Each runs --warmup_steps untimed then --steps timed optimizer steps per batch size and prints
tokens/s, MFU (FLOPs per token from `minillm.stats`; n/a when the device peak is unknown) and
peak memory (MLX: mx.get_peak_memory; torch on CUDA: max_memory_allocated; torch on CPU: the
RSS growth, `rss+`), then a table and, per peer, `ratio` = MiniLLM tok/s / peer tok/s and
`mem_ratio` = MiniLLM peak / peer peak. Peers whose package is missing print `skipped (not
installed)`; a peer that raises prints `failed: <reason>` and the benchmark goes on.

On a Linux CPU, OpenBLAS (when installed) is loaded before MLX, so MLX's fp32 matmuls use it
as the `minillm` verbs' re-exec gives them, while torch, imported first, keeps its own MKL.
`--cpu_threads N` gives torch and OpenBLAS N threads each (MLX's other CPU ops run on one).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MLX_BLAS = "mlx-linked"
if __name__ == "__main__":
    # MLX's CPU matmuls on OpenBLAS (as the `minillm` verbs get by re-exec), torch on its MKL
    from minillm.blas import load_for_mlx

    MLX_BLAS = load_for_mlx(keep_torch_blas=True) or MLX_BLAS

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from minillm.models import PRESETS, Model, ModelArgs, init_weights  # noqa: E402
from minillm.profiling import (  # noqa: E402
    device_peak_tflops,
    free_memory,
    one_line,
    rss_mib,
    timed,
)
from minillm.stats import flops_per_token, train_flops_per_token  # noqa: E402

MIB = 2**20
PEERS = ("torch", "hf", "mlx_lm")
NEEDS = {"torch": ("torch",), "hf": ("torch", "transformers"), "mlx_lm": ("mlx_lm",)}
LR, BETAS, EPS, WD = 1e-4, (0.9, 0.95), 1e-8, 0.1


# ----------------------------------------------------------------------------- helpers


def set_cpu_threads(n: int) -> None:
    """n threads for torch's CPU ops and for OpenBLAS (MLX's matmuls) when it is loaded."""
    if importlib.util.find_spec("torch"):
        import torch

        torch.set_num_threads(n)
    if MLX_BLAS.startswith("/"):
        import ctypes

        ctypes.CDLL(MLX_BLAS).openblas_set_num_threads(n)


def random_ids(vocab: int, batch: int, seq_len: int, seed: int) -> np.ndarray:
    """[batch, seq_len + 1] random token ids (inputs = [:, :-1], targets = [:, 1:])."""
    return np.random.default_rng(seed).integers(0, vocab, (batch, seq_len + 1), dtype=np.int64)


# ----------------------------------------------------------------------------- MiniLLM


def run_minillm(args: ModelArgs, ns, bs: int) -> dict[str, Any]:
    from minillm.speed import TrainTiming, bench_train
    from minillm.train.config import TrainConfig

    cfg = TrainConfig(seq_len=ns.seq_len, batch_size=bs, dtype=ns.dtype)
    timing = TrainTiming(steps=ns.steps, warmup_steps=ns.warmup_steps)
    mx.random.seed(ns.seed)
    model = Model(args)
    init_weights(model, ns.seed)
    model.set_fused(True)
    try:
        row = bench_train(model, cfg, timing)[0]
    finally:
        del model
    return {"tok_s": row["tok_s"], "step_ms": row["step_ms"], "mem": row["peak_mem"]}


# ----------------------------------------------------------------------------- mlx-lm


def run_mlx_lm(ckpt: Path, ns, bs: int) -> dict[str, Any]:
    """mlx-lm's trainer step (tuner/trainer.py): compiled value_and_grad(default_loss) + AdamW."""
    import mlx.nn as nn
    import mlx.optimizers as optim

    try:
        from mlx_lm.tuner.trainer import default_loss
    except ImportError:  # same loss as mlx-lm's trainer, for wheels without the tuner

        def default_loss(model, batch, lengths):
            inputs, targets = batch[:, :-1], batch[:, 1:]
            logits = model(inputs)
            steps = mx.arange(1, targets.shape[1] + 1)
            mask = mx.logical_and(steps >= lengths[:, 0:1], steps <= lengths[:, 1:])
            ce = nn.losses.cross_entropy(logits, targets) * mask
            ntoks = mask.sum()
            return ce.astype(mx.float32).sum() / ntoks, ntoks

    try:
        from mlx_lm.utils import load_model

        model = load_model(ckpt)[0]
    except ImportError:
        from mlx_lm import load

        model = load(str(ckpt))[0]
    dtype = getattr(mx, ns.dtype)
    model.update(
        nn.utils.tree_map(
            lambda p: p.astype(dtype) if mx.issubdtype(p.dtype, mx.floating) else p,
            model.parameters(),
        )
    )
    mx.eval(model.parameters())
    optimizer = optim.AdamW(learning_rate=LR, betas=list(BETAS), eps=EPS, weight_decay=WD)
    optimizer.init(model.trainable_parameters())
    model.train()
    loss_value_and_grad = nn.value_and_grad(model, default_loss)
    state = [model.state, optimizer.state, mx.random.state]

    def _step(batch, lengths):
        (loss, toks), grad = loss_value_and_grad(model, batch, lengths)
        optimizer.update(model, grad)
        return loss, toks

    step_fn = mx.compile(_step, inputs=state, outputs=state)
    batch = mx.array(random_ids(model.args.vocab_size, bs, ns.seq_len, ns.seed).astype(np.int32))
    lengths = mx.broadcast_to(mx.array([[0, ns.seq_len]], mx.int32), (bs, 2))
    mx.eval(batch, lengths)
    out: list = []

    def step():
        loss, _ = step_fn(batch, lengths)
        mx.eval(state, loss)
        out[:] = [loss]

    dt = timed(step, lambda: None, ns.warmup_steps, ns.steps, mx.reset_peak_memory)
    if out and not math.isfinite(out[0].item()):
        raise ValueError("mlx-lm loss is not finite")
    mem = mx.get_peak_memory() / MIB  # the closures go with this frame; main frees memory
    return {"tok_s": bs * ns.seq_len * ns.steps / dt, "step_ms": 1e3 * dt / ns.steps, "mem": mem}


# ----------------------------------------------------------------------------- torch


def build_lean_torch(args: ModelArgs, max_len: int):
    """The same LLaMA in plain PyTorch; parameter names are the Hugging Face ones."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    H, nh, nkv, hd = (
        args.hidden_size,
        args.num_attention_heads,
        args.num_key_value_heads,
        args.head_dim,
    )

    class RMSNorm(nn.Module):
        def __init__(self, dim: int, eps: float):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))
            self.eps = eps

        def forward(self, x):
            xf = x.float()
            xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
            return xf.type_as(x) * self.weight.type_as(x)

    def rope(x, cos, sin):
        d = x.shape[-1] // 2
        x1, x2 = x[..., :d], x[..., d:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(H, nh * hd, bias=False)
            self.k_proj = nn.Linear(H, nkv * hd, bias=False)
            self.v_proj = nn.Linear(H, nkv * hd, bias=False)
            self.o_proj = nn.Linear(nh * hd, H, bias=False)

        def forward(self, x, cos, sin):
            B, T, _ = x.shape
            q = self.q_proj(x).view(B, T, nh, hd).transpose(1, 2)
            k = self.k_proj(x).view(B, T, nkv, hd).transpose(1, 2)
            v = self.v_proj(x).view(B, T, nkv, hd).transpose(1, 2)
            q, k = rope(q, cos, sin).type_as(v), rope(k, cos, sin).type_as(v)
            if nh != nkv:
                k = k.repeat_interleave(nh // nkv, dim=1)
                v = v.repeat_interleave(nh // nkv, dim=1)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.o_proj(o.transpose(1, 2).reshape(B, T, nh * hd))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate_proj = nn.Linear(H, args.intermediate_size, bias=False)
            self.up_proj = nn.Linear(H, args.intermediate_size, bias=False)
            self.down_proj = nn.Linear(args.intermediate_size, H, bias=False)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.self_attn = Attention()
            self.mlp = MLP()
            self.input_layernorm = RMSNorm(H, args.rms_norm_eps)
            self.post_attention_layernorm = RMSNorm(H, args.rms_norm_eps)

        def forward(self, x, cos, sin):
            h = x + self.self_attn(self.input_layernorm(x), cos, sin)
            return h + self.mlp(self.post_attention_layernorm(h))

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(args.vocab_size, H)
            self.layers = nn.ModuleList([Block() for _ in range(args.num_hidden_layers)])
            self.norm = RMSNorm(H, args.rms_norm_eps)

    class LeanLlama(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Inner()
            inv = args.rope_theta ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
            ang = torch.arange(max_len, dtype=torch.float32)[:, None] * inv[None]
            self.register_buffer("cos", ang.cos(), persistent=False)
            self.register_buffer("sin", ang.sin(), persistent=False)

        def forward(self, ids):
            T = ids.shape[1]
            cos, sin = self.cos[:T], self.sin[:T]
            h = self.model.embed_tokens(ids)
            for layer in self.model.layers:
                h = layer(h, cos, sin)
            h = self.model.norm(h)
            return F.linear(h, self.model.embed_tokens.weight)  # tied head

    return LeanLlama()


def build_hf(args: ModelArgs):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads,
        num_key_value_heads=args.num_key_value_heads,
        head_dim=args.head_dim,
        max_position_embeddings=args.max_position_embeddings,
        rms_norm_eps=args.rms_norm_eps,
        rope_theta=args.rope_theta,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        use_cache=False,
        bos_token_id=args.bos_token_id,
        eos_token_id=args.eos_token_id,
        pad_token_id=args.pad_token_id,
    )
    rp = getattr(cfg, "rope_parameters", None)
    if isinstance(rp, dict):  # transformers 5 keeps rope_theta here
        rp["rope_theta"] = args.rope_theta
    cfg._attn_implementation = "sdpa"
    try:
        model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa")
    except TypeError:
        model = LlamaForCausalLM(cfg)
    return model


def run_torch(kind: str, args: ModelArgs, init: dict[str, np.ndarray], ns, bs: int) -> dict:
    import torch
    import torch.nn.functional as F

    cuda = ns.device == "gpu"
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("--device gpu but torch.cuda.is_available() is False")
    dev = torch.device("cuda" if cuda else "cpu")
    rss0 = rss_mib()
    torch.manual_seed(ns.seed)
    model = build_lean_torch(args, ns.seq_len) if kind == "torch" else build_hf(args)
    sd = {k: torch.from_numpy(v) for k, v in init.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in sd and k != "lm_head.weight"]
    if missing:
        raise KeyError(f"no initial weight for {missing[:3]}")
    model.load_state_dict({k: sd[k] for k in own if k in sd}, strict=False)
    if kind == "hf":
        model.tie_weights()
    model = model.to(dev, dtype=torch.float32)  # fp32 master weights
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    ids = torch.from_numpy(random_ids(args.vocab_size, bs, ns.seq_len, ns.seed)).to(dev)
    inputs, targets = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    V = args.vocab_size

    def loss_fn(x, y):
        logits = model(x) if kind == "torch" else model(input_ids=x).logits
        return F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))

    fwd = loss_fn if ns.no_compile_torch else torch.compile(loss_fn, dynamic=False)
    opt_kw = dict(lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    if cuda:
        opt_kw["fused"] = True
    optimizer = torch.optim.AdamW(model.parameters(), **opt_kw)
    amp = ns.dtype != "float32"
    amp_dtype = getattr(torch, ns.dtype)
    last: list = []

    def step():
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp):
            loss = fwd(inputs, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        last[:] = [loss.detach()]

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def reset():
        if cuda:
            torch.cuda.reset_peak_memory_stats()

    try:
        dt = timed(step, sync, ns.warmup_steps, ns.steps, reset)
        if last and not math.isfinite(last[0].item()):
            raise ValueError(f"{kind} loss is not finite")
        mem = torch.cuda.max_memory_allocated() / MIB if cuda else rss_mib() - rss0
    finally:  # model, optimizer and compiled graphs go with this frame
        if not ns.no_compile_torch:
            torch._dynamo.reset()
    return {
        "tok_s": bs * ns.seq_len * ns.steps / dt,
        "step_ms": 1e3 * dt / ns.steps,
        "mem": mem,
        "mem_kind": "cuda" if cuda else "rss+",
        "params": n_params,
    }


# ----------------------------------------------------------------------------- main


def fmt_mem(r: dict) -> str:
    tag = "rss+" if r.get("mem_kind") == "rss+" else "peak"
    return f"{tag}={r['mem']:.0f} MiB"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="gpu", choices=("gpu", "cpu"))
    p.add_argument("--preset", default="200mb", choices=[k for k in PRESETS if k != "moe"])
    p.add_argument("--seq_len", type=int, default=1024)
    p.add_argument("--layers", type=int, default=None, help="override the preset's layer count")
    p.add_argument("--batch_size", default="16,32", help="comma list of batch sizes")
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    p.add_argument("--warmup_steps", type=int, default=3, help="untimed steps (compile) first")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument("--peers", default=",".join(PEERS), help="comma list of torch,hf,mlx_lm")
    p.add_argument("--no_compile_torch", action="store_true", help="eager PyTorch (no compile)")
    p.add_argument(
        "--cpu_threads",
        type=int,
        default=0,
        help="--device cpu: threads for torch (set_num_threads) and for MLX's OpenBLAS "
        "(0: each library's default, all cores)",
    )
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args(argv)

    sizes = [int(x) for x in ns.batch_size.split(",") if x.strip()]
    peers = [x.strip() for x in ns.peers.split(",") if x.strip()]
    bad = [x for x in peers if x not in PEERS]
    if bad or not sizes or min(sizes) < 1 or ns.steps < 1 or ns.warmup_steps < 0:
        p.error(f"bad arguments (unknown peers {bad}?); peers: {', '.join(PEERS)}")
    if ns.device == "cpu":
        mx.set_default_device(mx.cpu)
        if ns.cpu_threads > 0:
            set_cpu_threads(ns.cpu_threads)
    elif mx.default_device().type != mx.gpu:
        p.error("--device gpu but MLX has no GPU device; use --device cpu")

    args = ModelArgs.from_preset(ns.preset, num_hidden_layers=ns.layers)
    fl = flops_per_token(args, ns.seq_len)
    train_flops = train_flops_per_token(fl["forward"])
    dev_name, peak = device_peak_tflops(ns.device, ns.dtype)
    versions = [f"mlx={mx.__version__}", f"mlx_blas={Path(MLX_BLAS).name}"]
    for mod in ("torch", "transformers", "mlx_lm"):
        if importlib.util.find_spec(mod):
            versions.append(f"{mod}={__import__(mod).__version__}")
    print(
        f"device={ns.device} ({dev_name}, peak {peak or 'n/a'} TFLOP/s {ns.dtype}) "
        f"preset={ns.preset} seq={ns.seq_len} dtype={ns.dtype} steps={ns.steps} "
        f"warmup={ns.warmup_steps} train_flops/token={train_flops / 1e9:.3f}G "
        + (f"cpu_threads={ns.cpu_threads} " if ns.cpu_threads > 0 else "")
        + " ".join(versions),
        flush=True,
    )

    # the shared initial weights: MiniLLM's init, as numpy (fp32) and as a checkpoint folder
    mx.random.seed(ns.seed)
    model = Model(args)
    init_weights(model, ns.seed)
    from mlx.utils import tree_flatten

    init = {k: np.array(v.astype(mx.float32)) for k, v in tree_flatten(model.parameters())}
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    ckpt = tmp / "ckpt"

    def mfu(tok_s: float) -> str:
        return f"{100 * tok_s * train_flops / (peak * 1e12):.1f}%" if peak else "n/a"

    results: dict[tuple[str, int], dict | str] = {}
    impls = ["minillm", *[x for x in PEERS if x in peers]]
    try:
        for impl in impls:
            missing = [m for m in NEEDS.get(impl, ()) if importlib.util.find_spec(m) is None]
            if missing:
                for bs in sizes:
                    results[(impl, bs)] = "skipped (not installed)"
                print(f"[{impl}] skipped (not installed: {', '.join(missing)})", flush=True)
                continue
            if impl == "mlx_lm" and not ckpt.exists():
                try:
                    from minillm.checkpoint import save_model
                    from minillm.tokenizer import load_tokenizer

                    save_model(ckpt, model, load_tokenizer())
                except Exception as e:
                    for bs in sizes:
                        results[(impl, bs)] = f"failed: saving the checkpoint: {one_line(e)}"
                    print(f"[{impl}] {results[(impl, sizes[0])]}", flush=True)
                    continue
            for bs in sizes:
                try:
                    if impl == "minillm":
                        r = run_minillm(args, ns, bs)
                    elif impl == "mlx_lm":
                        r = run_mlx_lm(ckpt, ns, bs)
                    else:
                        r = run_torch(impl, args, init, ns, bs)
                    results[(impl, bs)] = r
                    print(
                        f"[{impl}] bs={bs} seq={ns.seq_len} step_ms={r['step_ms']:.1f} "
                        f"tok/s={r['tok_s']:.1f} MFU={mfu(r['tok_s'])} {fmt_mem(r)}",
                        flush=True,
                    )
                except Exception as e:  # OOM, compile errors, ...: report and go on
                    results[(impl, bs)] = f"failed: {one_line(e)}"
                    print(f"[{impl}] bs={bs} {results[(impl, bs)]}", flush=True)
                finally:
                    free_memory()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"{'impl':<8} | {'bs':>4} | {'tok/s':>10} | {'step ms':>9} | {'MFU':>6} | memory MiB")
    print("-" * 62)
    for impl in impls:
        for bs in sizes:
            r = results[(impl, bs)]
            if isinstance(r, str):
                print(f"{impl:<8} | {bs:>4} | {r}")
                continue
            mem = f"{r['mem']:.0f}" + (" (rss+)" if r.get("mem_kind") == "rss+" else "")
            print(
                f"{impl:<8} | {bs:>4} | {r['tok_s']:>10.1f} | {r['step_ms']:>9.1f} | "
                f"{mfu(r['tok_s']):>6} | {mem}"
            )
    print()
    for impl in impls[1:]:
        for bs in sizes:
            ours, theirs = results[("minillm", bs)], results[(impl, bs)]
            if isinstance(theirs, str):
                print(f"[{impl}] bs={bs} {theirs}")
                continue
            if isinstance(ours, str):
                print(f"[{impl}] bs={bs} ratio=n/a (minillm {ours})")
                continue
            mem_ratio = ours["mem"] / theirs["mem"] if theirs["mem"] > 0 else float("nan")
            note = " (vs torch RSS growth)" if theirs.get("mem_kind") == "rss+" else ""
            print(
                f"[{impl}] bs={bs} ratio={ours['tok_s'] / theirs['tok_s']:.2f}x "
                f"(minillm {ours['tok_s']:.0f} / {impl} {theirs['tok_s']:.0f} tok/s) "
                f"mem_ratio={mem_ratio:.2f}{note}",
                flush=True,
            )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
