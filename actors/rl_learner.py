"""The GRPO learner: `train()` over groups taken from the replay buffer; after every step the
new policy version is published as a weight snapshot (an object ref under Ray)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from actors.cores import pin
from actors.metrics import Metrics
from actors.weights import snapshot
from minillm.rl.grpo import GRPOConfig, advantages, build_batch

STATE_VERSION = 1


class GroupStream:
    """GRPO batches of `groups_per_step` whole groups from `take(n, version, timeout)`.

    `version` is the learner's policy version (its step), set after each step. `consumed`
    holds every prompt index trained on or dropped (flat or stale); it is the resume cursor,
    so a resumed run neither repeats nor skips a prompt. `last` describes the latest batch."""

    def __init__(
        self,
        take,
        tokenizer,
        groups_per_step: int,
        grpo: GRPOConfig,
        seq_len: int,
        ref_model=None,
        stop: threading.Event | None = None,
        bucket: int = 64,
    ):
        self.take, self.tok, self.n, self.grpo = take, tokenizer, groups_per_step, grpo
        self.seq_len, self.ref, self.bucket = seq_len, ref_model, bucket
        self.stop = stop or threading.Event()
        self.version = 0
        self.consumed: set[int] = set()
        self.pending: list = []
        self.last: dict = {}
        self.wait_s = 0.0
        self.handed_at: float | None = None  # when the latest batch left __next__

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        t0 = time.perf_counter()
        dropped = {"flat": 0, "stale": 0}
        while len(self.pending) < self.n:
            if self.stop.is_set():
                raise StopIteration
            got = self.take(self.n - len(self.pending), self.version, 1.0)
            for k, idx in got["dropped"].items():
                self.consumed.update(idx)
                dropped[k] += len(idx)
            self.pending.extend(got["groups"])
        self.wait_s += time.perf_counter() - t0
        groups, self.pending = self.pending[: self.n], self.pending[self.n :]
        batch = self._batch(groups, dropped)
        self.handed_at = time.perf_counter()
        return batch

    def _batch(self, groups: list, dropped: dict) -> dict:
        import mlx.core as mx

        from minillm.rl.grpo import token_logprobs

        rewards = np.array([g.column("reward").to_pylist() for g in groups], np.float32)
        adv = advantages(rewards, self.grpo.scale_std, self.grpo.eps)
        prompts, resp, lps, a, idx, vers, ok = [], [], [], [], [], [], []
        for gi, g in enumerate(groups):
            for j, row in enumerate(g.to_pylist()):
                prompts.append(row["prompt_ids"])
                resp.append(row["tokens"])
                lps.append(row["logprobs"])
                a.append(float(adv[gi, j]))
                vers.append(row["version"])
                ok.append(row["correct"])
            idx.append(g.column("prompt_index")[0].as_py())
        longest = max(len(p) + len(r) for p, r in zip(prompts, resp, strict=True)) - 1
        width = min(-(-longest // self.bucket) * self.bucket, max(self.seq_len, longest))
        batch = build_batch(prompts, resp, lps, a, self.tok.pad_id or 0, width)
        if self.ref is not None:
            lp = token_logprobs(
                self.ref,
                mx.array(batch["inputs"]),
                mx.array(batch["targets"]),
                self.grpo.temperature,
            )
            batch["ref_logp"] = np.array(mx.stop_gradient(lp))
        self.consumed.update(idx)
        self.last = {
            "reward": float(rewards.mean()),
            "pass_rate": float(np.mean(ok)),
            "resp_len": float(np.mean([len(r) for r in resp])),
            "staleness": float(np.mean([self.version - v for v in vers])),
            "dropped_flat": dropped["flat"],
            "dropped_stale": dropped["stale"],
            "prompts": idx,
        }
        return batch

    def state(self) -> dict:
        return {"version": STATE_VERSION, "kind": "rl", "consumed": sorted(self.consumed)}

    def restore(self, state: dict) -> None:
        if state.get("kind") != "rl" or state.get("version") != STATE_VERSION:
            raise ValueError("the checkpoint's data cursor is not an RL cursor; resume an RL run")
        self.consumed = set(state["consumed"])
        self.pending = []


class RLLearner:
    """GRPO learner over a replay buffer (an actor handle, or a plain `ReplayBuffer`)."""

    def __init__(
        self,
        buffer,
        train: dict,
        grpo: dict,
        init_from: str,
        groups_per_step: int,
        total_steps: int,
        ref_from: str | None = None,
        resume: bool = False,
        publish_interval: int = 1,
        gpu_memory: float | None = None,
    ):
        from minillm.gpu_memory import cap

        cap(gpu_memory, "learner_gpu_memory")
        self.buffer, self.train_cfg, self.grpo = buffer, dict(train), GRPOConfig(**grpo)
        self.init_from, self.ref_from, self.resume = init_from, ref_from, resume
        self.groups_per_step, self.total_steps = groups_per_step, total_steps
        self.publish_interval = max(1, publish_interval)
        self.stop_event = threading.Event()
        self.metrics = Metrics()
        self.published: tuple[int, list] | None = None
        self.stream: GroupStream | None = None
        self.step, self.done, self.log = 0, False, None
        self.train_s = 0.0  # from a batch leaving the stream to the end of its step
        self.t0 = time.perf_counter()

    def _take(self, n: int, version: int, timeout: float) -> dict:
        if hasattr(self.buffer, "take") and hasattr(self.buffer.take, "remote"):
            import ray

            return ray.get(self.buffer.take.remote(n, version, timeout))
        return self.buffer.take(n, version, timeout)

    def _publish(self, model, version: int) -> None:
        snap = snapshot(model)
        try:
            import ray

            ref = ray.put(snap) if ray.is_initialized() else snap
        except ImportError:
            ref = snap
        self.published = (version, [ref])

    def weights(self) -> tuple[int, list] | None:
        """The newest published `(version, [snapshot ref])`, None before the first."""
        return self.published

    def run(self) -> dict:
        from minillm.checkpoint import load, load_model
        from minillm.rl.grpo import make_grpo_loss
        from minillm.train import train
        from minillm.train.config import TrainConfig
        from minillm.train.metrics import MetricsLog
        from minillm.train.state import find_checkpoint, load_state

        pin("learner")
        cfg = TrainConfig(**self.train_cfg)
        if cfg.lora_r:
            raise ValueError("GRPO with LoRA is not supported yet; drop --lora_r")
        start = find_checkpoint(cfg.out_dir) if self.resume else None
        model, tok = load(start or self.init_from)
        ref = None
        if self.grpo.beta > 0:
            ref = load_model(self.ref_from or self.init_from)
            ref.eval()
            ref.freeze()
        self.stream = GroupStream(
            self._take, tok, self.groups_per_step, self.grpo, cfg.seq_len, ref, self.stop_event
        )
        self.step = load_state(start).step if start else 0
        self.stream.version = self.step
        self._publish(model, self.step)
        self.log = MetricsLog(Path(cfg.out_dir))
        self.t0 = time.perf_counter()
        result = train(
            model,
            make_grpo_loss(self.grpo),
            self.stream,
            cfg,
            tokenizer=tok,
            total_steps=self.total_steps,
            start_state=start,
            on_step=self._on_step,
            on_log=self._on_log,
            base_model=self.init_from,
        )
        self.done = True
        return {**self.status(), "losses": result.losses, "checkpoints": result.checkpoints}

    def _on_step(self, step: int, model) -> None:
        if self.stream.handed_at is not None:
            self.train_s += time.perf_counter() - self.stream.handed_at
        self.step = step
        self.stream.version = step
        last = self.stream.last
        self.log.write({"event": "rl", "step": step, **last, "time": time.time()})
        for k, m in (("reward", "minillm_rl_reward"), ("pass_rate", "minillm_rl_pass_rate"),
                     ("resp_len", "minillm_rl_response_length"),
                     ("staleness", "minillm_rl_staleness")):  # fmt: skip
            self.metrics.set(m, last[k])
        if step % self.publish_interval == 0:
            self._publish(model, step)

    def _on_log(self, rec: dict) -> None:
        if "kl" in rec:
            self.metrics.set("minillm_rl_kl", rec["kl"])
        if "clip_frac" in rec:
            self.metrics.set("minillm_rl_clip_fraction", rec["clip_frac"])
        self.metrics.set("minillm_learner_tokens_per_second", rec["tok_s"])
        self.metrics.set("minillm_learner_loss", rec["loss"])
        last = self.stream.last if self.stream else {}
        print(
            f"[rl] step={rec['step']} reward={last.get('reward', 0):.3f} "
            f"pass={last.get('pass_rate', 0):.3f} len={last.get('resp_len', 0):.0f} "
            f"stale={last.get('staleness', 0):.2f} kl={rec.get('kl', 0):.4f} "
            f"clip={rec.get('clip_frac', 0):.3f}",
            flush=True,
        )

    def status(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        wait = self.stream.wait_s if self.stream else 0.0
        return {
            "step": self.step,
            "done": self.done,
            "wall_s": wall,
            "wait_s": wait,
            "train_s": self.train_s,
            "consumed": len(self.stream.consumed) if self.stream else 0,
        }

    def stop(self) -> None:
        self.stop_event.set()
