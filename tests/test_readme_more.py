"""The README's "More" commands, run as written and in order on the tiny preset where that is
cheap: init, infer, SFT, resume, LoRA + fuse, eval, plot, export, stats. `minimind:smoke` comes
from a local Hub (tests/fakehub.py) serving the shipped SFT file; `out/smoke/sft` (written by
`make smoke`, whose pipeline tests/test_pipeline.py runs) is the SFT run made here, so the
commands that use it run after it. Skipped as not cheap or not hermetic: the full pipeline,
chat (interactive), serve (a server), pretokenize (a user's file), the tokenizer rebuild
(it rewrites the shipped one), bench, speed, the GPU profiler, DPO and MoE training."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from minillm import cli
from tests.fakehub import running_hub

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "launch"))
import check_readme  # noqa: E402

CHEAP = {"init", "infer", "eval", "plot", "train", "fuse", "export", "stats"}
# Appended to the `train` lines only (the last flag wins): at the README's sizes (8 x 512 tokens
# a step) the three runs take ~10 minutes on 2 CPU cores; 2 x 128 keeps every step and flag.
SMALL = ["--batch_size", "2", "--seq_len", "128"]


def more_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("More:\n")
    block = text[start : text.index("\n```\n", text.index("```bash", start) + 1) + 5]
    cmds = [argv for _, argv in check_readme.commands(block) if argv[0] in CHEAP]
    return [a for a in cmds if not ({"dpo", "moe"} & set(a))]


def test_more_commands_run_in_order(tmp_path, monkeypatch, capsys):
    cmds = more_commands()
    assert [a[0] for a in cmds][:4] == ["init", "infer", "eval", "plot"], cmds
    with running_hub("jingyaogong/minimind_dataset", tmp_path, monkeypatch) as hub:
        hub.files["lora_identity.jsonl"] = (
            ROOT / "minillm/assets/data/smoke_sft.jsonl"
        ).read_bytes()
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        work = tmp_path / "clone"
        work.mkdir()
        (work / "minillm").symlink_to(ROOT / "minillm")  # the README's relative data paths
        monkeypatch.chdir(work)
        later = [a for a in cmds if any("out/smoke" in w for w in a)]
        for argv in [a for a in cmds if a not in later] + later:
            if argv in later and not Path("out/smoke").exists():
                Path("out/smoke").mkdir(parents=True)
                os.symlink(work / "out" / "sft", "out/smoke/sft")
            run = list(argv) + (SMALL if argv[0] == "train" else [])
            with pytest.raises(SystemExit) as e:
                cli.main(run)
            out, err = capsys.readouterr()
            assert e.value.code == 0, f"minillm {' '.join(argv)}\n{out[-1500:]}\n{err[-1500:]}"
    assert (work / "out/tiny/config.json").is_file()
    assert (work / "out/sft/checkpoints/step_00000100/model.safetensors").is_file()
    assert (work / "out/sft/checkpoints/step_00000200/model.safetensors").is_file()  # resumed
    assert (work / "out/fused/config.json").is_file() and (work / "out/hf/config.json").is_file()
    assert (work / "out/sft.gguf").stat().st_size > 0
    assert (work / "out/sft/plots/run.png").is_file()
