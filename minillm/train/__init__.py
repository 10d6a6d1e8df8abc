"""Training core: `train(model, loss_fn, batches, cfg, tokenizer=...)` and its parts."""

from minillm.train.config import TrainConfig
from minillm.train.loop import TrainResult, train


def main(argv=None):
    """`minillm train`: see `minillm.train.cli`."""
    from minillm.train.cli import main as _main

    return _main(argv)


__all__ = ["TrainConfig", "TrainResult", "main", "train"]
