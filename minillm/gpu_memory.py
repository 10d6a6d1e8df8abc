"""Share one CUDA GPU between MLX processes.

MLX's CUDA allocator lets each process use up to 95% of the card and keeps freed buffers in
its own cache up to that size, so a learner's cache alone can take the memory an evaluator,
rollout worker or served teacher on the same GPU then fails to get (`cudaMallocAsync ... out
of memory`). `cap(fraction)` bounds this process's arrays plus cache near `fraction` of the
card: past it MLX frees cached buffers before it allocates. The limit is soft (an allocation
over it still succeeds), so a cap set too low costs speed, never a crash. No-op off CUDA.
"""

from __future__ import annotations


def check_fraction(fraction: float | None, name: str = "gpu_memory") -> float | None:
    """`fraction` if None or in (0, 1]; ValueError naming `name` otherwise."""
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"{name} must be a fraction of the GPU in (0, 1], got {fraction}")
    return fraction


def cap(fraction: float | None, name: str = "gpu_memory") -> int | None:
    """On a CUDA GPU, keep this process's MLX memory near `fraction` of the card and return
    the cap in bytes; None (nothing changed) for `fraction=None` or off CUDA."""
    import mlx.core as mx

    if check_fraction(fraction, name) is None or not mx.cuda.is_available():
        return None
    total = int(mx.device_info().get("total_memory", 0))
    if total <= 0:
        return None
    limit = int(total * fraction)
    mx.set_memory_limit(limit)
    mx.set_cache_limit(limit)
    return limit
