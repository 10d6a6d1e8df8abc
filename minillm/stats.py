"""`minillm stats`: parameters by component, FLOPs per token, device peak and MFU."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from typing import Any

from minillm.init import add_model_args, model_args_from
from minillm.models import ModelArgs

# Apple GPUs: fp32 TFLOP/s per GPU core = 128 FP32 ALUs x 2 (FMA) x GPU clock (GHz) / 1000,
# using the publicly listed clocks (M1 ~1.28, M1 Pro/Max/Ultra ~1.30, M2 family ~1.40,
# M3 family ~1.40, M4 family ~1.58 GHz). Apple GPUs run fp16/bf16 FMAs at the fp32 rate.
APPLE = {  # chip: (fp32 TFLOP/s per GPU core, GPU core counts sold)
    "M1": (0.327, (7, 8)),
    "M1 Pro": (0.332, (14, 16)),
    "M1 Max": (0.332, (24, 32)),
    "M1 Ultra": (0.332, (48, 64)),
    "M2": (0.358, (8, 10)),
    "M2 Pro": (0.358, (16, 19)),
    "M2 Max": (0.358, (30, 38)),
    "M2 Ultra": (0.358, (60, 76)),
    "M3": (0.358, (8, 10)),
    "M3 Pro": (0.358, (14, 18)),
    "M3 Max": (0.358, (30, 40)),
    "M3 Ultra": (0.358, (60, 80)),
    "M4": (0.404, (8, 10)),
    "M4 Pro": (0.404, (16, 20)),
    "M4 Max": (0.404, (32, 40)),
}
# NVIDIA datasheets: dense (no 2:4 sparsity) tensor-core TFLOP/s with fp32 accumulate, and
# plain (non-TF32) fp32. None: the dtype has no tensor-core path on that GPU.
NVIDIA = {
    "H100 SXM": dict(bfloat16=989.4, float16=989.4, float32=66.9),
    "H100 PCIe": dict(bfloat16=756.0, float16=756.0, float32=51.2),
    "H100 NVL": dict(bfloat16=835.5, float16=835.5, float32=60.0),
    "H200": dict(bfloat16=989.4, float16=989.4, float32=66.9),
    "H200 NVL": dict(bfloat16=835.5, float16=835.5, float32=60.0),
    "A100 SXM": dict(bfloat16=312.0, float16=312.0, float32=19.5),
    "A100 PCIe": dict(bfloat16=312.0, float16=312.0, float32=19.5),
    "L40S": dict(bfloat16=362.05, float16=362.05, float32=91.6),
    "L4": dict(bfloat16=121.0, float16=121.0, float32=30.3),
    "A10": dict(bfloat16=125.0, float16=125.0, float32=31.2),
    "T4": dict(bfloat16=None, float16=65.0, float32=8.1),
    "RTX 4090": dict(bfloat16=165.2, float16=165.2, float32=82.6),
    "RTX 3090": dict(bfloat16=71.0, float16=71.0, float32=35.6),
}
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


ACTIVE_KEYS = ("active_per_layer", "active")


def param_breakdown(args: ModelArgs) -> dict[str, int]:
    """Parameter count per component, computed from `args` alone (equals `num_params`).

    MoE models (`use_moe`) also get `active_per_layer` and `active`: the parameters one token
    uses (router, top-k routed experts and the shared experts instead of all experts).
    """
    H, hd, L = args.hidden_size, args.head_dim, args.num_hidden_layers
    q, kv = args.num_attention_heads * hd, args.num_key_value_heads * hd
    layer = {
        "q_proj": H * q,
        "k_proj": H * kv,
        "v_proj": H * kv,
        "o_proj": q * H,
    }
    expert = 3 * H * args.intermediate_size  # one SwiGLU expert: gate, up, down
    if args.use_moe:
        layer["router"] = H * args.n_routed_experts
        layer["routed_experts"] = args.n_routed_experts * expert
        if args.n_shared_experts:
            layer["shared_experts"] = args.n_shared_experts * expert
    else:
        layer["gate_proj"] = H * args.intermediate_size
        layer["up_proj"] = H * args.intermediate_size
        layer["down_proj"] = args.intermediate_size * H
    layer["norms"] = 2 * H
    out = {"embedding": args.vocab_size * H}
    if not args.tie_word_embeddings:
        out["lm_head"] = args.vocab_size * H
    out.update({f"layer.{k}": v for k, v in layer.items()})
    out["per_layer"] = sum(layer.values())
    out["layers"] = L * out["per_layer"]
    out["final_norm"] = H
    out["total"] = out["embedding"] + out.get("lm_head", 0) + out["layers"] + H
    if args.use_moe:
        idle = (args.n_routed_experts - args.num_experts_per_tok) * expert
        out["active_per_layer"] = out["per_layer"] - idle
        out["active"] = out["total"] - L * idle
    return out


def flops_per_token(args: ModelArgs, seq_len: int, causal: bool = True) -> dict[str, float]:
    """Forward FLOPs per token (a multiply-add counts 2; elementwise ops are ignored).

    forward = 2 * L * (q + k + v + o + gate + up + down weights)   # linear layers
            + 2 * H * V                                             # LM head (tied or not)
            + L * 2 * 2 * ctx * n_heads * head_dim                  # QK^T and AV
    with ctx = (T + 1) / 2, the mean causal context over T positions (T without `causal`).
    The embedding lookup is a gather, not a matmul. For MoE only the active weights count
    (router + top-k routed + shared experts); the gate softmax/top-k are elementwise.
    """
    p = param_breakdown(args)
    L, H, V = args.num_hidden_layers, args.hidden_size, args.vocab_size
    linear = 2 * L * (p.get("active_per_layer", p["per_layer"]) - p["layer.norms"])
    ctx = (seq_len + 1) / 2 if causal else seq_len
    attn = L * 4 * ctx * args.num_attention_heads * args.head_dim
    head = 2 * H * V
    return {"linear": linear, "attention": attn, "lm_head": head, "forward": linear + attn + head}


def train_flops_per_token(forward: float, checkpoint_every_n: int = 0) -> float:
    """Forward + backward (2x forward), plus one forward more when layers are recomputed."""
    return forward * (4 if checkpoint_every_n else 3)


def lookup_peak(name: str, gpu_cores: int | None = None) -> tuple[str, dict] | None:
    """`(canonical name, {dtype: TFLOP/s})` for a known device name, else None."""
    u = " " + re.sub(r"[-_]", " ", name).upper() + " "
    m = re.search(r"\bM([1-4])(?: (PRO|MAX|ULTRA))?\b", u)
    if m and ("APPLE" in u or u.strip().startswith("M")):
        chip = f"M{m.group(1)}" + (f" {m.group(2).title()}" if m.group(2) else "")
        cores = gpu_cores or int((re.search(r"(\d+)\s*(?:CORE|C)\b", u) or [0, 0])[1])
        cores = cores or APPLE[chip][1][-1]
        fp32 = round(APPLE[chip][0] * cores, 2)
        return f"Apple {chip} ({cores}-core GPU)", dict(bfloat16=fp32, float16=fp32, float32=fp32)
    for key in ("H100", "H200", "A100"):
        if re.search(rf"\b{key}\b", u):
            form = "PCIe" if "PCIE" in u else "NVL" if "NVL" in u else "SXM"
            full = f"{key} {form}" if key != "H200" else ("H200 NVL" if form == "NVL" else key)
            full = full if full in NVIDIA else f"{key} SXM"
            return f"NVIDIA {full}", NVIDIA[full]
    for key in ("L40S", "L4", "A10", "T4", "RTX 4090", "RTX 3090"):
        if re.search(rf"\b{key}\b", u):
            return f"NVIDIA {key}", NVIDIA[key]
    return None


def measure_matmul_peak(seconds: float = 1.0, n: int = 1024) -> float:
    """fp32 matmul TFLOP/s of MLX's default device, measured for about `seconds`."""
    import mlx.core as mx

    a = mx.random.normal((n, n))
    b = mx.random.normal((n, n))
    mx.eval(a, b, a @ b)
    count, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or count == 0:
        mx.eval(a @ b)
        count += 1
    return 2 * n**3 * count / elapsed / 1e12


def _apple_gpu_cores() -> int | None:
    if sys.platform != "darwin":
        return None
    try:
        out = subprocess.run(
            ["system_profiler", "SPDisplaysDataType"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.findall(r"Total Number of Cores:\s*(\d+)", out)
    return int(found[-1]) if found else None


def detect_device() -> tuple[str, bool]:
    """`(name, is_gpu)` of the device MLX runs on: mx.device_info, else nvidia-smi."""
    import mlx.core as mx

    gpu = mx.default_device().type == mx.gpu
    info_fn = getattr(mx, "device_info", None) or mx.metal.device_info
    try:
        name = str(info_fn().get("device_name", ""))
    except Exception:
        name = ""
    if (
        gpu
        and not lookup_peak(name)
        and sys.platform.startswith("linux")
        and shutil.which("nvidia-smi")
    ):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            name = out.splitlines()[0] if out else name
        except (OSError, subprocess.SubprocessError):
            pass
    return name or "unknown", gpu


def device_peak(
    device: str | None, dtype: str, gpu_cores: int | None = None, measure_seconds: float = 1.0
) -> dict[str, Any]:
    """Peak TFLOP/s for `dtype`: from the tables, else a measured fp32 matmul peak."""
    name = device
    if name is None:
        name, gpu = detect_device()
        if gpu and gpu_cores is None and "APPLE" in name.upper():
            gpu_cores = _apple_gpu_cores()
    hit = lookup_peak(name, gpu_cores)
    if hit is not None:
        canon, table = hit
        return {"name": canon, "detected": name, "source": "table", "peak_tflops": table[dtype]}
    if device is not None:
        known = ", ".join([*APPLE, *NVIDIA])
        raise ValueError(f"--device {device!r} is not in the peak tables; use one of {known}")
    peak = measure_matmul_peak(measure_seconds)
    return {
        "name": name,
        "detected": name,
        "source": "measured fp32 matmul (used for every dtype)",
        "peak_tflops": peak,
    }


def compute_stats(
    args: ModelArgs,
    *,
    seq_len: int = 1024,
    batch_size: int = 1,
    accum_steps: int = 1,
    checkpoint_every_n: int = 0,
    causal: bool = True,
    dtype: str = "bfloat16",
    tok_s: float | None = None,
    step_ms: float | None = None,
    peak: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Parameters, FLOPs and (given `tok_s` or `step_ms`) achieved TFLOP/s and MFU vs `peak`."""
    fl = flops_per_token(args, seq_len, causal)
    train_tok = train_flops_per_token(fl["forward"], checkpoint_every_n)
    tokens = seq_len * batch_size * accum_steps
    out: dict[str, Any] = {
        "params": param_breakdown(args),
        "flops": {
            **fl,
            "train_per_token": train_tok,
            "tokens_per_step": tokens,
            "train_per_step": train_tok * tokens,
            "seq_len": seq_len,
            "causal": causal,
        },
        "dtype": dtype,
    }
    if peak is not None:
        out["device"] = peak
    if tok_s is not None or step_ms is not None:
        achieved = train_tok * tok_s if tok_s is not None else train_tok * tokens / (step_ms / 1e3)
        mfu = {"achieved_tflops": achieved / 1e12}
        if peak is not None and peak.get("peak_tflops"):
            mfu["mfu"] = achieved / 1e12 / peak["peak_tflops"]
        out["mfu"] = mfu
    return out


def _fmt(n: float) -> str:
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3f}{unit}"
    return f"{n:.0f}"


def _box(title: str, rows: list[tuple[str, str]]) -> str:
    w = max([len(k) + len(v) + 3 for k, v in rows] + [len(title) + 4])
    lines = [f"┌─ {title} " + "─" * (w - len(title) - 2) + "┐"]
    lines += [f"│ {k}{' ' * (w - len(k) - len(v) - 1)}{v} │" for k, v in rows]
    return "\n".join([*lines, "└" + "─" * (w + 1) + "┘"])


def render(s: dict[str, Any]) -> str:
    p, f = s["params"], s["flops"]
    total = p["total"]
    skip = ("total", *ACTIVE_KEYS)
    prow = [(k, f"{_fmt(v)}  {100 * v / total:5.1f}%") for k, v in p.items() if k not in skip]
    prow[0] = ("embedding (tied)" if "lm_head" not in p else "embedding", prow[0][1])
    prow.append(("total", f"{total:,}"))
    if "active" in p:
        prow.append(("active / token (MoE)", f"{p['active']:,}  {100 * p['active'] / total:5.1f}%"))
    frow = [
        ("linear / token", _fmt(f["linear"])),
        (
            f"attention / token ({'causal' if f['causal'] else 'full'} T={f['seq_len']})",
            _fmt(f["attention"]),
        ),
        ("lm head / token", _fmt(f["lm_head"])),
        ("forward / token", _fmt(f["forward"])),
        ("train / token", _fmt(f["train_per_token"])),
        (f"train / step ({f['tokens_per_step']} tokens)", _fmt(f["train_per_step"])),
    ]
    parts = [_box("Parameters", prow), _box("FLOPs", frow)]
    if d := s.get("device"):
        peak = d["peak_tflops"]
        parts.append(
            _box(
                "Device",
                [
                    ("name", d["name"]),
                    ("source", d["source"]),
                    (f"peak {s['dtype']}", "n/a" if peak is None else f"{peak:.2f} TFLOP/s"),
                ],
            )
        )
    if m := s.get("mfu"):
        rows = [("achieved", f"{m['achieved_tflops']:.3f} TFLOP/s")]
        if "mfu" in m:
            rows.append(("MFU", f"{100 * m['mfu']:.2f}%"))
        parts.append(_box("MFU", rows))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="minillm stats", description=__doc__)
    add_model_args(p)
    p.set_defaults(preset=None)
    p.add_argument("--checkpoint", default=None, help="checkpoint or run folder (its config)")
    p.add_argument("--seq_len", type=int, default=1024)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--accum_steps", type=int, default=1)
    p.add_argument("--checkpoint_every_n", type=int, default=0, help="adds 1 forward recompute")
    p.add_argument("--no_causal", action="store_true", help="count full T x T attention")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--tok_s", type=float, default=None, help="measured training tokens/s")
    speed.add_argument("--step_ms", type=float, default=None, help="measured ms per step")
    p.add_argument("--dtype", default="bf16", help="bf16 | fp16 | fp32 (peak to compare with)")
    p.add_argument("--device", default=None, help="device name for the peak table (else detected)")
    p.add_argument("--gpu_cores", type=int, default=None, help="Apple GPU core count")
    p.add_argument("--measure_seconds", type=float, default=1.0, help="unknown-device matmul run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    ns = p.parse_args(argv)

    dtype = DTYPES.get(ns.dtype, ns.dtype)
    if dtype not in DTYPES.values():
        raise ValueError(f"--dtype {ns.dtype!r}; use bf16, fp16 or fp32")
    for name in ("seq_len", "batch_size", "accum_steps"):
        if getattr(ns, name) < 1:
            raise ValueError(f"--{name}={getattr(ns, name)} must be >= 1")
    if ns.checkpoint_every_n < 0:
        raise ValueError(f"--checkpoint_every_n={ns.checkpoint_every_n} must be >= 0")
    for name in ("tok_s", "step_ms"):
        if getattr(ns, name) is not None and getattr(ns, name) <= 0:
            raise ValueError(f"--{name}={getattr(ns, name)} must be > 0")
    if ns.checkpoint is not None:
        if ns.preset is not None:
            raise ValueError("pass either --checkpoint or --preset, not both")
        from minillm.checkpoint import read_config, resolve_checkpoint

        args = read_config(resolve_checkpoint(ns.checkpoint))
    else:
        ns.preset = ns.preset or "200mb"
        args = model_args_from(ns, ModelArgs.vocab_size)
    peak = device_peak(ns.device, dtype, ns.gpu_cores, ns.measure_seconds)
    s = compute_stats(
        args,
        seq_len=ns.seq_len,
        batch_size=ns.batch_size,
        accum_steps=ns.accum_steps,
        checkpoint_every_n=ns.checkpoint_every_n,
        causal=not ns.no_causal,
        dtype=dtype,
        tok_s=ns.tok_s,
        step_ms=ns.step_ms,
        peak=peak,
    )
    print(json.dumps(s, indent=2) if ns.json else render(s))


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
