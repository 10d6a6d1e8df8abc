"""`minillm train` end to end, exact resume after SIGKILL, LoRA + fuse, and the eval/plot verbs."""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from conftest import TINY_FLAGS

from minillm import cli
from minillm.checkpoint import load
from minillm.data.batching import Batches

MODEL = TINY_FLAGS
FAST = [
    "--dtype",
    "float32",
    "--seq_len",
    "32",
    "--batch_size",
    "4",
    "--warmup_steps",
    "1",
    "--learning_rate",
    "3e-3",
]
PNG = b"\x89PNG\r\n\x1a\n"
# `python -m minillm.train` whose batches take 0.2 s longer, so a test can kill it mid-run;
# run(main) is a process entry point (it re-execs with OpenBLAS like the real CLI), so its
# numerics match the uninterrupted and the resumed runs
SLOW_TRAIN = """import sys, time
from minillm.data import batching
nxt = batching.Batches.__next__
def slow(self):
    time.sleep(0.2)
    return nxt(self)
batching.Batches.__next__ = slow
from minillm.cli import run
from minillm.train.cli import main
run(main)
"""
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
    ),
}


def write_jsonl(path: Path, records: list, bad: dict[int, str] | None = None) -> str:
    lines = [json.dumps(r) for r in records]
    for i, text in (bad or {}).items():
        lines.insert(i - 1, text)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def pretrain_data(path: Path, n: int = 40) -> str:
    return write_jsonl(path, [{"text": "the cat sat on the mat. " * (1 + i % 4)} for i in range(n)])


def sft_data(path: Path, n: int = 24) -> str:
    def turns(i: int) -> list[dict]:
        if i % 3 == 0:  # short samples, for the 16-token bucket
            return [{"role": "user", "content": "hi"}, {"role": "assistant", "content": f"{i}"}]
        return [
            {"role": "user", "content": f"what is {i} plus {i % 3}?" + " please" * (i % 4)},
            {"role": "assistant", "content": f"{i} plus {i % 3} is {i + i % 3}."},
        ]

    return write_jsonl(path, [{"conversations": turns(i)} for i in range(n)])


def train_subprocess(argv: list[str], out: Path) -> Path:
    """`python -m minillm.train ARGV --out_dir OUT` (in-process runs may use another BLAS)."""
    r = subprocess.run(
        [sys.executable, "-m", "minillm.train", *argv, "--out_dir", str(out)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return out


def verb(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def train(argv: list[str], capsys) -> tuple[str, str]:
    code, out, err = verb(["train", *argv], capsys)
    assert code == 0, err
    return out, err


def records(run_dir: str | Path, event: str | None = "log") -> list[dict]:
    recs = []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by SIGKILL
            continue
        if event is None or rec.get("event") == event:
            recs.append(rec)
    return recs


def final_checkpoint(run_dir: str | Path) -> Path:
    return sorted((Path(run_dir) / "checkpoints").glob("step_*"))[-1]


def safetensors_dtypes(path: Path) -> set[str]:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("data")
    return {
        "pretrain": pretrain_data(d / "pt.jsonl", 100),
        "sft": sft_data(d / "sft.jsonl"),
        "small": pretrain_data(d / "small.jsonl", 12),
    }


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, data) -> Path:
    """A 20-step pretrain run folder (fp32, compiled step, the CLI's defaults elsewhere)."""
    out = tmp_path_factory.mktemp("pre") / "run"
    with pytest.raises(SystemExit) as e:
        cli.main(
            [
                "train",
                "--data_path",
                data["pretrain"],
                *MODEL,
                *FAST,
                "--epochs",
                "2",
                "--max_steps",
                "20",
                "--log_interval",
                "1",
                "--save_interval",
                "10",
                "--out_dir",
                str(out),
            ]
        )
    assert e.value.code == 0
    return out


def test_train_loss_falls_run_json_metrics_and_plots(pretrained, capsys):
    losses = [r["loss"] for r in records(pretrained)]
    assert len(losses) == 20 and losses[-1] < losses[0] - 2.0
    run = json.loads((pretrained / "run.json").read_text())
    assert run["total_steps"] == 20 and run["start_step"] == 0 and run["resumed_from"] is None
    assert run["config"]["seq_len"] == 32 and run["config"]["dtype"] == "float32"
    assert run["config"]["learning_rate"] == 3e-3 and run["trainable_params"] == run["params"]
    assert [p.name for p in sorted((pretrained / "checkpoints").iterdir())] == [
        "step_00000010",
        "step_00000020",
    ]
    assert all(r["tok_s"] > 0 and r["tokens_seen"] > 0 for r in records(pretrained))
    plots = pretrained / "plots"
    for f in plots.iterdir():
        f.unlink()
    code, out, err = verb(["plot", str(pretrained)], capsys)
    assert code == 0, err
    names = {f.name for f in plots.iterdir()}
    assert {"loss.png", "lr.png", "tok_s.png"} <= names and "loss.png" in out
    for name in names:
        blob = (plots / name).read_bytes()
        assert blob[:8] == PNG and blob[12:16] == b"IHDR"
        w, h = struct.unpack(">II", blob[16:24])
        assert w > 100 and h > 100
    code, _, err = verb(["plot", str(pretrained / "nope")], capsys)
    assert code == 2 and "does not exist" in err and err.count("\n") == 1


def test_train_flag_and_data_errors_are_one_line(tmp_path, data, pretrained, capsys):
    base = [
        "--data_path",
        data["pretrain"],
        *MODEL,
        *FAST,
        "--no-compile",
        "--warmup_steps",
        "0",
        "--out_dir",
        str(tmp_path / "x"),
    ]
    code, _, err = verb(
        [
            "train",
            *base,
            "--init_from",
            str(final_checkpoint(pretrained)),
            "--resume",
            str(pretrained),
        ],
        capsys,
    )
    assert code == 2 and "exclude each other" in err and err.count("\n") == 1
    records_ = [{"text": "a b c d e f g h " * 3}] * 5
    bad = write_jsonl(tmp_path / "bad.jsonl", records_, {3: '{"text": "no end'})
    base[1] = bad
    code, _, err = verb(["train", *base], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{bad}:3: bad JSON" in err and "--skip_bad_lines" in err
    out, err = train([*base, "--skip_bad_lines", "--out_dir", str(tmp_path / "skip")], capsys)
    assert "skipped 1 bad lines (bad JSON: 1)" in err and "[train] done" in out


def test_steps_from_data_and_bf16_checkpoint(tmp_path, data, capsys):
    out = tmp_path / "run"
    train(
        [
            "--data_path",
            data["small"],
            *MODEL,
            *FAST,
            "--dtype",
            "bfloat16",
            "--no-compile",
            "--seq_len",
            "16",
            "--batch_size",
            "4",
            "--epochs",
            "2",
            "--accum_steps",
            "2",
            "--log_interval",
            "4",
            "--warmup_steps",
            "1",
            "--out_dir",
            str(out),
        ],
        capsys,
    )
    _, tok = load(final_checkpoint(out))
    batches = Batches(data["small"], tok, "pretrain", 16, 4, epochs=2)
    n_batches = batches.num_batches()
    run = json.loads((out / "run.json").read_text())
    assert run["total_steps"] == math.ceil(n_batches / 2)
    end = records(out, "end")[-1]
    assert end["step"] == run["total_steps"]
    assert end["tokens_seen"] == sum(b.n_tokens for b in batches)  # every batch was trained
    ckpt = final_checkpoint(out)
    assert safetensors_dtypes(ckpt / "model.safetensors") == {"BF16"}
    assert json.loads((ckpt / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_init_from_loads_weights_only(tmp_path, data, pretrained, capsys):
    base = final_checkpoint(pretrained)
    out = tmp_path / "run"
    train(
        [
            "--data_path",
            data["pretrain"],
            *FAST,
            "--no-compile",
            "--init_from",
            str(base),
            "--max_steps",
            "3",
            "--log_interval",
            "1",
            "--out_dir",
            str(out),
        ],
        capsys,
    )
    run = json.loads((out / "run.json").read_text())
    assert run["start_step"] == 0 and run["resumed_from"] is None
    assert run["base_model"] == str(base)
    logs = records(out)
    assert [r["step"] for r in logs] == [1, 2, 3] and logs[0]["tokens_seen"] < 200
    assert logs[0]["loss"] < records(pretrained)[0]["loss"] - 2.0  # the weights came along
    opt = mx.load(str(final_checkpoint(out) / "optimizer.safetensors"))
    assert opt["step"].item() == 3  # a fresh optimizer, not the base run's 20 steps


def kill_and_resume(
    tmp_path: Path, args: list[str], resume_args: list[str], reference: Path
) -> Path:
    """Run `args` in a subprocess, SIGKILL it after its first checkpoint, `--resume` it in
    another and check its per-step logs equal those of the uninterrupted `reference` run."""
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_TRAIN, *args, "--out_dir", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while not ((out / "metrics.jsonl").is_file() and records(out, "checkpoint")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    train_subprocess([*resume_args, "--resume", str(out)], out)
    events = records(out, None)
    start = max(i for i, e in enumerate(events) if e.get("event") == "start")
    resumed_at = events[start]["step"]
    assert events[start]["resumed_from"] and 2 <= resumed_at < 8  # killed mid-run
    after = [e for e in events[start:] if e.get("event") == "log"]
    ref = {r["step"]: r for r in records(reference)}
    assert [r["step"] for r in after] == list(range(resumed_at + 1, 9))
    for rec in after:
        for key in ("loss", "grad_norm", "lr", "tokens_seen"):
            assert rec[key] == ref[rec["step"]][key], (rec["step"], key)  # bitwise
    # throughput counts this process's tokens: the first step's, not everything seen so far
    first = after[0]
    step_tokens = first["tokens_seen"] - ref[resumed_at]["tokens_seen"]
    assert first["tok_s"] * first["ms_step"] / 1000 == pytest.approx(step_tokens, rel=1e-6)
    return out


def test_sft_run_killed_with_sigkill_resumes_exactly(tmp_path, data):
    args = [
        "--data_path",
        data["sft"],
        "--task",
        "sft",
        *MODEL,
        *FAST,
        "--batch_size",
        "2",
        "--bucket_sizes",
        "16",
        "--shuffle_buffer",
        "8",
        "--max_steps",
        "8",
        "--log_interval",
        "1",
        "--save_interval",
        "2",
    ]
    reference = train_subprocess(args, tmp_path / "ref")
    kill_and_resume(tmp_path, args, args, reference)


@pytest.fixture(scope="module")
def lora_args(data, pretrained) -> list[str]:
    return [
        "--data_path",
        data["sft"],
        "--task",
        "sft",
        *FAST,
        "--batch_size",
        "2",
        "--lora_r",
        "4",
        "--lora_dropout",
        "0.1",
        "--learning_rate",
        "1e-2",
        "--max_steps",
        "8",
        "--log_interval",
        "1",
        "--save_interval",
        "2",
    ]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, lora_args, pretrained) -> Path:
    return train_subprocess(
        [*lora_args, "--init_from", str(final_checkpoint(pretrained))],
        tmp_path_factory.mktemp("lora") / "run",
    )


def test_lora_run_killed_with_sigkill_resumes_exactly(tmp_path, lora_args, lora_run, pretrained):
    base = str(final_checkpoint(pretrained))
    out = kill_and_resume(tmp_path, [*lora_args, "--init_from", base], lora_args, lora_run)
    conf = json.loads((final_checkpoint(out) / "adapter_config.json").read_text())
    assert conf["base_model"] == base  # kept across the resume, so it can resume again


def test_lora_adapters_fuse_and_load_in_infer_and_eval(
    tmp_path, data, lora_run, pretrained, capsys
):
    run = json.loads((lora_run / "run.json").read_text())
    L, d, kv, ff, r = 2, 64, 2 * 16, 128, 4
    shapes = [(d, d), (d, kv), (d, kv), (d, d), (d, ff), (d, ff), (ff, d)]
    assert run["trainable_params"] == L * sum(r * (i + o) for i, o in shapes)
    ckpt = final_checkpoint(lora_run)
    assert {"adapters.safetensors", "adapter_config.json"} <= {p.name for p in ckpt.iterdir()}
    adapters = mx.load(str(ckpt / "adapters.safetensors"))
    assert all("lora_" in k for k in adapters) and len(adapters) == L * 7 * 2
    base = final_checkpoint(pretrained)
    fused = tmp_path / "fused"
    code, out, err = verb(
        ["fuse", "--adapter_path", str(lora_run), "--out_dir", str(fused)], capsys
    )  # --model defaults to the adapters' base model
    assert code == 0, err
    w_fused = mx.load(str(fused / "model.safetensors"))
    w_ckpt = mx.load(str(ckpt / "model.safetensors"))
    assert set(w_fused) == set(w_ckpt)
    assert all(mx.allclose(w_fused[k], w_ckpt[k], atol=1e-6).item() for k in w_fused)
    assert not mx.array_equal(
        w_fused["model.layers.0.self_attn.q_proj.weight"],
        mx.load(str(base / "model.safetensors"))["model.layers.0.self_attn.q_proj.weight"],
    ).item()
    ev = [
        "eval",
        "--task",
        "sft",
        "--data_path",
        data["sft"],
        "--seq_len",
        "32",
        "--batch_size",
        "2",
        "--max_batches",
        "0",
        "--log_interval",
        "0",
    ]
    results = []
    for where in (
        ["--checkpoint", str(fused)],
        ["--checkpoint", str(base), "--adapter_path", str(ckpt)],
    ):
        code, out, err = verb([*ev, *where], capsys)
        assert code == 0, err
        results.append(json.loads(out.splitlines()[-1]))
        gen = [
            "infer",
            *where,
            "--prompt",
            "what is 3 plus 0?",
            "--max_new_tokens",
            "6",
            "--min_new_tokens",
            "6",
        ]
        code, out, err = verb(gen, capsys)
        assert code == 0, err
        results[-1]["text"] = out
    assert results[0]["avg_loss"] == pytest.approx(results[1]["avg_loss"], rel=1e-5)
    assert results[0]["text"] == results[1]["text"]
    code, _, err = verb([*ev, "--checkpoint", str(base), "--adapter_path", str(tmp_path)], capsys)
    assert code == 2 and "adapter_config.json is missing" in err


def numpy_masked_ce(model, batch) -> tuple[float, float]:
    logits = np.array(model(mx.array(batch.inputs)).astype(mx.float32)).astype(np.float64)
    m = logits.max(-1, keepdims=True)
    logz = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
    picked = np.take_along_axis(logits, batch.targets[..., None].astype(np.int64), -1)[..., 0]
    return float(((logz - picked) * batch.mask).sum()), float(batch.mask.sum())


@pytest.mark.parametrize("task", ["sft", "pretrain"])
def test_eval_is_token_weighted_masked_ce_chunked_or_not(tmp_path, data, tiny_ckpt, task, capsys):
    model, tok = load(tiny_ckpt)
    n_batches = 3
    sums = [
        numpy_masked_ce(model, b)
        for _, b in zip(range(n_batches), Batches(data[task], tok, task, 32, 2), strict=False)
    ]
    expected = sum(s for s, _ in sums) / sum(n for _, n in sums)
    if task == "sft":  # batches hold different token counts: a mean of means would differ
        assert len({n for _, n in sums}) > 1
    got = {}
    for chunk in ("0", "7"):
        out_json = tmp_path / f"eval{chunk}.json"
        code, out, err = verb(
            [
                "eval",
                "--checkpoint",
                tiny_ckpt,
                "--task",
                task,
                "--data_path",
                data[task],
                "--seq_len",
                "32",
                "--batch_size",
                "2",
                "--max_batches",
                str(n_batches),
                "--logits_chunk_size",
                chunk,
                "--log_interval",
                "1",
                "--out_json",
                str(out_json),
            ],
            capsys,
        )
        assert code == 0, err
        assert out.startswith(f"[eval] batches={n_batches} tokens={int(sum(n for _, n in sums))}")
        assert err.count("[eval] batch ") == n_batches
        got[chunk] = json.loads(out_json.read_text())
        assert got[chunk] == json.loads(out.splitlines()[-1])
    for res in got.values():
        assert res["avg_loss"] == pytest.approx(expected, rel=1e-5)
        assert res["ppl"] == pytest.approx(math.exp(res["avg_loss"]))
    assert got["0"]["avg_loss"] == pytest.approx(got["7"]["avg_loss"], rel=1e-6)


def test_long_line_limit_and_zero_usable_rows(tmp_path, capsys):
    """A line over --max_line_mb is a one-line error naming file:line (or a counted skip,
    read through without holding it); a run left with no usable row exits 2 and says why."""
    good = [{"text": "a b c d e f g h " * 3}] * 6
    long = json.dumps({"text": "x" * 300_000})  # 0.29 MiB
    path = write_jsonl(tmp_path / "long.jsonl", good, {4: long})
    base = ["--data_path", path, *MODEL, *FAST, "--no-compile", "--max_steps", "2"]
    code, _, err = verb(
        ["train", *base, "--max_line_mb", "0.25", "--out_dir", str(tmp_path / "x")], capsys
    )
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{path}:4: line too long: 0.3 MiB > --max_line_mb 0.25" in err
    out, err = train(
        [*base, "--max_line_mb", "0.25", "--skip_bad_lines", "--out_dir", str(tmp_path / "s")],
        capsys,
    )
    assert "skipped 1 bad lines (line too long: 1)" in err and "[train] done" in out
    out, _ = train([*base, "--max_line_mb", "1", "--out_dir", str(tmp_path / "ok")], capsys)
    assert "[train] done" in out  # under the limit the same line trains
    cases = [("empty", "", []), ("allbad", "{oops\nnot json\n", []), ("allbad", "{x\n", ["3"])]
    for name, text, steps in cases:
        p = tmp_path / f"{name}.jsonl"
        p.write_text(text)
        argv = ["train", "--data_path", str(p), *MODEL, *FAST, "--no-compile", "--skip_bad_lines"]
        argv += ["--max_steps", *steps] if steps else []
        code, out, err = verb([*argv, "--out_dir", str(tmp_path / name)], capsys)
        assert code == 2 and "Traceback" not in err, (code, out, err)
        assert err.count("\n") == 1 and "no usable" in err and str(p) in err, err
