"""What a person sees when a Ray run's output goes through a pipe (a log file, CI, `| tee`):
plain lines without colour codes, a line at least every 10 s from the start, none of Ray's own
start-up records (they go to the run's logs/ray.log), and a closing summary block."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import TINY_FLAGS, free_port

ROOT = Path(__file__).resolve().parents[1]


def timed_lines(cmd: list[str], timeout: float = 300) -> tuple[int, list[tuple[float, str]]]:
    """Exit code and (seconds since start, line) of each line `cmd` writes (stderr merged)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=ROOT)  # fmt: skip
    lines = []
    for line in p.stdout:
        lines.append((time.monotonic() - t0, line.rstrip("\n")))
        assert time.monotonic() - t0 < timeout, lines[-5:]
    return p.wait(timeout=60), lines


def test_piped_distill_output_is_plain_steady_and_ends_with_a_summary(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "launch/distill.py", "--teacher", "oracle", "--workers", "1",
           "--num_cpus", "2", "--out_dir", str(out), "--no-compile", "--dtype", "float32",
           "--seq_len", "128", "--batch_size", "8", "--max_steps", "4", "--warmup_steps", "1",
           "--save_interval", "4", "--eval_samples", "8", "--dashboard_port", str(free_port()),
           *TINY_FLAGS]  # fmt: skip
    rc, lines = timed_lines(cmd)
    text = "\n".join(line for _, line in lines)
    assert rc == 0, text
    assert "\x1b[" not in text and "\r" not in text  # no colour codes, no bars
    times = [0.0] + [t for t, _ in lines]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert lines[0][0] < 5 and max(gaps) <= 10, [(round(t, 1), s[:60]) for t, s in lines]
    ray_log = out / "logs" / "ray.log"
    assert "Started a local Ray instance" in ray_log.read_text()
    assert "Started a local Ray instance" not in text and "Token authentication" not in text
    block = text[text.index("[distill] summary") :].splitlines()
    assert block[1].split()[0] == "checkpoint" and "step_00000004" in block[1]
    assert any(b.split()[0] == "plots" and b.endswith("run.png") for b in block)
    assert any(b.split()[0] == "held-out" and "accuracy" in b for b in block)
    assert (out / "plots" / "run.png").is_file() and (out / "plots" / "accuracy.png").is_file()
