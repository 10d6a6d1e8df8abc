"""A run's curves from `<run_dir>/metrics.jsonl` as PNG files in `<run_dir>/plots/`.

One PNG per curve that has data (loss.png, lr.png, ..., reward.png, accuracy.png) and
`run.png` with all of them as panels. Training curves come from the "log" records, RL curves
from the "rl" records (per GRPO step), held-out accuracy from the "eval" records, drawn over
wall-clock minutes since the run started, so a distillation or RL run shows what it learned per
minute. Steps get integer ticks; a log axis gets labelled ticks at 1, 2 and 5 per decade.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# (file name, record event, key, title, log y axis)
CURVES = (
    ("loss", "log", "loss", "loss (per token)", True),
    ("lr", "log", "lr", "learning rate", False),
    ("tok_s", "log", "tok_s", "tokens / s", False),
    ("grad_norm", "log", "grad_norm", "gradient norm", True),
    ("reward", "rl", "reward", "mean reward", False),
    ("pass_rate", "rl", "pass_rate", "pass rate", False),
    ("resp_len", "rl", "resp_len", "response tokens", False),
    ("staleness", "rl", "staleness", "staleness (versions)", False),
    ("kl", "log", "kl", "KL to reference (k3)", False),
    ("clip_frac", "log", "clip_frac", "clipped token share", False),
)
# held-out accuracy keys of "eval" records, drawn together over wall time
ACCURACY = (("accuracy", "synthetic suites"), ("gsm8k_accuracy", "GSM8K test"))


def read_records(run_dir: str | os.PathLike) -> list[dict]:
    """Every record of metrics.jsonl (bad lines of a killed run are skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; pass a run folder written by `minillm train`")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The `event == "log"` records of metrics.jsonl."""
    recs = read_records(run_dir)
    return [r for r in recs if r.get("event", "log") == "log" and "step" in r]


def series(records: list[dict]) -> list[tuple[str, str, dict, bool]]:
    """(name, title, {step: value}, log axis) per curve with data; a resumed run re-logs steps
    after its checkpoint, so the latest value per step is kept."""
    out = []
    for name, event, key, title, log in CURVES:
        pts = {
            r["step"]: r[key]
            for r in records
            if r.get("event", "log") == event and key in r and r.get("step") is not None
        }
        if pts:
            out.append((name, title, pts, log and min(pts.values()) > 0))
    return out


def accuracy_over_time(records: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """{label: [(minutes since the run's first record, accuracy)]} from the "eval" records."""
    times = [r["time"] for r in records if isinstance(r.get("time"), (int, float))]
    if not times:
        return {}
    t0, out = min(times), {}
    for key, label in ACCURACY:
        pts = [
            ((r["time"] - t0) / 60, r[key])
            for r in records
            if r.get("event") == "eval" and key in r and "time" in r
        ]
        if pts:
            out[label] = sorted(pts)
    return out


def _style(ax, log: bool, steps: bool) -> None:
    from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter

    if steps:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3)


def _draw(ax, panel) -> None:
    kind, title, data, log = panel
    if kind == "accuracy":
        for label, pts in data.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_xlabel("minutes")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
        _style(ax, False, False)
    else:
        steps = sorted(data)
        ax.plot(steps, [data[s] for s in steps], marker="o" if len(steps) < 30 else None)
        ax.set_xlabel("step")
        _style(ax, log, True)
    ax.set_title(title)


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """Write one PNG per curve with data and run.png with all of them; returns the files."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_records(run_dir)
    panels = [(name, ("curve", title, pts, log)) for name, title, pts, log in series(records)]
    acc = accuracy_over_time(records)
    if acc:
        panels.append(("accuracy", ("accuracy", "held-out accuracy over wall time", acc, False)))
    out = Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, panel in panels:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        _draw(ax, panel)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    if panels:
        cols = 2 if len(panels) > 1 else 1
        rows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows), squeeze=False)
        for ax, (_, panel) in zip(axes.flat, panels, strict=False):
            _draw(ax, panel)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.suptitle(Path(run_dir).resolve().name)
        fig.tight_layout()
        path = out / "run.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
