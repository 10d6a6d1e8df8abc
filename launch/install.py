"""Install MiniLLM with the MLX backend that fits this machine.

    python launch/install.py            # pip install -e ".[<backend>]"
    python launch/install.py --test     # plus the test extra (pytest, torch, ruff)

macOS -> plain mlx (Metal); Linux with a working NVIDIA driver -> the `cuda` extra
(mlx[cuda13]); other Linux -> the `cpu` extra (mlx[cpu]). The two Linux extras both install
mlx/lib/libmlx.so, so exactly one is chosen. `--backend` overrides the detection.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def detect_backend() -> str:
    if platform.system() == "Darwin":
        return "metal"
    smi = shutil.which("nvidia-smi")
    if smi and subprocess.run([smi, "-L"], capture_output=True).returncode == 0:
        return "cuda"
    return "cpu"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=["auto", "cpu", "cuda", "metal"], default="auto")
    p.add_argument("--test", action="store_true", help="also install the test extra")
    p.add_argument("--dry_run", action="store_true", help="print the pip command only")
    ns = p.parse_args(argv)
    backend = detect_backend() if ns.backend == "auto" else ns.backend
    extras = [e for e in (backend if backend != "metal" else "", "test" if ns.test else "") if e]
    target = f"{ROOT}[{','.join(extras)}]" if extras else str(ROOT)
    cmd = [sys.executable, "-m", "pip", "install", "-e", target]
    print(f"[install] backend={backend}: {' '.join(cmd)}", flush=True)
    if ns.dry_run:
        return 0
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
