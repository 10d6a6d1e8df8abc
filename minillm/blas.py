"""Faster CPU matmuls: MLX's BLAS calls go to OpenBLAS, with nothing for the user to install.

The `mlx[cpu]` wheel links a reference BLAS (~6 GFLOP/s for a 1024² fp32 matmul on 2 cores);
OpenBLAS runs the same call ~25x faster. numpy's wheels ship OpenBLAS with renamed, 64-bit
integer symbols (`scipy_cblas_sgemm64_`), so MiniLLM compiles once, with the C compiler MLX's
own CPU kernels need, a small library that exports `cblas_sgemm` (and d/cgemm,
`openblas_set_num_threads`) forwarding to numpy's copy, and loads it before MLX. Without a
compiler, a system OpenBLAS (`apt-get install libopenblas0-pthread`) is used when present.

MINILLM_OPENBLAS=0 turns this off; MINILLM_OPENBLAS=/path/libopenblas.so picks a library
(1 or auto: the default search). Nothing changes on macOS (Accelerate).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)

SHIM = r"""
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
typedef int64_t I;
void scipy_cblas_sgemm64_(int, int, int, I, I, I, float, const float*, I, const float*, I,
                          float, float*, I);
void scipy_cblas_dgemm64_(int, int, int, I, I, I, double, const double*, I, const double*, I,
                          double, double*, I);
void scipy_cblas_cgemm64_(int, int, int, I, I, I, const void*, const void*, I, const void*, I,
                          const void*, void*, I);
void scipy_openblas_set_num_threads64_(int);
int scipy_openblas_get_num_threads64_(void);

void cblas_sgemm(int o, int ta, int tb, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  scipy_cblas_sgemm64_(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void cblas_dgemm(int o, int ta, int tb, int m, int n, int k, double alpha, const double* a,
                 int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  scipy_cblas_dgemm64_(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void cblas_cgemm(int o, int ta, int tb, int m, int n, int k, const void* alpha, const void* a,
                 int lda, const void* b, int ldb, const void* beta, void* c, int ldc) {
  scipy_cblas_cgemm64_(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void openblas_set_num_threads(int n) { scipy_openblas_set_num_threads64_(n); }
int openblas_get_num_threads(void) { return scipy_openblas_get_num_threads64_(); }
#ifdef __cplusplus
}
#endif
"""

_warned: set[str] = set()


def _note(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        print(f"[minillm] {msg}", file=sys.stderr, flush=True)


def numpy_openblas() -> str | None:
    """The OpenBLAS library inside numpy's wheel (Linux), or None."""
    import importlib.util

    spec = importlib.util.find_spec("numpy")
    if spec is None or not spec.origin:
        return None
    libs = Path(spec.origin).parent.parent / "numpy.libs"
    found = sorted(glob.glob(str(libs / "libscipy_openblas64_*.so")))
    return found[0] if found else None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "minillm"


def shim_for(lib: str) -> str | None:
    """Path of the forwarding library for numpy's OpenBLAS `lib`, compiled on first use."""
    key = hashlib.sha256((SHIM + lib).encode()).hexdigest()[:16]
    out = cache_dir() / f"libminillm_openblas-{key}.so"
    if out.is_file():
        return str(out)
    cc = next((c for c in ("cc", "gcc", "clang", "g++") if shutil.which(c)), None)
    if cc is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(f".{os.getpid()}.c")
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    src.write_text(SHIM)
    cmd = [cc, "-O2", "-shared", "-fPIC", str(src), lib]
    cmd += [f"-Wl,-rpath,{Path(lib).parent}", "-o", str(tmp)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            _note(f"could not build the OpenBLAS shim ({' '.join(cmd)}): {r.stderr.strip()}")
            return None
        os.replace(tmp, out)  # atomic: concurrent processes each build, one file wins
    finally:
        src.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return str(out)


def openblas_path() -> str | None:
    """The library to load before MLX: the shim over numpy's OpenBLAS, else a system
    OpenBLAS, else None (reference BLAS: slow matmuls, said once on stderr)."""
    choice = os.environ.get("MINILLM_OPENBLAS", "")
    if choice == "0" or sys.platform != "linux":
        return None
    if choice not in ("", "1", "auto"):
        return choice if Path(choice).is_file() else None
    np_lib = numpy_openblas()
    shim = shim_for(np_lib) if np_lib else None
    if shim:
        return shim
    system = next((c for c in CANDIDATES if Path(c).is_file()), None)
    if system is None:
        _note(
            "no OpenBLAS found: CPU matmuls use MLX's reference BLAS (~25x slower); install "
            "a C compiler (for numpy's OpenBLAS) or `apt-get install libopenblas0-pthread`"
        )
    return system


def load_for_mlx(keep_torch_blas: bool = True) -> str | None:
    """Make MLX's BLAS calls go to OpenBLAS in this process, without a re-exec.

    Loads the library with RTLD_GLOBAL before `mlx.core` is imported, so MLX binds its
    `cblas_sgemm` there. A system OpenBLAS would also take PyTorch's `sgemm_` (MKL inside
    libtorch_cpu) if torch loaded later, so with `keep_torch_blas` torch is imported first
    when installed (the numpy shim exports only cblas_* names and leaves torch alone anyway).
    Returns the library path, or None when nothing was done (no OpenBLAS, not Linux,
    MINILLM_OPENBLAS=0, or MLX already imported).
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
