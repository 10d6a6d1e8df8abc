"""`RolloutWorker`: G sampled replies per GSM8K prompt with the newest policy it was given,
scored by the reward, as an Arrow table of whole groups tagged with the policy version."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pyarrow as pa

from actors.cores import pin
from actors.metrics import Metrics
from actors.weights import load_snapshot

SCHEMA = pa.schema(
    [
        ("prompt_index", pa.int64()),
        ("sample", pa.int32()),
        ("version", pa.int64()),
        ("prompt_ids", pa.list_(pa.int32())),
        ("tokens", pa.list_(pa.int32())),
        ("logprobs", pa.list_(pa.float32())),
        ("reward", pa.float32()),
        ("correct", pa.bool_()),
        ("finish", pa.string()),
    ]
)


class PromptOrder:
    """Prompt `i` of the stream: record `perm_e[i % n]` where epoch `e = i // n` has its own
    seeded permutation, so the order is fixed by the seed whoever asks."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self._perm = n, seed, {}

    def __call__(self, i: int) -> int:
        e = i // self.n
        if e not in self._perm:
            self._perm = {e: np.random.default_rng([self.seed, e]).permutation(self.n)}
        return int(self._perm[e][i % self.n])


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "little")


class RolloutWorker:
    """Generates groups for prompt indices with the policy version it holds."""

    def __init__(
        self,
        index: int,
        init_from: str,
        records: list[dict],
        group_size: int = 8,
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.95,
        format_weight: float = 0.0,
        seed: int = 1337,
        lang: str = "en",
        max_seq_len: int | None = None,
        gpu_memory: float | None = None,
    ):
        from minillm.checkpoint import load
        from minillm.gpu_memory import cap

        cap(gpu_memory, "worker_gpu_memory")

        self.index = index
        pin(f"rollout-{index}")
        self.model, self.tok = load(init_from)
        self.model.eval()
        self.records, self.order = records, PromptOrder(len(records), seed)
        self.G, self.max_new_tokens = group_size, max_new_tokens
        self.temperature, self.top_p, self.format_weight = temperature, top_p, format_weight
        self.seed, self.lang, self.max_seq_len = seed, lang, max_seq_len
        self.version = 0
        self.metrics = Metrics()

    def ping(self) -> int:
        return self.version

    def set_weights(self, weights: list, version: int) -> None:
        """Switch to policy `version` (`weights[0]` is a snapshot or an object ref to one)."""
        if version == self.version or not weights:
            return
        snap = weights[0]
        if not isinstance(snap, dict):
            import ray

            snap = ray.get(snap)
        load_snapshot(self.model, snap)
        self.version = version

    def prompt_ids(self, i: int) -> list[int]:
        from minillm.data.gsm8k import record_messages

        rec = self.records[self.order(i)]
        return self.tok.apply_chat_template(
            record_messages(rec, self.lang), add_generation_prompt=True, tokenize=True
        )

    def rollout(
        self, indices: list[int], weights: list | None = None, version: int = 0
    ) -> tuple[pa.Table, dict]:
        """Groups for prompt `indices` with policy `version` (loaded first if newer)."""
        from minillm.data.gsm8k import extract_answer, reward, same_number
        from minillm.rl.rollout import rollout

        pin(f"rollout-{self.index}")  # threads started since __init__ too
        if weights:
            self.set_weights(weights, version)
        t0 = time.perf_counter()
        prompts = [self.prompt_ids(i) for i in indices]
        groups = rollout(
            self.model,
            self.tok,
            prompts,
            self.G,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=_seed("rollout", self.seed, indices[0], self.version),
            max_seq_len=self.max_seq_len,
        )
        cols = {k: [] for k in SCHEMA.names}
        n_tok = 0
        for i, p, group in zip(indices, prompts, groups, strict=True):
            target = self.records[self.order(i)]["target"]
            for j, s in enumerate(group):
                r = reward(s.text, target, self.format_weight)
                row = {
                    "prompt_index": i,
                    "sample": j,
                    "version": self.version,
                    "prompt_ids": p,
                    "tokens": s.tokens,
                    "logprobs": s.logprobs,
                    "reward": r,
                    "correct": same_number(extract_answer(s.text), target),
                    "finish": s.finish_reason,
                }
                for k, v in row.items():
                    cols[k].append(v)
                n_tok += len(s.tokens)
        dt = time.perf_counter() - t0
        table = pa.Table.from_pydict(cols, schema=SCHEMA)
        rewards = np.array(cols["reward"], np.float32)
        stats = {
            "worker": self.index,
            "version": self.version,
            "groups": len(indices),
            "tokens": n_tok,
            "seconds": dt,
            "tok_s": n_tok / max(dt, 1e-9),
            "reward": float(rewards.mean()) if len(rewards) else 0.0,
            "pass_rate": float(np.mean(cols["correct"])) if cols["correct"] else 0.0,
        }
        self.metrics.set("minillm_rollout_tokens_per_second", stats["tok_s"])
        self.metrics.inc("minillm_rollout_samples", len(rewards))
        return table, stats
