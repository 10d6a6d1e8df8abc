"""Install MiniLLM with the MLX backend that fits this machine.

    python3 launch/install.py                 # pip install -e ".[<backend>]" here
    python3 launch/install.py --test          # plus the test extra (pytest, torch, ruff, ...)
    python3 launch/install.py --venv .venv    # the same inside .venv (created when missing)

`make smoke` and `make test` (the Makefile) call it with `--venv .venv`.

macOS -> plain mlx (Metal); Linux with a working NVIDIA driver -> the `cuda` extra
(mlx[cuda13]); other Linux -> the `cpu` extra (mlx[cpu]). The two Linux extras both install
mlx/lib/libmlx.so, so exactly one is chosen. `--backend` overrides the detection.

With `--test` on Linux without an NVIDIA GPU, PyTorch's CPU build is installed first (a wheel
on local disk if pip finds one, else PyTorch's CPU index), so the test extra never pulls the
2.8 GB CUDA build onto a machine that cannot use it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def detect_backend() -> str:
    if platform.system() == "Darwin":
        return "metal"
    smi = shutil.which("nvidia-smi")
    if smi and subprocess.run([smi, "-L"], capture_output=True).returncode == 0:
        return "cuda"
    return "cpu"


def pip_command(backend: str, test: bool) -> list[str]:
    extras = [e for e in (backend if backend != "metal" else "", "test" if test else "") if e]
    target = f"{ROOT}[{','.join(extras)}]" if extras else str(ROOT)
    return [sys.executable, "-m", "pip", "install", "-q", "-e", target]


def torch_cpu_commands() -> list[list[str]]:
    """Ways to get PyTorch's CPU build, tried in order: a wheel in pip's local `find-links`
    (its dependencies then come with the test extra), then PyTorch's CPU index."""
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    return [
        [*pip, "--no-index", "--no-deps", "torch"],
        [*pip, "torch", "--index-url", TORCH_CPU_INDEX],
    ]


def has_torch() -> bool:
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
    return subprocess.run([sys.executable, "-c", code]).returncode == 0


def in_venv(venv: Path) -> bool:
    return Path(sys.prefix).resolve() == venv.resolve()


def enter_venv(venv: Path, argv: list[str]) -> int:
    """Create `venv` when it is missing and run this script again with its Python."""
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not py.exists():
        print(f"[install] creating {venv}", flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", str(venv)])
    return subprocess.call([str(py), str(Path(__file__).resolve()), *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=["auto", "cpu", "cuda", "metal"], default="auto")
    p.add_argument("--test", action="store_true", help="also install the test extra")
    p.add_argument("--venv", default=None, help="install into this virtualenv (made if missing)")
    p.add_argument("--dry_run", action="store_true", help="print the pip command only")
    ns = p.parse_args(argv)
    if ns.venv and not ns.dry_run and not in_venv(Path(ns.venv)):
        return enter_venv(Path(ns.venv), argv)
    backend = detect_backend() if ns.backend == "auto" else ns.backend
    cmd = pip_command(backend, ns.test)
    print(f"[install] backend={backend}: {' '.join(cmd)}", flush=True)
    if ns.dry_run:
        return 0
    if ns.test and backend == "cpu" and platform.system() == "Linux" and not has_torch():
        for torch_cmd in torch_cpu_commands():
            print(f"[install] PyTorch CPU build: {' '.join(torch_cmd[3:])}", flush=True)
            if subprocess.call(torch_cmd, stderr=subprocess.DEVNULL) == 0:
                break
        else:
            print(f"[install] error: no PyTorch CPU build found (tried local wheels and "
                  f"{TORCH_CPU_INDEX}); install one, then run this again", file=sys.stderr)  # fmt: skip
            return 2
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
