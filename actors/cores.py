"""CPU cores per actor on a CPU-only node: `MINILLM_CORES="learner=0,rollout-0=1"` gives the
learner core 0 and rollout worker 0 core 1, so rollouts and training run side by side instead
of competing for the same cores (Ray's `num_cpus` only counts; it does not pin).

Pinning covers every thread of the actor's process (OpenBLAS's pool included) and sets
OpenBLAS's thread count to the number of cores given. Actors not named keep all cores.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

ENV = "MINILLM_CORES"


def parse(spec: str) -> dict[str, set[int]]:
    """`"learner=0-3,rollout-0=4,rollout-1=5"` -> `{name: cores}`; errors name the bad part."""
    out: dict[str, set[int]] = {}
    for part in filter(None, (p.strip() for p in spec.replace(";", ",").split(","))):
        name, _, cores = part.partition("=")
        if not name or not cores:
            raise ValueError(f"{ENV}: {part!r} is not NAME=CORES (e.g. learner=0-3)")
        try:
            lo, _, hi = cores.partition("-")
            out.setdefault(name.strip(), set()).update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise ValueError(f"{ENV}: {part!r}: cores must be N or N-M") from None
    return out


def _set_blas_threads(n: int) -> bool:
    try:
        fn = ctypes.CDLL(None).openblas_set_num_threads  # present when OpenBLAS is preloaded
    except (AttributeError, OSError):
        return False
    fn(ctypes.c_int(n))
    return True


def pin(name: str) -> set[int] | None:
    """Pin this process to the cores `MINILLM_CORES` gives `name` (None when not named)."""
    spec = os.environ.get(ENV, "")
    cores = parse(spec).get(name) if spec else None
    if not cores or not hasattr(os, "sched_setaffinity"):
        return None
    bad = cores - set(range(os.cpu_count() or 1))
    if bad:
        raise ValueError(f"{ENV}: {name} asks for cores {sorted(bad)} this machine cannot use")
    for tid in Path("/proc/self/task").iterdir():
        try:
            os.sched_setaffinity(int(tid.name), cores)
        except (ProcessLookupError, PermissionError):
            continue  # a thread that ended meanwhile
    _set_blas_threads(len(cores))
    return cores
