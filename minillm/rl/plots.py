"""RL curves: `minillm.train.plots.plot_run` draws them (reward, pass rate, response length,
staleness, KL, clip fraction, GSM8K accuracy over wall time) with the training curves."""

from __future__ import annotations

from minillm.train.plots import plot_run as plot_rl

__all__ = ["plot_rl"]
