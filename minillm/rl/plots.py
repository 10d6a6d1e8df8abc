"""RL curves from `<run_dir>/metrics.jsonl` as PNGs: reward, pass rate, response length,
staleness (per step), KL and clip fraction (per log window), GSM8K accuracy (per evaluation)."""

from __future__ import annotations

import json
import os
from pathlib import Path

CURVES = (
    ("rl", "reward", "mean reward"),
    ("rl", "pass_rate", "pass rate"),
    ("rl", "resp_len", "response tokens"),
    ("rl", "staleness", "staleness (versions)"),
    ("log", "kl", "KL to reference (k3)"),
    ("log", "clip_frac", "clipped token share"),
    ("eval", "gsm8k_accuracy", "GSM8K test accuracy"),
)


def plot_rl(run_dir: str | os.PathLike) -> list[Path]:
    """Write one PNG per curve that has data, plus the training curves; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minillm.train.plots import plot_run

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; pass an RL run folder")
    recs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    out_dir = Path(run_dir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = list(plot_run(run_dir))
    for event, key, label in CURVES:
        pts = [(r["step"], r[key]) for r in recs if r.get("event") == event and key in r]
        pts = [(s, v) for s, v in pts if s is not None]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        f = out_dir / f"{key}.png"
        fig.savefig(f, dpi=100)
        plt.close(fig)
        written.append(f)
    return written
