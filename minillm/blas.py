"""Faster CPU matmuls: re-run the process with OpenBLAS preloaded when it is installed.

The `mlx[cpu]` wheel links a reference BLAS (~6 GFLOP/s for a 1024² fp32 matmul on 2 cores);
with OpenBLAS preloaded the same call runs ~50× faster. Nothing changes on macOS (Accelerate)
or when OpenBLAS is absent. MINILLM_OPENBLAS=0 turns it off; MINILLM_OPENBLAS=/path picks a
library (1 or auto: the default search).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)


def openblas_path() -> str | None:
    choice = os.environ.get("MINILLM_OPENBLAS", "")
    if choice == "0" or sys.platform != "linux":
        return None
    if choice not in ("", "1", "auto"):
        return choice if Path(choice).is_file() else None
    return next((c for c in CANDIDATES if Path(c).is_file()), None)


def load_for_mlx(keep_torch_blas: bool = True) -> str | None:
    """Make MLX's BLAS calls go to OpenBLAS in this process, without a re-exec.

    Loads OpenBLAS with RTLD_GLOBAL before `mlx.core` is imported, so MLX binds its
    `cblas_sgemm` there. PyTorch (MKL inside libtorch_cpu) would bind its `sgemm_` to
    OpenBLAS too if it loaded later, so with `keep_torch_blas` torch is imported first when
    installed (it then keeps its own BLAS). Returns the library path, or None when nothing was
    done (no OpenBLAS, not Linux, MINILLM_OPENBLAS=0, or MLX already imported).
    """
    lib = openblas_path()
    if lib is None or "mlx.core" in sys.modules:
        return None
    if keep_torch_blas:
        import importlib.util

        if importlib.util.find_spec("torch") is not None:
            import torch  # noqa: F401

    import ctypes

    ctypes.CDLL(lib, mode=os.RTLD_GLOBAL | os.RTLD_NOW)
    return lib


def maybe_reexec() -> None:
    """Re-exec this exact command line with OpenBLAS in LD_PRELOAD (once, Linux only)."""
    lib = openblas_path()
    preload = os.environ.get("LD_PRELOAD", "")
    if lib is None or "openblas" in preload or os.environ.get("MINILLM_REEXEC"):
        return
    argv = getattr(sys, "orig_argv", None)
    if not argv:
        return
    env = dict(os.environ, LD_PRELOAD=f"{lib} {preload}".strip(), MINILLM_REEXEC="1")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], env)
