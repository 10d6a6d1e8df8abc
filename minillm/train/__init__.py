"""Training core: `train(model, loss_fn, batches, cfg, tokenizer=...)` and its parts."""

from minillm.train.config import TrainConfig
from minillm.train.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
