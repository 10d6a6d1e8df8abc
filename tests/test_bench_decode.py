"""launch/bench_decode.py on a tiny CPU model: table rows, ratio lines, scaling, llama.cpp."""

from __future__ import annotations

import importlib.util

import mlx.core as mx

from launch.bench_decode import Result, main


def tiny_cpu(*flags: str) -> dict:
    """`main()` on the tiny preset in fp32 on the CPU, one run, no settling pause."""
    base = ["--preset", "tiny", "--dtype", "float32", "--runs", "1", "--settle", "0"]
    with mx.stream(mx.cpu):
        return main([*base, *flags])


def test_bench_decode_tiny_cpu(capsys):
    results = tiny_cpu("--prompt_len", "8", "--new_tokens", "4", "--batch_sizes", "1,4")
    out = capsys.readouterr().out
    lines = out.splitlines()
    for impl in ("minillm", "eager", "mlx_lm", "llama_cpp"):
        for b in (1, 4):
            assert any(line.split("|")[:2] == [f"{impl:<9} ", f" {b:>5} "] for line in lines), out
    for b in (1, 4):
        # MiniLLM and mlx-lm measured, greedy on the same weights: identical tokens
        ours, theirs = results[("minillm", b)], results[("mlx_lm", b)]
        assert isinstance(ours, Result) and isinstance(theirs, Result), out
        assert [len(t) for t in ours.tokens] == [4] * b
        assert ours.tokens == theirs.tokens == results[("eager", b)].tokens
        assert any(line.startswith(f"[eager] batch={b} ratio=") for line in lines), out
        assert any(line.startswith(f"[mlx_lm] batch={b} ratio=") for line in lines), out
        lc = [line for line in lines if line.startswith(f"[llama_cpp] batch={b} ")]
        if importlib.util.find_spec("llama_cpp") is None:
            assert f"[llama_cpp] batch={b} skipped (not installed)" in lc, out
        else:
            assert any("ratio=" in line for line in lc), out
    assert any(line.startswith("[minillm] scaling batch=4/batch=1: ") for line in lines), out
    assert "failed" not in out


def test_bench_decode_reports_missing_llama_cpp(capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real(name, *a),
    )
    results = tiny_cpu("--prompt_len", "4", "--new_tokens", "2", "--batch_sizes", "1",
                       "--peers", "llama_cpp")  # fmt: skip
    out = capsys.readouterr().out
    assert results[("llama_cpp", 1)] == "skipped (not installed)"
    assert "[llama_cpp] batch=1 skipped (not installed)" in out.splitlines()
    assert "llama_cpp |     1 | skipped (not installed)" in out
