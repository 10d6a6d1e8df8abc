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
