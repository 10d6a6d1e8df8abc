"""Resumable batches for pretrain (packed rows) and SFT (padded, optionally bucketed) training.

Pretrain: each document's tokens are followed by `tokenizer.eos_id` (`<|im_end|>`, which
MiniMind's pretrain data uses as end-of-text and generation stops on), and the token stream is
cut into rows of exactly `seq_len + 1` tokens with no overlap; a document's tail continues in
the next row and the stream runs on across epochs, so only the very last row can be short
(padded, mask 0). SFT: `chat_ids_and_mask` ids/mask cut to `seq_len + 1` tokens, padded to
the smallest bucket that holds them; a batch holds samples of one bucket.

A batch row is `x = row[:-1]`, `y = row[1:]`; `mask[b, t] = 1` where target `y[b, t]` is trained.
Everything the iterator holds is described by `state()` as line references, never contents,
so `restore(state)` continues with exactly the batches an uninterrupted run would yield.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minillm.data.jsonl import TASKS, JsonlReader, Ref, resolve_paths

STATE_VERSION = 1
Item = tuple[Ref, np.ndarray, "np.ndarray | None"]


@dataclass
class Batch:
    """One micro-batch. `n_tokens` = trained targets (`mask.sum()`); `epoch` is 0-based.

    With sparse loss, `label_pos[b, k]` lists the positions where `mask[b] == 1` (ascending),
    padded with 0 to a label bucket; `label_mask` marks the real ones and `label_targets` is
    `targets` gathered at `label_pos`.
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    n_tokens: int
    epoch: int
    label_pos: np.ndarray | None = None
    label_mask: np.ndarray | None = None
    label_targets: np.ndarray | None = None


def default_label_buckets(seq_len: int) -> list[int]:
    """32, 64, 128, ... below `seq_len`, then `seq_len`."""
    out, b = [], 32
    while b < seq_len:
        out, b = out + [b], b * 2
    return out + [seq_len]


def _sizes(sizes: Sequence[int], seq_len: int, name: str) -> list[int]:
    bad = [s for s in sizes if int(s) <= 0]
    if bad:
        raise ValueError(f"{name} must be positive, got {bad[0]}")
    # Sizes above seq_len can never be used: drop them; seq_len is always the largest.
    return sorted({int(s) for s in sizes if int(s) < seq_len} | {seq_len})


def tokenize_record(tok, rec: dict, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Token ids (int32) of a validated record, and for SFT its 0/1 mask (int8).

    Records with `ids` skip the tokenizer; an SFT `ids` record without `mask` trains every
    token. Pretrain `conversations` are rendered with the chat template. No EOS is added here.
    """
    if "ids" in rec:
        ids = np.asarray(rec["ids"], dtype=np.int32)
        if task == "pretrain":
            return ids, None
        mask = rec.get("mask")
        return ids, np.ones(len(ids), np.int8) if mask is None else np.asarray(mask, np.int8)
    if task == "pretrain":
        text = rec.get("text")
        if text is None:
            text = tok.apply_chat_template(rec["conversations"], tokenize=False)
        return np.asarray(tok.encode(text), dtype=np.int32), None
    from minillm.tokenizer import chat_ids_and_mask

    ids, mask = chat_ids_and_mask(tok, rec["conversations"])
    return np.asarray(ids, dtype=np.int32), np.asarray(mask, dtype=np.int8)


class Batches:
    """Iterator of `Batch`es over JSONL files, resumable with `state()` / `restore()`.

    `paths` is a local `--data_path` spec or list (see `resolve_paths`; remote entries are
    resolved before, by `minillm.data.hub.resolve_data_spec`). `shuffle_buffer` items are
    held and drawn at random with a generator seeded by `seed` (0 = file order). SFT batches
    are grouped by `bucket_sizes` (seq_len is always a bucket); pretrain rows are always full
    `seq_len`. With `sparse_loss`, label positions are padded to `label_bucket_sizes` (default
    `bucket_sizes`, else powers of two from 32). Every batch has `batch_size` rows; the last
    ones of the run may hold all-pad rows (mask 0). Bad lines raise `ValueError("file:line:
    ...")`, or with `skip_bad_lines` are counted in `skipped`; `dropped` counts SFT samples
    with no trained token within `seq_len + 1` tokens (left out, not errors).
    """

    def __init__(
        self,
        paths: str | Sequence[str | Path],
        tokenizer,
        task: str = "pretrain",
        seq_len: int = 512,
        batch_size: int = 4,
        *,
        seed: int = 0,
        epochs: int = 1,
        shuffle_buffer: int = 0,
        bucket_sizes: Sequence[int] | None = None,
        sparse_loss: bool = False,
        label_bucket_sizes: Sequence[int] | None = None,
        skip_bad_lines: bool = False,
    ):
        if task not in TASKS:
            raise ValueError(f"task {task!r} is not one of {'/'.join(TASKS)}")
        for name, v, lo in (
            ("seq_len", seq_len, 1),
            ("batch_size", batch_size, 1),
            ("epochs", epochs, 1),
            ("shuffle_buffer", shuffle_buffer, 0),
        ):
            if int(v) < lo:
                raise ValueError(f"{name} must be >= {lo}, got {v}")
        self.paths = resolve_paths(paths)
        self.tok, self.task, self.seq_len, self.batch_size = tokenizer, task, seq_len, batch_size
        self.seed, self.epochs, self.shuffle_buffer = seed, epochs, shuffle_buffer
        self.skip_bad_lines = skip_bad_lines
        self.buckets = (
            _sizes(bucket_sizes or [], seq_len, "bucket_sizes") if task == "sft" else [seq_len]
        )
        self.label_buckets = None
        if sparse_loss:
            sizes = label_bucket_sizes or bucket_sizes or default_label_buckets(seq_len)
            self.label_buckets = _sizes(sizes, seq_len, "label_bucket_sizes")
        self.reader = JsonlReader(self.paths, task, tokenizer.vocab_size, skip_bad_lines)
        self._files = [[p.name, p.stat().st_size] for p in self.paths]
        self._reset()

    def _reset(self) -> None:
        self.epoch, self.dropped, self._done = 0, 0, False
        self.rng = np.random.default_rng(self.seed)
        self.reader.seek((0, 0, 1))
        self.reader.skipped, self.reader.count_skips = {}, True
        self._buf: list[Item] = []
        self._doc: Item | None = None
        self._doc_pos = 0
        self._pending: dict[int, list[Item]] = {b: [] for b in self.buckets}

    @property
    def skipped(self) -> dict[str, int]:
        """Bad lines skipped so far, per reason; counted in the first epoch only (later epochs
        skip the same lines again)."""
        return self.reader.skipped

    def encode(self, rec: dict) -> tuple[np.ndarray, np.ndarray | None] | None:
        """Pretrain: doc ids + EOS. SFT: ids and mask cut to `seq_len + 1`, or None when
        nothing within that is trained."""
        ids, mask = tokenize_record(self.tok, rec, self.task)
        if self.task == "pretrain":
            return np.append(ids, np.int32(self.tok.eos_id)).astype(np.int32), None
        ids, mask = ids[: self.seq_len + 1], mask[: self.seq_len + 1]
        if len(ids) < 2 or not mask[1:].any():
            return None
        return ids, mask

    def _load(self, ref: Sequence[int]) -> Item:
        enc = self.encode(self.reader.read_at(ref))
        if enc is None:
            raise ValueError(
                f"{self.paths[ref[0]]}:{ref[2]}: line changed since the "
                "checkpoint; resume needs the same data files"
            )
        return (tuple(int(x) for x in ref), *enc)

    def _read(self) -> Item | None:
        while (got := self.reader.next()) is not None:
            enc = self.encode(got[1])
            if enc is not None:
                return (got[0], *enc)
            self.dropped += self.reader.count_skips  # first epoch only, like `skipped`
        return None

    def _next_item(self) -> Item | None:
        while True:
            while len(self._buf) < max(self.shuffle_buffer, 1):
                item = self._read()
                if item is None:
                    break
                if not self.shuffle_buffer:
                    return item
                self._buf.append(item)
            if self._buf:
                j = int(self.rng.integers(len(self._buf)))
                item, self._buf[j] = self._buf[j], self._buf[-1]
                self._buf.pop()
                return item
            if self.epoch + 1 >= self.epochs:
                return None
            self.epoch += 1
            self.reader.seek((0, 0, 1))
            self.reader.count_skips = False

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> Batch:
        if self._done:
            raise StopIteration
        return self._next_pretrain() if self.task == "pretrain" else self._next_sft()

    def _next_pretrain(self) -> Batch:
        T1, rows, fill = self.seq_len + 1, [], []
        while len(rows) < self.batch_size:
            if self._doc is None or self._doc_pos >= len(self._doc[1]):
                self._doc, self._doc_pos = self._next_item(), 0
                if self._doc is None:
                    break
            ids = self._doc[1]
            take = ids[self._doc_pos : self._doc_pos + T1 - sum(map(len, fill))]
            self._doc_pos += len(take)
            fill.append(take)
            if sum(map(len, fill)) == T1:
                rows.append(np.concatenate(fill))
                fill = []
        if self._doc is None:
            self._done = True
            if fill:
                rows.append(np.concatenate(fill))
            if not any(len(r) > 1 for r in rows):
                raise StopIteration
        return self._build([(r, None) for r in rows], self.seq_len)

    def _next_sft(self) -> Batch:
        while (item := self._next_item()) is not None:
            b = next(s for s in self.buckets if s >= len(item[1]) - 1)
            self._pending[b].append(item)
            if len(self._pending[b]) == self.batch_size:
                return self._flush(b)
        for b in self.buckets:
            if self._pending[b]:
                return self._flush(b)
        self._done = True
        raise StopIteration

    def _flush(self, b: int) -> Batch:
        items, self._pending[b] = self._pending[b], []
        return self._build([(ids, mask) for _, ids, mask in items], b)

    def _build(self, samples: list[tuple[np.ndarray, np.ndarray | None]], width: int) -> Batch:
        B = self.batch_size
        x = np.full((B, width + 1), self.tok.pad_id, np.int32)
        m = np.zeros((B, width + 1), np.float32)
        for i, (ids, mask) in enumerate(samples):
            x[i, : len(ids)] = ids
            m[i, : len(ids)] = 1 if mask is None else mask
        mask = np.ascontiguousarray(m[:, 1:])
        batch = Batch(
            np.ascontiguousarray(x[:, :-1]),
            np.ascontiguousarray(x[:, 1:]),
            mask,
            int(mask.sum()),
            self.epoch,
        )
        if self.label_buckets is not None:
            counts = mask.sum(1).astype(int)
            K = next(s for s in self.label_buckets if s >= max(int(counts.max()), 1))
            pos = np.zeros((B, K), np.int32)
            lmask = np.zeros((B, K), np.float32)
            for i in range(B):
                nz = np.nonzero(mask[i])[0]
                pos[i, : len(nz)], lmask[i, : len(nz)] = nz, 1
            batch.label_pos, batch.label_mask = pos, lmask
            batch.label_targets = np.take_along_axis(batch.targets, pos, axis=1)
        return batch

    def _config(self) -> dict:
        return {
            "task": self.task,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "shuffle_buffer": self.shuffle_buffer,
            "buckets": self.buckets,
            "label_buckets": self.label_buckets,
            "files": self._files,
        }

    def state(self) -> dict:
        """JSON-serialisable cursor after the last batch returned: read position, epoch, RNG
        and the items held (shuffle buffer, current document, partial buckets) as line refs.
        A prefetching trainer takes `state()` right after each `next()`, with the batch."""
        return {
            "version": STATE_VERSION,
            "config": self._config(),
            "epoch": self.epoch,
            "position": list(self.reader.position),
            "rng": self.rng.bit_generator.state,
            "buffer": [list(it[0]) for it in self._buf],
            "doc": None if self._doc is None else [*self._doc[0], self._doc_pos],
            "pending": {str(b): [list(it[0]) for it in v] for b, v in self._pending.items()},
            "done": self._done,
            "skipped": dict(self.skipped),
            "dropped": self.dropped,
        }

    def restore(self, state: dict) -> None:
        """Continue from `state()`: the next batches are exactly those that followed it."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"data state version {state.get('version')} is not "
                f"{STATE_VERSION}; start without --resume"
            )
        cfg, now = state["config"], self._config()
        for k in now:
            if cfg.get(k) != now[k]:
                raise ValueError(
                    f"cannot resume the data stream: {k} was {cfg.get(k)} in the "
                    f"checkpoint, now {now[k]}; use the same data and settings"
                )
        self._reset()
        self.epoch, self.dropped, self._done = state["epoch"], state["dropped"], state["done"]
        self.rng.bit_generator.state = state["rng"]
        self._buf = [self._load(r) for r in state["buffer"]]
        if state["doc"] is not None:
            self._doc, self._doc_pos = self._load(state["doc"][:3]), state["doc"][3]
        self._pending = {int(b): [self._load(r) for r in v] for b, v in state["pending"].items()}
        self.reader.seek(state["position"])
        self.reader.skipped = dict(state["skipped"])
        self.reader.count_skips = self.epoch == 0

    def num_batches(self) -> int:
        """Exact number of batches this iterator yields over all epochs, from a fresh start.

        One pass over the data that encodes each record (cheap for pretokenized `ids`); the
        count does not depend on shuffling: pretrain yields ceil(rows / batch_size) where
        rows = ceil(epochs * sum(len(doc) + 1) / (seq_len + 1)) (a last row of one token has
        nothing to train and is not counted); SFT sums ceil(epochs * n_b / batch_size) over
        buckets b holding n_b samples.
        """
        reader = JsonlReader(self.paths, self.task, self.tok.vocab_size, self.skip_bad_lines)
        self.count_skipped = reader.skipped  # what the count left out (for a no-rows error)
        if self.task == "pretrain":
            total = self.epochs * sum(len(self.encode(rec)[0]) for _, rec in reader)
            T1 = self.seq_len + 1
            rows = total // T1 + (total % T1 >= 2)
            return math.ceil(rows / self.batch_size)
        counts = dict.fromkeys(self.buckets, 0)
        for _, rec in reader:
            enc = self.encode(rec)
            if enc is not None:
                counts[next(s for s in self.buckets if s >= len(enc[0]) - 1)] += 1
        return sum(math.ceil(self.epochs * n / self.batch_size) for n in counts.values())
