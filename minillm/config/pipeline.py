"""`PipelineConfig`: the settings of `minillm pipeline`, read from one of two small JSON files
(minillm/assets/pipeline/smoke.json, full.json), then the predecessor's environment variables
(minillm/config/env.py). The distill and RL stages are whole `DistillConfig` / `RLConfig`s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from minillm.config.distill import DistillConfig
from minillm.config.env import apply_env
from minillm.config.flags import (
    check_fields,
    from_dict,
    path,
    positive_ints,
    read_json,
    setting,
    text,
)
from minillm.config.model import PRESETS, ModelSpec
from minillm.config.rl import RLConfig
from minillm.train.config import TRAIN_DTYPES

FILES = Path(__file__).resolve().parent.parent / "assets" / "pipeline"


@dataclass
class StageConfig:
    """One `minillm train` stage (pretrain or SFT)."""

    data: str = setting("minimind:auto", "data spec (`smoke`: the shipped files)", check=text)
    seq_len: int = setting(512, "tokens per sequence", ge=1)
    batch_size: int = setting(1, "sequences per micro-batch", ge=1)
    accum_steps: int = setting(8, "micro-batches per optimizer step", ge=1)
    epochs: float = setting(1.0, "passes over the data when max_steps is unset", gt=0)
    max_steps: int | None = setting(None, "optimizer steps (unset: from the data)", ge=1)
    learning_rate: float = setting(1e-4, "peak learning rate", gt=0)
    bucket_sizes: list[int] | None = setting(None, "SFT length buckets", check=positive_ints)

    def __post_init__(self):
        check_fields(self)


@dataclass
class PipelineConfig:
    """download -> pretrain -> SFT -> [distill] -> [RL] -> infer."""

    out_dir: str = setting("out", "folder of the stages' run folders", check=path)
    data_dir: str = setting("dataset/minimind", "download folder", check=path)
    max_download_mb: float = setting(
        2048.0, "refuse downloads larger than this (0: no limit)", ge=0, fix="0: no limit"
    )
    keep_last_checkpoints: int = setting(3, "checkpoints each stage keeps", ge=0, fix="0 keeps all")
    preset: str = setting(
        "200mb", "model preset of the pretrain stage", choices=(*PRESETS, "custom")
    )
    model: ModelSpec = setting(help="dimensions over the preset", factory=ModelSpec)
    dtype: str = setting("auto", "training dtype of every stage", choices=TRAIN_DTYPES)
    log_interval: int = setting(10, "steps between log lines", ge=1)
    save_interval: int = setting(200, "steps between checkpoints", ge=0)
    init_from: str | None = setting(
        None, "start SFT (and later stages) from this checkpoint", check=path
    )
    infer_prompt: str = setting("请介绍一下自己。", "the closing demo's prompt", check=text)
    infer_max_new_tokens: int = setting(200, "the closing demo's reply limit", ge=1)
    infer_temperature: float = setting(0.0, "the closing demo's temperature", ge=0)
    infer_top_p: float = setting(1.0, "the closing demo's top-p", gt=0, le=1)
    cleanup_smoke: bool = setting(False, "smoke run: start fresh and delete out_dir at the end")
    rl_data: str = setting(
        "gsm8k",
        "`generated`: GSM8K-format sums written by the pipeline",
        choices=("gsm8k", "generated"),
    )
    pretrain: StageConfig = setting(help="the pretrain stage", factory=StageConfig)
    sft: StageConfig = setting(help="the SFT stage", factory=StageConfig)
    distill: DistillConfig = setting(help="the distill stage", factory=DistillConfig)
    rl: RLConfig = setting(help="the RL stage", factory=RLConfig)

    def __post_init__(self):
        check_fields(self)


def load_settings(
    smoke: bool, environ: dict[str, str] | None = None, config: str | None = None
) -> PipelineConfig:
    """The smoke or the full run's settings (or `config`'s), with the environment table laid
    over."""
    path = Path(config) if config else FILES / ("smoke.json" if smoke else "full.json")
    cfg = from_dict(PipelineConfig, read_json(path), str(path))
    return apply_env(cfg, "pipeline", environ)
