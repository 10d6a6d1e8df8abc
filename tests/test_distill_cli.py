"""`python launch/distill.py` refuses bad starts with one line and exit code 2, before Ray starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minillm.distill import parser
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def distill(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "launch" / "distill.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_unreachable_ollama_is_one_clear_message(tmp_path):
    port = free_port()
    r = distill("--out_dir", str(tmp_path / "d"), OLLAMA_URL=f"http://127.0.0.1:{port}")
    line = one_line_error(r)
    assert f"cannot reach Ollama at http://127.0.0.1:{port}" in line and "ollama serve" in line
    assert "--teacher oracle" in line
    assert "Ray" not in r.stdout  # nothing was started


def test_bad_settings_name_the_fix(tmp_path):
    line = one_line_error(distill("--teacher", "openai"))
    assert "--base_url" in line
    line = one_line_error(
        distill("--teacher", "oracle", "--max_steps", "0", "--total_samples", "0")
    )
    assert "MAX_STEPS" in line
    line = one_line_error(distill("--teacher", "oracle", "--init_from", str(tmp_path / "none")))
    assert "--init_from" in line and "config.json" in line
    (tmp_path / "run" / "shards").mkdir(parents=True)
    (tmp_path / "run" / "shards" / "manifest.json").write_text("{}")
    line = one_line_error(distill("--teacher", "oracle", "--out_dir", str(tmp_path / "run")))
    assert "--resume" in line


def test_env_vars_are_the_defaults(monkeypatch):
    for k, v in dict(
        GEN_WORKERS="3", COLD_SAMPLES="7", TOTAL_SAMPLES="99", MAX_STEPS="11", SEQ_LEN="64",
        BATCH_SIZE="5", ACCUM_STEPS="2", DTYPE="float32", PRESET="tiny", OUT_DIR="o",
        INIT_FROM="ck", DATA_JSONL="x.jsonl", OLLAMA_URL="http://h:1", OLLAMA_MODEL="m:1",
    ).items():  # fmt: skip
        monkeypatch.setenv(k, v)
    cfg = parser().parse([])
    assert (cfg.workers, cfg.cold_samples, cfg.total_samples) == (3, 7, 99)
    assert (cfg.ollama_url, cfg.ollama_model, cfg.data_jsonl) == ("http://h:1", "m:1", "x.jsonl")
    assert cfg.init_from == "ck" and cfg.model.to_dict() == {"preset": "tiny"}
    assert cfg.out_dir == "o"
    t = cfg.train
    assert (t.max_steps, t.seq_len, t.batch_size, t.accum_steps) == (11, 64, 5, 2)
    assert t.dtype == "float32" and t.out_dir == "o"
    assert cfg.dashboard_host == "127.0.0.1"
    assert parser().parse(["--seq_len", "32"]).train.seq_len == 32  # a flag beats the env
    monkeypatch.setenv("SEQ_LEN", "many")
    with pytest.raises(ValueError, match="SEQ_LEN='many'"):
        parser().parse([])
    with pytest.raises(SystemExit):
        parser().parser.parse_args(["--weights", "math=x"])


def test_model_shape_flags_override_the_preset(tmp_path):
    cfg = parser().parse(
        ["--out_dir", str(tmp_path), "--preset", "tiny", "--hidden_size", "96",
         "--num_key_value_heads", "1"]
    )  # fmt: skip
    assert cfg.model.to_dict() == {"preset": "tiny", "hidden_size": 96, "num_key_value_heads": 1}
    assert parser().parse(["--out_dir", str(tmp_path)]).model.to_dict() == {"preset": "200mb"}
