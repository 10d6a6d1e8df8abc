"""launch/install.py picks exactly one MLX backend extra for the machine."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dry_run(*args: str) -> str:
    r = subprocess.run(
        [sys.executable, str(ROOT / "launch" / "install.py"), "--dry_run", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_backend_extras_are_exclusive_and_chosen():
    assert dry_run("--backend", "cuda").endswith(f"{ROOT}[cuda]")
    assert dry_run("--backend", "cpu", "--test").endswith(f"{ROOT}[cpu,test]")
    assert dry_run("--backend", "metal").endswith(str(ROOT))
    spec = importlib.util.spec_from_file_location("install", ROOT / "launch" / "install.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert f"backend={mod.detect_backend()}" in dry_run()


def test_pyproject_declares_one_mlx_per_extra():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = meta["project"]["optional-dependencies"]
    assert extras["cpu"] == ["mlx[cpu]>=0.30; sys_platform == 'linux'"]
    assert extras["cuda"] == ["mlx[cuda13]>=0.30; sys_platform == 'linux'"]
    base = [d for d in meta["project"]["dependencies"] if d.startswith("mlx")]
    assert base == ["mlx>=0.30; sys_platform == 'darwin'"]
    assert meta["tool"]["uv"]["conflicts"] == [[{"extra": "cpu"}, {"extra": "cuda"}]]
    assert meta["project"]["scripts"]["minillm"] == "minillm.cli:main"
