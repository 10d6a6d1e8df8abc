"""launch/profile_train.py: the ncu CSV table, kernel kinds, switches and the variant timing."""

from __future__ import annotations

import argparse
import re

from launch import profile_train as pt

# the shape of `ncu --csv --page raw --print-units base` output: log lines, header, units row,
# one row per kernel launch, durations with thousands separators
NCU = """==PROF== Connected to process 1
"ID","Kernel Name","Block Size","gpu__time_duration.avg","gpu__time_duration.sum"
"","","","ns","ns"
"0","col_reduce_looped","(256, 1, 1)","170,000","170,000"
"1","nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT","(384, 1, 1)","45,000","45,000"
"2","col_reduce_looped","(256, 1, 1)","170,000","170,000"
"3","custom_kernel_minillm_adamw_bfloat16_t_768_f","(256, 1, 1)","5,000","5,000"
"4","cudnn_generated_fort_native_sdpa_sm90_flash_bprop","(128, 1, 1)","10,000","10,000"
"""


def test_kernel_table_sums_by_name_and_kind(capsys):
    pt.kernel_table(NCU, steps=2, top=2)
    out = capsys.readouterr().out
    assert "2 kernels per step, 0.20 ms GPU time per step" in out
    rows = re.findall(r"^\s+(\w[\w /]*?)\s+(\d+\.\d\d)\s+[\d.]+%\s+(\d+)$", out, re.M)
    kinds = {k: t for k, t, _ in rows}
    assert {k: n for k, _, n in rows}["reduce"] == "1"  # kernels per step: 2 in 2 steps
    assert kinds == {"reduce": "0.17", "matmul": "0.02", "attention": "0.01", "optimizer": "0.00"}
    top = [line for line in out.splitlines() if "col_reduce_looped" in line or "nvjet" in line]
    assert len(top) == 2 and "col_reduce_looped" in top[0] and "85.0%" in top[0]


def test_kinds_of_mlx_kernel_names():
    assert pt.kind_of("Mf4IAsTypeANf4IBroadcastBOf4IMultiplyMNP_contiguous") == "fused elementwise"
    assert pt.kind_of("rms_norm_vjp_small_fallback") == "norm/rope"
    assert pt.kind_of("binary_vv") == "fused elementwise"
    assert pt.kind_of("something_new") == "other"


def test_switches_and_variants_on_cpu(capsys):
    assert set(pt.VARIANTS["no_whole"]) == set(pt.SWITCHES) - {"whole"}
    on = pt.switches(("whole",))
    assert on == {"fast_ce": False, "whole_step": True, "fused_adam": False, "multi_tensor": False,
                  "norm_split_grad": False, "swiglu_vjp": False}  # fmt: skip
    # The variant's settings reach the step and the model it trains, not module globals.
    from minillm.models.layers import MLP, RMSNorm

    ns = argparse.Namespace(preset="tiny", layers=1, seq_len=32, batch_size=1, dtype="float32")
    _, model, cfg = pt.build(ns, "whole")
    assert cfg.whole_step and not cfg.swiglu_vjp and not cfg.fused_adam
    from minillm.train.step import make_step

    step = make_step(model, cfg)
    mods = [m for _, m in model.named_modules()]
    assert step.whole and not any(m.swiglu_vjp for m in mods if isinstance(m, MLP))
    assert not any(m.split_grad for m in mods if isinstance(m, RMSNorm))
    assert not step.optimizer.fused
    pt.main(
        [
            "--preset",
            "tiny",
            "--layers",
            "1",
            "--seq_len",
            "32",
            "--batch_size",
            "1",
            "--steps",
            "2",
            "--dtype",
            "float32",
            "--variants",
            "base,all",
        ]
    )
    out = capsys.readouterr().out
    for name in ("base", "all"):
        for mode in ("sync", "pipelined"):
            assert re.search(rf"variant {name}\s+{mode}\s+[\d,]+ tok/s", out), out
        assert re.search(rf"variant {name}\s+host: [\d.]+ ms building", out), out


def test_loss_curves_of_two_variants_from_one_seed_fall_together(capsys):
    """`--curve N`: the same batches, the same seed; the loss falls and the step's switches
    change no loss on the CPU (their kernels are CUDA-only; there they must stay within 1e-2)."""
    ns = argparse.Namespace(preset="tiny", layers=1, seq_len=32, batch_size=2, dtype="float32")
    base, fused = pt.loss_curve(ns, "base", 12), pt.loss_curve(ns, "all", 12)
    assert len(base) == 12 and base[-1] < base[0] - 0.3, base
    assert max(abs(a - b) for a, b in zip(base, fused, strict=True)) <= 1e-5
    pt.main(["--preset", "tiny", "--layers", "1", "--seq_len", "32", "--batch_size", "2",
             "--dtype", "float32", "--curve", "4", "--variants", "base,all"])  # fmt: skip
    out = capsys.readouterr().out
    assert "curve all vs base: max |loss diff|" in out and "over 4 steps" in out
    assert "tok/s" not in out  # --curve does not also time the variants
