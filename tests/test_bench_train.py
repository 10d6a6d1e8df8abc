"""launch/bench_train.py: every implementation runs on a tiny CPU model and reports a ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_train_tiny_cpu():
    cmd = [sys.executable, str(ROOT / "launch" / "bench_train.py"), "--device", "cpu"]
    cmd += ["--preset", "tiny", "--seq_len", "128", "--batch_size", "4", "--steps", "1"]
    cmd += ["--warmup_steps", "0", "--dtype", "float32", "--no_compile_torch"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("[minillm] bs=4 ") and "tok/s=" in line for line in lines), (
        out.stdout
    )
    for peer in ("torch", "hf", "mlx_lm"):
        mine = [line for line in lines if line.startswith(f"[{peer}]")]
        assert any("ratio=" in line or "skipped" in line for line in mine), out.stdout
        assert not any("failed" in line for line in mine), out.stdout
