"""The README is checked: every `minillm` example parses, its two Quick start lines are the
Makefile's targets, and the defects a new user met in its examples stay fixed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_FLAGS

from minillm import cli
from minillm.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "launch"))
import check_readme  # noqa: E402


def test_every_minillm_example_in_the_readme_parses(capsys):
    assert check_readme.main([]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    n = int(re.search(r"(\d+)/\1 commands parse", out).group(1))
    assert n >= 15  # the Quick start and "More" blocks were found


def test_a_bad_example_fails_the_check(tmp_path, capsys):
    bad = tmp_path / "README.md"
    bad.write_text(
        "```bash\nminillm init --preset tiny --out_dir x   # fine\n"
        "FOO=1 minillm infer --checkpoint x --temprature 0.7 && \\\n  minillm plot x\n"
        "minillm train --task nope --data_path d.jsonl\n```\n"
        "```python\nminillm init --not-bash-so-not-checked\n```\n"
    )
    assert check_readme.main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert "3/5 commands parse" not in out and "2/4 commands parse" in out
    assert "FAIL README.md:3: minillm infer" in out and "--temprature" in out
    assert "FAIL README.md:5: minillm train" in out and "invalid choice: 'nope'" in out


def test_quick_start_is_two_make_lines_and_ci_runs_the_second():
    text = (ROOT / "README.md").read_text()
    quick = text[text.index("## Quick start") :]
    blocks = re.findall(r"```bash\n(.*?)```", quick, re.S)[:2]
    assert [b.strip() for b in blocks] == ["make smoke", "make test"]
    assert "<!-- test-command -->\n```bash\nmake test\n```" in text
    make = (ROOT / "Makefile").read_text()
    assert "minillm pipeline --smoke-test" in make and "python -m pytest -q" in make
    assert "launch/install.py --venv $(VENV) --test" in make
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "test", "VENV=/nonexistent/v"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert dry.returncode == 0 and "install.py --venv /nonexistent/v --test" in dry.stdout


def test_warmup_default_fits_short_runs():
    assert TrainConfig(max_steps=100).warmup_for(100) == 10  # the README's --max_steps 100
    assert TrainConfig(max_steps=5000).warmup_for(5000) == 100
    assert TrainConfig(max_steps=100, warmup_steps=7).warmup_for(100) == 7
    with pytest.raises(ValueError, match="warmup_steps=100 leaves no decay"):
        TrainConfig(max_steps=100, warmup_steps=100)


def test_train_with_max_steps_below_100_and_no_warmup_flag_runs(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": "a b c d e f g h " * 4}) + "\n" for _ in range(8)))
    argv = ["train", "--data_path", str(data), *TINY_FLAGS, "--dtype", "float32", "--seq_len",
            "32", "--batch_size", "4", "--no-compile", "--max_steps", "20", "--out_dir",
            str(tmp_path / "run")]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    out, err = capsys.readouterr()
    assert e.value.code == 0, err
    assert "[train] done" in out
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["warmup_steps"] is None


@pytest.mark.parametrize(
    "script", sorted(p.name for p in (ROOT / "launch").glob("*.py") if p.name != "__init__.py")
)
def test_launch_scripts_run_from_another_directory(script, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "launch" / script), "--help"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr[-2000:]
