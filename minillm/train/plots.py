"""Training curves from `<run_dir>/metrics.jsonl` as PNG files in `<run_dir>/plots/`."""

from __future__ import annotations

import json
import os
from pathlib import Path

CURVES = (
    ("loss", "loss (per token)"),
    ("lr", "learning rate"),
    ("tok_s", "tokens / s"),
    ("grad_norm", "gradient norm"),
)


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The `event == "log"` records of metrics.jsonl (bad lines of a killed run are skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; pass a run folder written by `minillm train`")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("event", "log") == "log" and "step" in rec:
            records.append(rec)
    return records


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """Write loss.png, lr.png, tok_s.png, grad_norm.png; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    out = Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, title in CURVES:
        # a resumed run re-logs steps after its checkpoint: keep the latest value per step
        points = {r["step"]: r[key] for r in records if key in r}
        if not points:
            continue
        steps = sorted(points)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, [points[s] for s in steps])
        ax.set_xlabel("step")
        ax.set_title(title)
        if key == "loss" and min(points.values()) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"{key}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
