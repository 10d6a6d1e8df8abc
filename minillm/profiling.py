"""Helpers of the benchmark and profiling scripts (`launch/bench_*.py`, `launch/profile_*.py`):
memory and timing probes, peak FLOP/s lookups, and Nsight Compute kernel tables. The scripts
are the entry points; what they share lives here."""

from __future__ import annotations

import csv
import ctypes
import gc
import glob
import importlib.util
import io
import re
import shutil
import sys
import time
from collections import defaultdict

import mlx.core as mx

from minillm.stats import detect_device, lookup_peak

MIB = 2**20


def free_memory() -> None:
    gc.collect()
    mx.clear_cache()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MIB


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or "(no message)"
    return f"{type(e).__name__}: {text}"[:240]


def device_peak_tflops(device: str, dtype: str) -> tuple[str, float | None]:
    """Name and dense peak TFLOP/s from `minillm.stats` tables; None on CPU or when unknown."""
    if device == "cpu":
        return "cpu", None
    names = [detect_device()[0]]
    if "torch" in sys.modules or importlib.util.find_spec("torch"):
        try:
            import torch

            if torch.cuda.is_available():
                names.append(torch.cuda.get_device_name(0))
        except Exception:
            pass
    for name in names:
        hit = lookup_peak(name)
        if hit is not None:
            return hit[0], hit[1].get(dtype)
    return names[0], None


def timed(step, sync, warmup: int, steps: int, before_timing=None) -> float:
    """Seconds for `steps` calls of `step` after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    sync()
    if before_timing is not None:
        before_timing()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return time.perf_counter() - t0


# kernel-name patterns -> kind, first match wins
KINDS = (
    ("attention", r"cudnn|sdpa|flash|attention|fmha"),
    ("matmul", r"gemm|cutlass|sm90_xmma|nvjet|matmul|cublas"),
    ("loss", r"cross_entropy|logsumexp|softmax"),
    ("norm/rope", r"rms|rope|layer_norm"),
    ("reduce", r"reduce|all_reduce|row_reduce|col_reduce|sum"),
    ("copy", r"copy|gather|scatter|concat|slice"),
    ("optimizer", r"adamw"),
    ("fused elementwise", r"^[a-z]?[a-z]\d?i(astype|multiply|add|broadcast|subtract)|_vv|_vs|_sv"),
    ("elementwise", r"binary|unary|ternary|arange|random"),
)


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, pat in KINDS:
        if re.search(pat, low):
            return kind
    return "other"


def profiler(on: bool) -> None:
    """cuProfilerStart/Stop for the current CUDA context (what ncu's range waits for)."""
    lib = ctypes.CDLL("libcuda.so.1")
    rc = lib.cuProfilerStart() if on else lib.cuProfilerStop()
    if rc != 0:
        raise RuntimeError(f"cuProfiler{'Start' if on else 'Stop'} returned CUDA error {rc}")


def find_ncu() -> str:
    found = shutil.which("ncu") or sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu"))
    if not found:
        raise SystemExit("ncu (Nsight Compute) is not installed; --ncu needs it")
    return found if isinstance(found, str) else found[-1]


def kernel_table(csv_text: str, steps: int, top: int) -> None:
    rows = list(csv.DictReader(io.StringIO(csv_text[csv_text.index('"ID"') :])))
    col = "gpu__time_duration.sum"
    by_name: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        try:
            t = float(r[col].replace(",", ""))
        except ValueError:  # the units row
            continue
        by_name[r["Kernel Name"]].append(t)
    total = sum(sum(v) for v in by_name.values())
    n = sum(len(v) for v in by_name.values())
    print(f"\n{n / steps:.0f} kernels per step, {total / steps / 1e6:.2f} ms GPU time per step")
    kinds: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for name, v in by_name.items():
        kinds[kind_of(name)] += sum(v)
        calls[kind_of(name)] += len(v)
    print("\nby kind (ms per step, % of GPU time, kernels per step)")
    for k, t in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<18} {t / steps / 1e6:8.2f}  {100 * t / total:5.1f}%  {calls[k] / steps:6.0f}")
    print(f"\ntop {top} kernels (calls per step, ms per step, %, mean us)")
    ranked = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]
    for name, v in ranked:
        print(
            f"  {len(v) / steps:5.0f}  {sum(v) / steps / 1e6:7.3f}  {100 * sum(v) / total:5.1f}%  "
            f"{sum(v) / len(v) / 1e3:8.1f}  {name[:110]}"
        )
