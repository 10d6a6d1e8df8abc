"""GSM8K-format one-digit sums for the RL tests, and SFT starts trained on them (a d128
2-layer model, trained in a `python -m minillm.train` subprocess, which preloads OpenBLAS)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from minillm.data.gsm8k import make_sums_set as sums_set  # noqa: F401 (the tests' data)

ROOT = Path(__file__).resolve().parent.parent
MODEL = ["--hidden_size", "128", "--num_hidden_layers", "2", "--num_attention_heads", "4",
         "--num_key_value_heads", "2", "--intermediate_size", "384"]  # fmt: skip


def write_jsonl(path: Path, recs: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return str(path)


def sft_records(recs: list[dict], wrong_final: float = 0.0, seed: int = 5) -> list[dict]:
    """SFT conversations `a + b = s / #### s`; with probability `wrong_final` the last line
    copies `a` instead of the sum (a habit the data teaches, which a reward on the final answer
    should unlearn)."""
    from minillm.data.gsm8k import prompt_messages, sft_record

    if not wrong_final:
        return [sft_record(r) for r in recs]
    rng, out = random.Random(seed), []
    for r in recs:
        a, b = (int(x) for x in r["answer"].split(" = ")[0].split(" + "))
        final = a if rng.random() < wrong_final else a + b
        reply = {"role": "assistant", "content": f"{a} + {b} = {a + b}\n#### {final}"}
        out.append({"conversations": [*prompt_messages(r["question"]), reply]})
    return out


def sft_start(out: Path, records: list[dict], steps: int, wrong_final: float = 0.0) -> str:
    """SFT a d128 2-layer model from scratch for `steps` on `records`; returns the folder."""
    data = Path(write_jsonl(out.with_suffix(".jsonl"), sft_records(records, wrong_final)))
    cmd = [sys.executable, "-m", "minillm.train", "--task", "sft", "--data_path", str(data),
           "--out_dir", str(out), "--preset", "custom", *MODEL, "--dtype", "float32",
           "--seq_len", "96", "--batch_size", "16", "--max_steps", str(steps),
           "--warmup_steps", "5", "--learning_rate", "3e-3", "--save_interval", str(steps),
           "--shuffle_buffer", "1000", "--seed", "0"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return str(out)
