"""The CLI re-runs itself with OpenBLAS preloaded on Linux when the library is installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
