"""`Learner`: the MLX SFT learner of a distillation run, fed by the shard store as it fills.

`run()` is the one long call: it builds (or resumes) the model and runs `minillm.train.train`
on a `ShardStream`, so checkpoints carry the shard cursor and `--resume` continues exactly.
`status()` and `stop()` answer while `run()` is busy (the actor runs with max_concurrency > 1).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from actors.metrics import Metrics
from actors.stream import ShardStream


def model_args(model: dict):
    """`vocab_size -> ModelArgs` of {"preset": name, **dimension overrides} ("custom":
    dimensions only), for `load_or_init`."""
    from minillm.models import ModelArgs

    spec = dict(model)
    preset = spec.pop("preset", "tiny")

    def args(vocab_size: int) -> ModelArgs:
        kw = {"vocab_size": vocab_size, **spec}
        return ModelArgs(**kw) if preset == "custom" else ModelArgs.from_preset(preset, **kw)

    return args


class Learner:
    """SFT learner over `shard_dir`. `train` holds `TrainConfig` fields; `model` the preset
    spec for a fresh model; `init_from` a checkpoint to start from; `resume` continues the
    newest checkpoint in `train["out_dir"]`."""

    def __init__(
        self,
        shard_dir: str,
        train: dict,
        model: dict | None = None,
        init_from: str | None = None,
        resume: bool = False,
        cold_samples: int = 0,
        total_steps: int | None = None,
        tokenizer_path: str | None = None,
        poll_s: float = 0.1,
        reuse: int = 1,
        reuse_window: int = 4096,
        bucket_sizes: list[int] | None = None,
        gpu_memory: float | None = None,
    ):
        from minillm.gpu_memory import cap

        cap(gpu_memory, "learner_gpu_memory")
        self.shard_dir, self.train_cfg = shard_dir, dict(train)
        self.model_spec, self.init_from, self.resume = (
            model or {"preset": "tiny"},
            init_from,
            resume,
        )
        self.cold_samples, self.total_steps = cold_samples, total_steps
        self.tokenizer_path, self.poll_s = tokenizer_path, poll_s
        self.reuse, self.reuse_window, self.bucket_sizes = reuse, reuse_window, bucket_sizes
        self.stop_event = threading.Event()
        self.metrics = Metrics()
        self.stream: ShardStream | None = None
        self.step, self.loss, self.tok_s = 0, None, 0.0
        self.t_start: float | None = None
        self.done = False

    def _setup(self):
        from minillm.checkpoint import find_checkpoint, load_or_init
        from minillm.train.config import TrainConfig

        cfg = TrainConfig(**self.train_cfg)
        start = find_checkpoint(cfg.out_dir) if self.resume else None
        if self.resume and start is None:
            print(f"[learner] no checkpoint in {cfg.out_dir} yet: starting fresh", flush=True)
        base = str(start) if start else self.init_from
        args = model_args(self.model_spec)
        model, tok = load_or_init(base, self.tokenizer_path, args, cfg.seed)
        return cfg, model, tok, start

    def run(self) -> dict:
        """Train until `max_steps`, the end of a closed store, or `stop()`; returns a summary."""
        from minillm.train import train
        from minillm.train.losses import lm_loss_from_config

        cfg, model, tok, start = self._setup()
        self.stream = ShardStream(
            self.shard_dir,
            tok,
            cfg.seq_len,
            cfg.batch_size,
            cold_samples=self.cold_samples,
            poll_s=self.poll_s,
            stop=self.stop_event,
            reuse=self.reuse,
            reuse_window=self.reuse_window,
            bucket_sizes=self.bucket_sizes,
        )
        self.metrics.set("minillm_reuse_limit", self.reuse)
        self.t_start = time.perf_counter()
        result = train(
            model,
            lm_loss_from_config(cfg),
            self.stream,
            cfg,
            tokenizer=tok,
            total_steps=self.total_steps,
            start_state=start,
            on_log=self._on_log,
            base_model=self.init_from,
        )
        self.done = True
        return {
            **self.status(),
            "losses": result.losses,
            "checkpoints": result.checkpoints,
            "tokens_seen": result.tokens_seen,
        }

    def _on_log(self, rec: dict) -> None:
        self.step, self.loss, self.tok_s = rec["step"], rec["loss"], rec["tok_s"]
        s = self.status()
        self.metrics.set("minillm_learner_step", s["step"])
        self.metrics.set("minillm_learner_loss", s["loss"])
        self.metrics.set("minillm_learner_tokens_per_second", s["tok_s"])
        self.metrics.set("minillm_learner_wait_fraction", s["wait_fraction"])
        self.metrics.set("minillm_data_lag_samples", s["lag"])
        self.metrics.set("minillm_samples_reused", s["reused"])
        print(
            f"[learner] step={s['step']} consumed={s['consumed']} reused={s['reused']} "
            f"lag={s['lag']} wait={100 * s['wait_fraction']:.1f}%",
            flush=True,
        )

    def status(self) -> dict[str, Any]:
        """Step, rows consumed, rows committed but not yet read (lag), time spent waiting."""
        st = self.stream
        wall = time.perf_counter() - self.t_start if self.t_start else 0.0
        cold_end = st.cold_done_at if st else None
        after = time.perf_counter() - cold_end if cold_end else 0.0
        consumed = st.consumed if st else 0
        committed = st.committed_rows() if st else 0
        return {
            "step": self.step,
            "loss": self.loss if self.loss is not None else float("nan"),
            "tok_s": self.tok_s,
            "consumed": consumed,
            "committed": committed,
            "lag": max(committed - consumed, 0),
            "reused": st.reused if st else 0,
            "reuse": self.reuse,
            "wait_s": st.wait_s if st else 0.0,
            "wait_after_cold_s": st.wait_after_cold_s if st else 0.0,
            "wall_s": wall,
            "wait_fraction": (st.wait_after_cold_s / after) if st and after > 0 else 0.0,
            "started": st is not None and st.started,
            "done": self.done,
        }

    def stop(self) -> None:
        """Finish after the current step: the last checkpoint is saved, then `run()` returns."""
        self.stop_event.set()
