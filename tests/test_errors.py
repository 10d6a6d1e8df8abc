"""Bad checkpoints and bad flags give a one-line error naming the file and the fix, no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_tiny

from minillm import cli
from minillm.checkpoint import save_model

SMOKE_SFT = str(Path(__file__).parents[1] / "minillm" / "assets" / "data" / "smoke_sft.jsonl")
LOAD_VERBS = [
    ["infer", "--checkpoint", "{ckpt}", "--prompt", "hi", "--max_new_tokens", "2"],
    ["chat", "--checkpoint", "{ckpt}"],
    ["eval", "--checkpoint", "{ckpt}", "--task", "sft", "--data_path", SMOKE_SFT],
    ["fuse", "--model", "{ckpt}", "--adapter_path", "{adapters}", "--out_dir", "{tmp}/fused"],
    ["train", "--init_from", "{ckpt}", "--data_path", SMOKE_SFT, "--out_dir", "{tmp}/run"],
]


def run_cli(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    return e.value.code, err


def corrupt(tiny_ckpt: str, tmp_path: Path, kind: str) -> Path:
    bad = tmp_path / kind
    shutil.copytree(tiny_ckpt, bad)
    cfg_path = bad / "config.json"
    if kind == "no_config":
        cfg_path.unlink()
    elif kind == "bad_json":
        cfg_path.write_text("{not json")
    elif kind == "wrong_shapes":
        cfg = json.loads(cfg_path.read_text())
        cfg["intermediate_size"] = 96
        cfg_path.write_text(json.dumps(cfg))
    elif kind == "truncated":
        data = (bad / "model.safetensors").read_bytes()
        (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif kind == "no_weights":
        (bad / "model.safetensors").unlink()
    return bad


CASES = {
    "no_config": ("config.json is missing", "config.json"),
    "bad_json": ("invalid config", "config.json"),
    "wrong_shapes": ("has shape", "model.safetensors"),
    "truncated": ("truncated or corrupt", "model.safetensors"),
    "no_weights": ("model.safetensors is missing", "model.safetensors"),
}


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("verb", LOAD_VERBS, ids=lambda v: v[0])
def test_corrupt_checkpoint_one_line_error(tiny_ckpt, tmp_path, capsys, kind, verb):
    bad = corrupt(tiny_ckpt, tmp_path, kind)
    adapters = tmp_path / "adapters"
    if verb[0] == "fuse":
        from minillm.train.lora import apply_lora, save_adapters

        model, _ = make_tiny()
        apply_lora(model, r=2, alpha=4.0)
        save_adapters(adapters, model, base_model=str(bad))
    argv = [a.format(ckpt=bad, tmp=tmp_path, adapters=adapters) for a in verb]
    code, err = run_cli(argv, capsys)
    phrase, fname = CASES[kind]
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"minillm {verb[0]}: error: ")
    assert phrase in err and fname in err and str(bad) in err
    assert "Traceback" not in err


def test_missing_checkpoint_folder(capsys, tmp_path):
    code, err = run_cli(["infer", "--checkpoint", str(tmp_path / "nope")], capsys)
    assert code == 2 and "does not exist" in err and "minillm init" in err


def test_vocab_mismatch(tmp_path, capsys):
    model, tok = make_tiny(vocab_size=512)
    path = save_model(tmp_path / "small_vocab", model, tok)
    code, err = run_cli(["infer", "--checkpoint", str(path)], capsys)
    assert code == 2
    assert "vocab_size=512" in err and f"{tok.vocab_size} tokens" in err
    assert "--tokenizer_path" in err and "config.json" in err


def test_init_unknown_preset_and_bad_dims(tmp_path, capsys):
    code, err = run_cli(["init", "--preset", "huge", "--out_dir", str(tmp_path / "x")], capsys)
    assert code == 2 and "unknown preset 'huge'" in err and "tiny" in err
    code, err = run_cli(
        [
            "init",
            "--preset",
            "custom",
            "--hidden_size",
            "60",
            "--num_attention_heads",
            "7",
            "--out_dir",
            str(tmp_path / "y"),
        ],
        capsys,
    )
    assert code == 2 and "hidden_size=60" in err and not (tmp_path / "y").exists()
    code, err = run_cli(["init", "--dtype", "int3", "--out_dir", str(tmp_path / "z")], capsys)
    assert code == 2 and "unknown dtype 'int3'" in err


def test_tokenizer_train_missing_data(tmp_path, capsys):
    code, err = run_cli(
        [
            "tokenizer",
            "train",
            "--data",
            str(tmp_path / "nope.txt"),
            "--out_dir",
            str(tmp_path / "tok"),
        ],
        capsys,
    )
    assert code == 2 and "nope.txt" in err and "Traceback" not in err


def test_unknown_verb(capsys):
    code, err = run_cli(["frobnicate"], capsys)
    assert code == 2 and "unknown verb 'frobnicate'" in err


@pytest.mark.parametrize("entry", [["-m", "minillm.infer"], ["-m", "minillm", "infer"]])
def test_module_entry_points_print_no_traceback(tmp_path, entry):
    r = subprocess.run(
        [sys.executable, *entry, "--checkpoint", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "does not exist" in r.stderr


def test_run_folder_loads_its_newest_checkpoint(tiny_ckpt, tmp_path):
    from minillm.checkpoint import load, resolve_checkpoint

    run = tmp_path / "run"
    for step in (10, 2):  # step_2 is written last: the newest by mtime, not by step
        dst = run / "checkpoints" / f"step_{step:08d}"
        shutil.copytree(tiny_ckpt, dst)
        (dst / "state.json").write_text(json.dumps({"step": step}))
    assert resolve_checkpoint(run).name == "step_00000010"
    model, tok = load(run)
    assert model.args.hidden_size == 64 and tok.vocab_size == 6400
