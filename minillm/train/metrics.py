"""What a run writes about itself: run.json, metrics.jsonl (one JSON object per line) and
the one dense log line per logged step."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import mlx.core as mx


class MetricsLog:
    """`<out_dir>/metrics.jsonl`: one JSON object per line, flushed at once."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / "metrics.jsonl"

    def write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def event(self, name: str, **fields: Any) -> None:
        self.write({"event": name, **fields, "time": time.time()})


def write_run_json(out_dir: Path, **fields: Any) -> None:
    """`<out_dir>/run.json`: the resolved config and what the run started from."""
    record = {**fields, "time": time.time()}
    (Path(out_dir) / "run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def format_line(rec: dict) -> str:
    line = (
        f"step={rec['step']} loss={rec['loss']:.4f} lr={rec['lr']:.3e} "
        f"grad_norm={rec['grad_norm']:.3f} tok/s={rec['tok_s']:.0f} "
        f"ms/step={rec['ms_step']:.1f} peak_mem={rec['peak_mem_mib']:.0f}MiB"
    )
    line += "".join(f" {k}={rec[k]:.4g}" for k in rec.get("aux_keys", ()))
    if "ms" in rec:
        line += " " + " ".join(f"{k}={v:.1f}ms" for k, v in rec["ms"].items())
    return line


class Window:
    """The steps since the last log line: summed loss, tokens, aux sums and wall time."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.loss, self.n, self.tokens, self.steps = 0.0, 0.0, 0, 0
        self.aux: dict[str, float] = {}
        self.t = time.perf_counter()

    def add(self, loss: float, n: float, tokens: int, aux: dict[str, float]) -> None:
        self.loss += loss
        self.n += n
        self.tokens += tokens
        self.steps += 1
        for k, v in aux.items():
            self.aux[k] = self.aux.get(k, 0.0) + v

    def record(self, step: int, lr: float, norm: float, tokens_seen: int) -> dict:
        """The log record of the window (loss and aux per trained token), then a new window."""
        dt = time.perf_counter() - self.t
        n = max(self.n, 1.0)
        rec = {
            "event": "log",
            "step": step,
            "loss": self.loss / n,
            "lr": lr,
            "grad_norm": norm,
            "tok_s": self.tokens / max(dt, 1e-9),
            "ms_step": 1000 * dt / max(self.steps, 1),
            "peak_mem_mib": mx.get_peak_memory() / 2**20,
            "tokens_seen": tokens_seen,
            "time": time.time(),
        }
        for k, v in self.aux.items():
            rec[k] = v / n
        if self.aux:
            rec["aux_keys"] = sorted(self.aux)
        self.reset()
        return rec
