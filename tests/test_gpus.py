"""GPUs as a Ray resource: how many a local Ray gets, and what the learner reserves."""

from __future__ import annotations

import os
import stat

from actors.driver import RayConfig, local_gpus, resolve_gpus


class FakeRay:
    def __init__(self, gpus: float):
        self.res = {"CPU": 2.0, **({"GPU": gpus} if gpus else {})}

    def cluster_resources(self) -> dict:
        return self.res


def fake_nvidia_smi(tmp_path, monkeypatch, lines: str) -> None:
    exe = tmp_path / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\nprintf '{lines}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_local_gpus_counts_nvidia_smi_and_respects_visible_devices(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake_nvidia_smi(
        tmp_path, monkeypatch, "GPU 0: NVIDIA H100 (UUID: a)\\nGPU 1: NVIDIA H100 (UUID: b)\\n"
    )
    assert local_gpus() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert local_gpus() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert local_gpus() == 0


def test_no_nvidia_smi_means_no_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no nvidia-smi
    assert local_gpus() == 0


def test_learner_takes_a_gpu_only_when_there_is_one():
    cfg = RayConfig()
    resolve_gpus(cfg, FakeRay(1))
    assert cfg.learner_gpus == 1.0
    cfg = RayConfig()
    resolve_gpus(cfg, FakeRay(0))
    assert cfg.learner_gpus == 0.0
    cfg = RayConfig(learner_gpus=0.5)  # an explicit choice stays
    resolve_gpus(cfg, FakeRay(1))
    assert cfg.learner_gpus == 0.5


def test_gpu_memory_shares_are_checked_before_ray_starts():
    import pytest

    from actors.distill import DistillConfig
    from actors.rl import RLConfig

    with pytest.raises(ValueError, match="learner_gpu_memory must be a fraction"):
        DistillConfig(teacher="oracle", learner_gpu_memory=0.0, train={"max_steps": 1})
    with pytest.raises(ValueError, match=r"eval_gpu_memory .* got 1.5"):
        DistillConfig(teacher="oracle", eval_gpu_memory=1.5, train={"max_steps": 1})
    with pytest.raises(ValueError, match="worker_gpu_memory"):
        RLConfig(init_from="x", worker_gpu_memory=-0.1, train={"max_steps": 1})


def test_gpu_memory_cap_changes_nothing_off_cuda():
    import mlx.core as mx
    import pytest

    from minillm.gpu_memory import cap

    if mx.cuda.is_available():
        pytest.skip("the CUDA path is measured by launch/stages.py on a GPU")
    before = mx.set_cache_limit(1 << 30)
    mx.set_cache_limit(before)
    assert cap(0.5) is None and cap(None) is None
    assert mx.set_cache_limit(before) == before  # the limit was left as it was
