"""MiniLLM: train small LLaMA-style language models with MLX."""

__version__ = "0.1.0"


def load(path, tokenizer_path=None, dtype=None):
    """Load `(model, tokenizer)` from a checkpoint folder, like `mlx_lm.load`."""
    from minillm.checkpoint import load as _load

    return _load(path, tokenizer_path=tokenizer_path, dtype=dtype)
