"""One typed config per run: flags made from the dataclasses, checks before Ray starts,
`--config` files, `--resume` reusing a run's saved settings, the environment table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minillm.config.distill import DistillConfig
from minillm.config.flags import from_dict, to_dict
from minillm.config.pipeline import load_settings
from minillm.distill import parser as distill_parser
from minillm.rl.cli import parser as rl_parser
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def launch(script: str, *args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    t = time.time()
    r = subprocess.run(
        [sys.executable, str(ROOT / "launch" / script), *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return r, time.time() - t


@pytest.mark.parametrize(
    "script,args,says",
    [
        ("distill.py", ["--teacher", "oracle", "--preset", "tiny", "--seq_len", "0"], "seq_len"),
        ("distill.py", ["--teacher", "bogus"], "invalid choice: 'bogus'"),
        ("distill.py", ["--teacher", "oracle", "--init_from", "nowhere"], "--init_from nowhere"),
        (
            "distill.py",
            ["--teacher", "oracle", "--preset", "tiny", "--seq_len", "40000"],
            "set --seq_len 32768 or less",
        ),
        (
            "distill.py",
            ["--teacher", "oracle", "--preset", "tiny", "--hidden_size", "100"],
            "head_dim=25",
        ),
        (
            "distill.py",
            ["--teacher", "ollama", "--ollama_url", "http://127.0.0.1:{port}"],
            "cannot reach Ollama",
        ),
        ("rl.py", ["--data_path", "x.jsonl"], "--init_from"),
        ("rl.py", ["--init_from", "nowhere"], "--init_from nowhere"),
        ("rl.py", ["--init_from", "x", "--num_rollouts", "10"], "multiple of"),
    ],
)
def test_a_bad_setting_fails_fast_in_one_line_before_ray(tmp_path, script, args, says):
    args = [a.replace("{port}", str(free_port())) for a in args]
    r, seconds = launch(script, *args, "--out_dir", str(tmp_path / "run"), cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stdout + r.stderr
    assert says in lines[0] and "Traceback" not in r.stderr
    assert "[ray]" not in r.stdout and not (tmp_path / "run" / "logs").exists()  # Ray never ran
    assert seconds < 10  # a Python start + the check; ~0.5 s here (README: Settings)


def test_flags_beat_config_file_beats_env(tmp_path, monkeypatch):
    f = tmp_path / "run.json"
    f.write_text(json.dumps({"workers": 3, "train": {"seq_len": 64, "batch_size": 4},
                             "model": {"preset": "tiny"}}))  # fmt: skip
    monkeypatch.setenv("GEN_WORKERS", "5")
    monkeypatch.setenv("COLD_SAMPLES", "9")
    cfg = distill_parser().parse(["--config", str(f), "--seq_len", "32"])
    assert (cfg.workers, cfg.cold_samples) == (3, 9)  # the file, then the env under it
    assert (cfg.train.seq_len, cfg.train.batch_size, cfg.model.preset) == (32, 4, "tiny")


@pytest.mark.parametrize("make", [distill_parser, rl_parser], ids=["distill", "rl"])
def test_a_saved_config_reads_back_equal_with_every_switch_flipped(tmp_path, make):
    """What the pipeline hands its Ray stages: a run's whole config as a `--config` file. Every
    bool field flipped from its default must survive (an old `--no_x` spelling's argparse
    default once overrode `dynamic_sampling: false` from the file)."""
    import dataclasses

    p = make()
    base = p.default()

    def flipped(cfg):
        over = {}
        for f in dataclasses.fields(cfg):
            v = getattr(cfg, f.name)
            if isinstance(v, bool):
                over[f.name] = not v
            elif dataclasses.is_dataclass(v):
                over[f.name] = flipped(v)
        return dataclasses.replace(cfg, **over)

    cfg = flipped(base)
    assert to_dict(cfg) != to_dict(base)
    f = tmp_path / "run.json"
    f.write_text(json.dumps(to_dict(cfg)))
    assert p.parse(["--config", str(f)]) == cfg


def test_a_bad_config_file_names_file_key_and_fix(tmp_path):
    f = tmp_path / "run.json"
    f.write_text(json.dumps({"train": {"seq_lenn": 64}}))
    with pytest.raises(
        ValueError, match=r"run.json: train: unknown setting 'seq_lenn'; did you mean 'seq_len'"
    ):
        distill_parser().parse(["--config", str(f)])
    f.write_text(json.dumps({"workers": "many"}))
    with pytest.raises(ValueError, match="run.json: workers: 'many' is not a int"):
        distill_parser().parse(["--config", str(f)])
    f.write_text('{\n  "workers": 3,\n}')
    with pytest.raises(ValueError, match=r"run.json:3: not valid JSON"):
        distill_parser().parse(["--config", str(f)])


def test_resume_reuses_the_saved_settings_and_typed_flags_win(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    saved = distill_parser().parse(
        ["--out_dir", str(run), "--teacher", "oracle", "--workers", "3", "--preset", "custom",
         "--hidden_size", "64", "--num_hidden_layers", "1", "--seq_len", "96"]
    )  # fmt: skip
    (run / "distill.json").write_text(json.dumps(saved.to_dict()))
    again = distill_parser().parse(["--out_dir", str(run), "--resume", "--max_steps", "9"])
    assert again.resume and again.train.max_steps == 9
    assert again.workers == 3 and again.teacher == "oracle" and again.train.seq_len == 96
    assert again.model.to_dict() == saved.model.to_dict()
    assert from_dict(DistillConfig, saved.to_dict()) == saved  # the file round-trips exactly


def test_one_name_one_meaning_across_verbs():
    rl = rl_parser().parse(["--init_from", "x", "--warmup_steps", "3", "--sft_steps", "50",
                            "--warmup_lr", "1e-3", "--seed", "7"])  # fmt: skip
    assert rl.train.warmup_steps == 3 and rl.sft_steps == 50 and rl.sft_lr == 1e-3
    assert rl.seed == rl.train.seed == 7
    assert rl_parser().parse(["--init_from", "x", "--lr_warmup_steps", "4"]).train.warmup_steps == 4
    d = distill_parser().parse(["--train_seed", "5", "--task_seed", "6", "--max_retries", "1"])
    assert (d.train.seed, d.task_seed, d.max_retries) == (5, 6, 1)
    assert rl_parser().parse(["--init_from", "x", "--run_bench", "0"]).run_bench is False
    assert (
        rl_parser().parse(["--init_from", "x", "--no_dynamic_sampling"]).dynamic_sampling is False
    )


def test_pipeline_settings_files_and_env(tmp_path):
    smoke = load_settings(True, {})
    assert smoke.out_dir == "out/smoke" and smoke.distill.teacher == "oracle"
    assert smoke.rl.train.max_steps == 4 and smoke.sft.bucket_sizes == [48, 64, 96]
    full = load_settings(False, {"SFT_MAX_STEPS": "7", "DTYPE": "float32", "CLEANUP_SMOKE": "1"})
    assert full.preset == "200mb" and full.sft.max_steps == 7 and full.dtype == "float32"
    assert full.cleanup_smoke is True
    with pytest.raises(ValueError, match="PRETRAIN_SEQ_LEN='x'"):
        load_settings(True, {"PRETRAIN_SEQ_LEN": "x"})
    own = tmp_path / "p.json"
    own.write_text(json.dumps({**to_dict(smoke), "out_dir": "elsewhere"}))
    assert load_settings(False, {}, str(own)).out_dir == "elsewhere"


def test_train_dtype_auto_is_float32_on_the_cpu(tmp_path, capsys):
    import mlx.core as mx

    from minillm.train.config import TrainConfig, resolve_dtype

    assert TrainConfig().dtype == "auto"
    gpu = mx.metal.is_available() or (hasattr(mx, "cuda") and mx.cuda.is_available())
    assert resolve_dtype("auto") == ("bfloat16" if gpu else "float32")
    assert resolve_dtype("float16") == "float16"


CONFIGS = ["TrainConfig", "ModelSpec", "DistillConfig", "RLConfig", "StageConfig",
           "PipelineConfig", "TrainJob", "DataConfig"]  # fmt: skip
# a value just past each bound (ints 2 below a >= bound: max_steps 0 means unset)
BOUNDS = {"ge": lambda b, t: b - (2 if t is int else 0.5), "gt": lambda b, t: b,
          "le": lambda b, t: b + 1, "lt": lambda b, t: b}  # fmt: skip
BAD = {"path": "", "text": " ", "url": "localhost:11434", "host": "http://x", "fraction": 0.0,
       "positive_ints": [0], "betas": (1.0, 0.5), "lora_targets": ("nope",),
       "preset_name": "huge", "task_weights": {"nope": 1.0}, "core_spec": "x=y"}  # fmt: skip


def config_classes():
    import minillm.config.distill as d
    import minillm.config.job as j
    import minillm.config.model as m
    import minillm.config.pipeline as p
    import minillm.config.rl as r
    import minillm.train.config as t

    found = {}
    for mod in (d, j, m, p, r, t):
        found.update({n: getattr(mod, n) for n in CONFIGS if hasattr(mod, n)})
    assert sorted(found) == sorted(CONFIGS)
    return found


@pytest.mark.parametrize("name", CONFIGS)
def test_every_field_has_help_and_its_own_check_that_fires(name):
    """Each setting says what it is and refuses a bad value by naming itself: a bound, a list
    of choices, or a check function, tried here with a value on the wrong side of it."""
    import dataclasses

    from minillm.config.flags import _base, _hints

    cls = config_classes()[name]
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp, meta = _base(hints[f.name]), f.metadata
        assert meta.get("help"), f"{name}.{f.name} has no help"
        if dataclasses.is_dataclass(tp) or tp is bool:
            continue  # a nested config checks itself; a bool has no wrong value
        tries = [fn(meta[k], tp) for k, fn in BOUNDS.items() if k in meta]
        if "choices" in meta:
            tries.append("no-such-choice")
        if "check" in meta:
            tries.append(BAD[meta["check"].__name__])
        assert tries, f"{name}.{f.name} has no check"
        for bad in tries:
            with pytest.raises(ValueError, match=f"--{f.name}"):
                cls(**{f.name: bad})
                print(f"{name}.{f.name}={bad!r} was taken")


def test_model_presets_named_in_the_config_are_the_models():
    from minillm.config.model import PRESETS
    from minillm.model import PRESETS as MODEL_PRESETS

    assert set(PRESETS) == set(MODEL_PRESETS)
