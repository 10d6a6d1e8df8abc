"""`minillm stats` (parameters, FLOPs, peaks, MFU) and `minillm speed` on a tiny model."""

from __future__ import annotations

import json
import re

import mlx.core as mx
import pytest
from conftest import TINY_FLAGS

from minillm import cli
from minillm.model import Model, ModelArgs, num_params
from minillm.speed import main as speed_main
from minillm.stats import (
    compute_stats,
    flops_per_token,
    lookup_peak,
    measure_matmul_peak,
    param_breakdown,
)
from minillm.stats import main as stats_main

TINY = TINY_FLAGS
SPEED = [*TINY, "--seq_len", "64", "--steps", "2", "--warmup_steps", "1", "--dtype", "float32"]
ROW = re.compile(
    r"^\[(\w+)\] steps=(\d+) bs=(\d+) seq=(\d+) step_ms=([\d.]+) tok/s=([\d.]+) "
    r"active_mem=(\d+) MiB peak_mem=(\d+) MiB"
)


@pytest.mark.parametrize(
    "args",
    [
        ModelArgs.from_preset("tiny"),
        ModelArgs.from_preset("200mb"),
        ModelArgs(
            hidden_size=96,
            num_hidden_layers=3,
            num_attention_heads=6,
            num_key_value_heads=3,
            head_dim=20,
            intermediate_size=200,
            vocab_size=300,
            tie_word_embeddings=False,
        ),
    ],
)
def test_param_breakdown_matches_model(args):
    p = param_breakdown(args)
    assert p["total"] == num_params(Model(args))
    assert p["layers"] == args.num_hidden_layers * p["per_layer"]
    assert ("lm_head" in p) == (not args.tie_word_embeddings)


def test_flops_by_hand():
    a = ModelArgs(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=100,
    )
    # per layer: q 64*64 + k,v 2*64*32 + o 64*64 + mlp 3*64*128 = 36864 weights
    f = flops_per_token(a, seq_len=8)
    assert f["linear"] == 2 * 2 * 36864
    assert f["lm_head"] == 2 * 64 * 100
    assert f["attention"] == 2 * 4 * 4.5 * 64  # L * (QK^T + AV) * mean causal ctx * n_q*hd
    assert f["forward"] == 147456 + 12800 + 2304
    assert flops_per_token(a, 8, causal=False)["attention"] == 2 * 4 * 8 * 64
    s = compute_stats(a, seq_len=8, checkpoint_every_n=1)
    assert s["flops"]["train_per_token"] == 4 * 162560
    assert compute_stats(a, seq_len=8)["flops"]["train_per_token"] == 3 * 162560


def test_mfu_from_tok_s_and_step_ms_agree():
    a = ModelArgs.from_preset("tiny")
    peak = {"name": "x", "source": "table", "peak_tflops": 10.0}
    kw = dict(seq_len=128, batch_size=4, accum_steps=2, peak=peak)
    tok_s = 5000.0
    by_tok = compute_stats(a, tok_s=tok_s, **kw)["mfu"]
    by_ms = compute_stats(a, step_ms=1e3 * 128 * 4 * 2 / tok_s, **kw)["mfu"]
    assert by_tok["mfu"] == pytest.approx(by_ms["mfu"], rel=1e-9)
    assert by_tok["mfu"] == pytest.approx(by_tok["achieved_tflops"] / 10.0)


def test_peak_tables():
    assert lookup_peak("NVIDIA H100 80GB HBM3") == (
        "NVIDIA H100 SXM",
        pytest.approx({"bfloat16": 989.4, "float16": 989.4, "float32": 66.9}),
    )
    assert lookup_peak("NVIDIA H100 PCIe")[1]["bfloat16"] == 756.0
    assert lookup_peak("NVIDIA A100-SXM4-80GB")[0] == "NVIDIA A100 SXM"
    assert lookup_peak("NVIDIA A100 80GB PCIe")[0] == "NVIDIA A100 PCIe"
    assert lookup_peak("NVIDIA H200")[1]["bfloat16"] == 989.4
    assert lookup_peak("NVIDIA L40S")[0] == "NVIDIA L40S"
    assert lookup_peak("NVIDIA L4")[0] == "NVIDIA L4"
    assert lookup_peak("NVIDIA A10")[0] == "NVIDIA A10"
    assert lookup_peak("NVIDIA GeForce RTX 4090")[1]["float32"] == 82.6
    assert lookup_peak("Tesla T4")[1]["bfloat16"] is None
    name, t = lookup_peak("Apple M2 Max", gpu_cores=30)
    assert name == "Apple M2 Max (30-core GPU)" and t["float32"] == pytest.approx(10.74)
    assert lookup_peak("Apple M1")[0] == "Apple M1 (8-core GPU)"
    assert lookup_peak("M4 Pro 16-core")[0] == "Apple M4 Pro (16-core GPU)"
    assert lookup_peak("Apple M3 Ultra")[1]["bfloat16"] > 25
    assert lookup_peak("AMD EPYC") is None


def test_measured_peak_positive():
    assert measure_matmul_peak(0.05, n=128) > 0


def test_stats_cli(tiny_ckpt, capsys):
    from minillm.checkpoint import load_model

    stats_main(["--checkpoint", tiny_ckpt, "--device", "H100", "--tok_s", "1e5", "--json"])
    s = json.loads(capsys.readouterr().out)
    assert s["params"]["total"] == num_params(load_model(tiny_ckpt))
    assert s["device"]["peak_tflops"] == 989.4 and 0 < s["mfu"]["mfu"] < 1
    stats_main([*TINY, "--seq_len", "64", "--step_ms", "100", "--measure_seconds", "0.05"])
    out = capsys.readouterr().out
    for title in ("Parameters", "FLOPs", "Device", "MFU"):
        assert f"─ {title} " in out
    if mx.default_device().type == mx.cpu:
        assert "measured fp32 matmul" in out


def _rows(text: str) -> dict[str, list[re.Match]]:
    rows: dict[str, list[re.Match]] = {}
    for line in text.splitlines():
        if m := ROW.match(line):
            rows.setdefault(m.group(1), []).append(m)
    return rows


def test_speed_tiny(capsys):
    speed_main(
        [
            *SPEED,
            "--runs",
            "2",
            "--infer_prompt_len",
            "16",
            "--infer_new_tokens",
            "8",
            "--profile_timing",
        ]
    )
    rows = _rows(capsys.readouterr().out)
    assert set(rows) == {"train", "train_mean", "infer_decode", "infer_decode_mean"}
    assert len(rows["train"]) == 2
    for ms in rows.values():
        for m in ms:
            assert float(m.group(6)) > 0 and float(m.group(5)) > 0
    assert rows["train"][0].group(3, 4) == ("1", "64")


@pytest.mark.parametrize(
    "extra",
    [
        ["--sparse_loss", "--mask_density", "0.5"],
        ["--logits_chunk_size", "16"],
        ["--checkpoint_every_n", "1", "--accum_steps", "2"],
        ["--lora_r", "4", "--lora_targets", "q_proj,v_proj", "--optimizer", "lion"],
        ["--no-compile", "--optimizer", "adafactor"],
        ["--no-fused_kernels"],
    ],
)
def test_speed_switches(extra, capsys):
    speed_main([*SPEED, "--no_infer", "--json", *extra])
    out = json.loads(capsys.readouterr().out)
    assert "infer_decode" not in out and out["train"][0]["tok_s"] > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["stats", "--dtype", "int8"],
        ["stats", "--device", "Foo 9000"],
        ["stats", "--checkpoint", "/nonexistent/ckpt"],
        ["stats", "--checkpoint", "x", "--preset", "tiny"],
        ["stats", "--seq_len", "0"],
        ["speed", *TINY, "--mask_density", "0"],
        ["speed", *TINY, "--steps", "0"],
        ["speed", *TINY, "--lora_r", "2", "--lora_targets", "nope"],
    ],
)
def test_bad_flags_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_trace_on_cpu_is_an_error(capsys):
    if mx.metal.is_available() or mx.cuda.is_available():
        pytest.skip("GPU backend")
    with pytest.raises(SystemExit):
        cli.main(["speed", *TINY, "--trace", "x.gputrace"])
    assert "not on CPU" in capsys.readouterr().err
