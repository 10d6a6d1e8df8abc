"""The environment variables MiniLLM reads as defaults: only those the predecessor's scripts
used (run_mlx.sh, run_mlx_distill_ollama.sh, run_mlx_rl_gsm8k.sh), each mapped to the setting
it sets, read here and nowhere else for a run's settings. Flags and `--config` beat them.
README "Environment variables" is generated from `ENV` (tests/test_config.py checks it)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from minillm.config.flags import _hints, converter, replace_path

# verb -> {VARIABLE: dotted setting}
ENV: dict[str, dict[str, str]] = {
    "distill": {
        "OLLAMA_URL": "ollama_url",
        "OLLAMA_MODEL": "ollama_model",
        "DATA_JSONL": "data_jsonl",
        "OUT_DIR": "out_dir",
        "INIT_FROM": "init_from",
        "COLD_SAMPLES": "cold_samples",
        "TOTAL_SAMPLES": "total_samples",
        "GEN_WORKERS": "workers",
        "PRESET": "model.preset",
        "DTYPE": "train.dtype",
        "SEQ_LEN": "train.seq_len",
        "BATCH_SIZE": "train.batch_size",
        "ACCUM_STEPS": "train.accum_steps",
        "MAX_STEPS": "train.max_steps",
        "SAVE_INTERVAL": "train.save_interval",
        "LOG_INTERVAL": "train.log_interval",
        "KEEP_LAST_CHECKPOINTS": "train.keep_last_checkpoints",
    },
    "rl": {
        "OUT_DIR": "out_dir",
        "INIT_FROM": "init_from",
        "ITERS": "iters",
        "MAX_STEPS": "train.max_steps",
        "STEPS_PER_ITER": "steps_per_iter",
        "NUM_ROLLOUTS": "num_rollouts",
        "SAMPLES_PER_PROMPT": "samples_per_prompt",
        "MAX_NEW_TOKENS": "max_new_tokens",
        "TEMPERATURE": "temperature",
        "TOP_P": "top_p",
        "SEQ_LEN": "train.seq_len",
        "WARMUP_STEPS": "sft_steps",
        "RUN_EVAL": "run_eval",
        "RUN_BENCH": "run_bench",
        "GSM8K_EVAL_NUM": "gsm8k_eval_num",
    },
    "pipeline": {
        "OUT_DIR": "out_dir",
        "DATA_DIR": "data_dir",
        "MAX_DOWNLOAD_MB": "max_download_mb",
        "KEEP_LAST_CHECKPOINTS": "keep_last_checkpoints",
        "PRESET": "preset",
        "DTYPE": "dtype",
        "PRETRAIN_SEQ_LEN": "pretrain.seq_len",
        "PRETRAIN_BATCH_SIZE": "pretrain.batch_size",
        "PRETRAIN_ACCUM_STEPS": "pretrain.accum_steps",
        "PRETRAIN_EPOCHS": "pretrain.epochs",
        "PRETRAIN_MAX_STEPS": "pretrain.max_steps",
        "SFT_SEQ_LEN": "sft.seq_len",
        "SFT_BATCH_SIZE": "sft.batch_size",
        "SFT_ACCUM_STEPS": "sft.accum_steps",
        "SFT_EPOCHS": "sft.epochs",
        "SFT_MAX_STEPS": "sft.max_steps",
        "MLX_INIT_FROM": "init_from",
        "INFER_PROMPT": "infer_prompt",
        "INFER_MAX_NEW_TOKENS": "infer_max_new_tokens",
        "INFER_TEMPERATURE": "infer_temperature",
        "INFER_TOP_P": "infer_top_p",
        "CLEANUP_SMOKE": "cleanup_smoke",
    },
}
# read by the libraries, not as a run's default: HF_ENDPOINT (huggingface_hub), RAY_ADDRESS
# (Ray), OLLAMA_URL / OLLAMA_MODEL also by minillm.teacher for a teacher built in Python


def _field(cfg: Any, path: str):
    """The dataclass field and type hint at dotted `path` of `cfg` (flag or not)."""
    head, _, rest = path.partition(".")
    if rest:
        return _field(getattr(cfg, head), rest)
    f = next(f for f in dataclasses.fields(cfg) if f.name == head)
    return f, _hints(type(cfg))[head]


def apply_env(cfg: Any, verb: str, environ: dict[str, str] | None = None) -> Any:
    """`cfg` with the verb's environment variables that are set (non-empty) laid over; a
    value that does not parse names the variable."""
    environ = os.environ if environ is None else environ
    for var, path in ENV.get(verb, {}).items():
        raw = environ.get(var)
        if raw in (None, ""):
            continue
        f, tp = _field(cfg, path)
        try:
            value = converter(f, tp)(raw)
        except ValueError as e:
            raise ValueError(f"environment variable {var}={raw!r}: {e}") from None
        cfg = replace_path(cfg, path, value)
    return cfg


def table() -> str:
    """The README's table of environment variables (one row per variable and verb)."""
    rows = ["| variable | verb | setting |", "|---|---|---|"]
    for verb, m in ENV.items():
        for var, path in m.items():
            rows.append(f"| `{var}` | {verb} | `{path}` |")
    return "\n".join(rows)
