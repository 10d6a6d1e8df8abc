"""`TrainJob`: every setting of one `minillm train` run: the data (`DataConfig`), the model of a
fresh run (`ModelSpec`), where it starts (`init_from` / `resume`) and the `TrainConfig`. The
pipeline's pretrain and SFT stages and RL's SFT warm-up build one and call
`minillm.train.cli.run` with it; the run writes it to `<out_dir>/train.json`."""

from __future__ import annotations

from dataclasses import dataclass

from minillm.config.flags import check_fields, path, positive_ints, setting, text, url
from minillm.config.model import ModelSpec
from minillm.train.config import TrainConfig

TASKS = ("pretrain", "sft", "dpo")
# TrainConfig fields `minillm train` has no flag for (set in a --config file or in Python)
NO_FLAG = ("progress", "adam_betas")


@dataclass
class DataConfig:
    """Which JSONL rows a run trains on and how they are read."""

    data_path: str | None = setting(
        None, "comma list of JSONL files, dirs, globs, http(s) URLs, minimind:* aliases "
        "(required)", check=text,
    )  # fmt: skip
    data_dir: str = setting("./dataset", "download cache for URLs and aliases", check=path)
    task: str = setting("pretrain", "what the rows are", choices=TASKS)
    hf_dataset_repo: str = setting(
        "jingyaogong/minimind_dataset", "Hub dataset of the minimind:* aliases", check=text
    )
    hf_endpoint: str | None = setting(None, "hub endpoint (default: $HF_ENDPOINT)", check=url)
    force_download: bool = setting(False, "download again even when the file is cached")
    max_download_mb: float = setting(
        2048.0, "refuse downloads larger than this", ge=0, fix="0 disables the guard"
    )
    shuffle_buffer: int = setting(2048, "rows shuffled together", ge=0, fix="0 keeps file order")
    bucket_sizes: list[int] | None = setting(
        None, "SFT length buckets, e.g. 128,256", check=positive_ints
    )
    label_bucket_sizes: list[int] | None = setting(
        None, "sparse-loss label buckets", check=positive_ints
    )
    skip_bad_lines: bool = setting(
        False, "count and skip malformed JSONL lines instead of stopping"
    )
    max_line_mb: float = setting(
        16.0, "longest JSONL line accepted, in MiB; a longer one is a bad line (an error, or "
        "skipped with --skip_bad_lines)", gt=0,
    )  # fmt: skip

    def __post_init__(self):
        check_fields(self)


@dataclass
class TrainJob:
    """One pretrain, SFT or DPO run (full or LoRA)."""

    data: DataConfig = setting(help="the rows to train on", factory=DataConfig)
    model: ModelSpec = setting(help="a fresh run's model", factory=ModelSpec)
    tokenizer_path: str | None = setting(None, "HF tokenizer folder", check=path)
    init_from: str | None = setting(None, "checkpoint folder: load weights only", check=path)
    resume: str | None = setting(
        None, "run folder or checkpoint: restore weights, optimizer, schedule, RNG, data",
        check=path,
    )  # fmt: skip
    ref_from: str | None = setting(
        None, "DPO: frozen reference checkpoint [default: --init_from, or the resumed run's]",
        check=path,
    )  # fmt: skip
    train: TrainConfig = setting(help="the training settings", factory=TrainConfig)

    def __post_init__(self):
        check_fields(self)
        if self.init_from and self.resume:
            raise ValueError(
                "--init_from and --resume exclude each other: --resume continues a run "
                "(weights, optimizer, data position), --init_from starts a new one"
            )
        if self.ref_from and self.data.task != "dpo":
            raise ValueError("--ref_from is for --task dpo only")

    def check(self) -> None:
        """What a run needs that a config may leave out."""
        if not self.data.data_path:
            raise ValueError("minillm train needs --data_path (JSONL files, dirs or minimind:*)")
