"""Without an MLX backend every entry point says in one line what to install, exit code 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def no_mlx(tmp_path_factory):
    """A PYTHONPATH entry whose `mlx` package is missing, as after `pip install -e .`."""
    d = tmp_path_factory.mktemp("nomlx")
    (d / "mlx").mkdir()
    (d / "mlx" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'mlx'\", name='mlx')\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{d}{os.pathsep}{ROOT}", MINILLM_REEXEC="1")
    env.pop("MINILLM_DEBUG", None)
    return env


@pytest.mark.parametrize(
    "cmd",
    [
        ["-m", "minillm", "init", "--out_dir", "x"],
        ["-m", "minillm", "pipeline", "--smoke-test"],
        ["-m", "minillm", "train", "--help"],
        [str(ROOT / "launch" / "distill.py"), "--teacher", "oracle", "--out_dir", "x"],
        [str(ROOT / "launch" / "rl.py"), "--out_dir", "x", "--init_from", "ckpt"],
    ],
)
def test_missing_mlx_is_one_line_exit_2(no_mlx, tmp_path, cmd):
    p = subprocess.run(
        [sys.executable, *cmd], env=no_mlx, cwd=tmp_path, capture_output=True, text=True
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "MLX is not installed" in lines[0] and "python launch/install.py" in lines[0]
    assert "Traceback" not in p.stderr
