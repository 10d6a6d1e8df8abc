"""launch/stages.py end to end with its `smoke` profile (a seconds-long model): oracle
distillation on Ray, the result served by `minillm serve` as an Ollama teacher for two
students (reuse 1 and 2) and a generator-scaling bench against it, then GRPO and the overlap
bench; the table, JSON and PNG it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_stages_smoke_runs_every_stage_and_writes_the_record(tmp_path):
    out = tmp_path / "stages"
    r = subprocess.run(
        [sys.executable, "launch/stages.py", "--profile", "smoke", "--out_dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((out / "stages.json").read_text())
    assert not s.get("failed")
    a, b, c = s["A"], s["B"], s["C"]
    assert a["steps"] == 16 and a["before"]["n"] == 16 and a["after"]["step"] == 16
    assert Path(a["checkpoint"], "model.safetensors").is_file()
    assert [row["workers"] for row in b["scaling"]] == [1, 2]
    assert all(row["tasks"] == row["accepted"] + row["rejected"] + row["failed"]
               for row in b["scaling"])  # fmt: skip
    assert set(b["runs"]) == {"1", "2"}
    assert c["seeds"]["0"]["steps"] == 2 and "overlapped / sequential" in c["overlap"]
    md = (out / "stages.md").read_text()
    assert md.count("\n| 2") == 4  # A, B reuse 1 and 2, C seed 0
    assert (out / "accuracy.png").stat().st_size > 10_000
    for log in ("A.log", "B.log", "C.log"):
        assert (out / log).stat().st_size > 0
