"""`minillm plot RUN_DIR`: (re)draw a run's training curves as PNG files in RUN_DIR/plots/.

Reads RUN_DIR/metrics.jsonl (written by `minillm train`, also while it runs) and writes
one PNG per curve (loss, lr, tok/s, grad norm; reward, KL, clip share for an RL run;
held-out accuracy over wall time for a distillation or RL run) and run.png with all of them;
`minillm train`, `launch/distill.py` and `launch/rl.py` do the same at their end.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="minillm plot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run_dir",
        nargs="+",
        metavar="RUN_DIR",
        help="run folder(s) holding metrics.jsonl (the --out_dir of a train, distill or RL run)",
    )
    ns = p.parse_args(argv)

    from minillm.train.plots import plot_run, read_metrics

    for run_dir in ns.run_dir:
        path = Path(run_dir)
        if not path.is_dir():
            raise FileNotFoundError(
                f"run folder {path} does not exist; pass the --out_dir of a `minillm train` run"
            )
        if not read_metrics(path):
            raise ValueError(
                f"{path / 'metrics.jsonl'} has no log records yet; plot again "
                "after the run's first log step (--log_interval)"
            )
        written = plot_run(path)
        print(f"[plot] {path / 'plots'}: {', '.join(f.name for f in written)}")
    return 0


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
