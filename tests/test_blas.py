"""OpenBLAS for MLX's CPU matmuls: numpy's copy through a compiled shim, or a system one; the
CLI re-runs itself with it preloaded."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from minillm import blas
from minillm.blas import openblas_path

PROBE = (
    "from minillm.cli import run\n"
    "def main(argv):\n"
    "    maps = open('/proc/self/maps').read()\n"
    "    print('openblas' in maps, flush=True)\n"
    "run(main)\n"
)


def probe(env_extra: dict[str, str]) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MINILLM_REEXEC")}
    r = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env={**env, **env_extra},
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.skipif(openblas_path() is None, reason="OpenBLAS is not installed")
def test_entry_point_preloads_openblas():
    assert probe({}) == "True"
    assert probe({"MINILLM_OPENBLAS": "0"}) == "False"


def test_opt_out_and_missing_library(monkeypatch):
    monkeypatch.setenv("MINILLM_OPENBLAS", "0")
    assert openblas_path() is None
    monkeypatch.setenv("MINILLM_OPENBLAS", "/nonexistent/libopenblas.so.0")
    assert openblas_path() is None


@pytest.mark.skipif(openblas_path() is None, reason="OpenBLAS is not installed")
def test_explicit_on_means_auto(monkeypatch):
    found = openblas_path()
    for value in ("1", "auto", ""):
        monkeypatch.setenv("MINILLM_OPENBLAS", value)
        assert openblas_path() == found


BIND_PROBE = (
    "from minillm.blas import load_for_mlx\n"
    "lib = load_for_mlx(keep_torch_blas=False)\n"
    "import mlx.core as mx, numpy as np\n"
    "a = np.random.default_rng(0).standard_normal((96, 80)).astype(np.float32)\n"
    "got = np.array(mx.array(a) @ mx.array(a.T))\n"
    "print(lib, float(np.abs(got - a @ a.T).max()), flush=True)\n"
)


@pytest.mark.skipif(blas.numpy_openblas() is None, reason="numpy ships no OpenBLAS here")
def test_mlx_matmuls_go_to_numpy_openblas_with_nothing_installed(tmp_path):
    """The shim is built into the cache on first use and MLX's cblas_sgemm binds to it."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MINILLM_OPENBLAS")}
    env.update(XDG_CACHE_HOME=str(tmp_path), LD_DEBUG="bindings")
    r = subprocess.run(
        [sys.executable, "-c", BIND_PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lib, err = r.stdout.split()
    assert lib.startswith(str(tmp_path / "minillm" / "libminillm_openblas-")), lib
    assert float(err) < 1e-3
    assert f"libmlx.so [0] to {lib} [0]: normal symbol `cblas_sgemm'" in r.stderr
    assert "libscipy_openblas64_" in r.stderr  # the shim forwards to numpy's OpenBLAS


@pytest.mark.skipif(blas.numpy_openblas() is None, reason="numpy ships no OpenBLAS here")
def test_shim_sets_openblas_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    lib = ctypes.CDLL(blas.shim_for(blas.numpy_openblas()))
    before = lib.openblas_get_num_threads()
    lib.openblas_set_num_threads(1)
    assert lib.openblas_get_num_threads() == 1
    lib.openblas_set_num_threads(before)


def test_no_compiler_and_no_system_openblas_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MINILLM_OPENBLAS", raising=False)
    monkeypatch.setattr(blas.shutil, "which", lambda name: None)
    monkeypatch.setattr(blas, "CANDIDATES", ())
    monkeypatch.setattr(blas, "_warned", set())
    assert blas.openblas_path() is None
    assert "no OpenBLAS found" in capsys.readouterr().err


@pytest.mark.skipif(blas.numpy_openblas() is None, reason="numpy ships no OpenBLAS here")
def test_shim_build_error_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(blas, "SHIM", "this is not C;")
    monkeypatch.setattr(blas, "_warned", set())
    assert blas.shim_for(blas.numpy_openblas()) is None
    err = capsys.readouterr().err
    assert "could not build the OpenBLAS shim" in err and "error" in err
    assert not list((tmp_path / "minillm").glob("*"))  # no half-written library left behind
