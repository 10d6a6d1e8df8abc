"""The shard store: accepted samples as Arrow IPC files plus a JSON manifest, both written
atomically (temp file, fsync, rename). The manifest is the system of record: a lease (a block
of task indices) is done exactly when its entry is in the manifest, so a restarted generator or
a resumed run re-issues only the leases that are not, and nothing is lost or written twice.
Prompts are deduplicated by hash across the whole store, restarts included.

    shards/manifest.json            {"version", "config", "entries": [...], "closed"}
    shards/shard-00000042.arrow     the rows of lease 42 (absent when none were accepted)
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

MANIFEST = "manifest.json"
VERSION = 1
SCHEMA = pa.schema(
    [
        ("task_index", pa.int64()),
        ("prompt_hash", pa.string()),
        ("category", pa.string()),
        ("subtype", pa.string()),
        ("lang", pa.string()),
        ("system", pa.string()),
        ("prompt", pa.string()),
        ("answer", pa.string()),
        ("reply", pa.string()),
        ("thinking", pa.string()),
        ("teacher", pa.string()),
        ("latency_s", pa.float32()),
        ("generator", pa.int32()),
        ("lease", pa.int64()),
    ]
)


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    _write_atomic(path, lambda f: f.write((json.dumps(obj, indent=1) + "\n").encode()))


def write_table(path: Path, table: pa.Table) -> None:
    def write(f):
        with ipc.new_file(f, table.schema) as w:
            w.write_table(table)

    _write_atomic(path, write)


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """An Arrow IPC file as a table; a damaged file is a ValueError naming it."""
    try:
        with pa.memory_map(str(path)) as src:
            t = ipc.open_file(src).read_all()
    except (OSError, pa.ArrowInvalid) as e:
        raise ValueError(
            f"{path}: not a readable Arrow shard ({e}); restore it from a copy or start a new "
            "out_dir"
        ) from None
    missing = [c for c in SCHEMA.names if c not in t.column_names]
    if missing:
        raise ValueError(f"{path}: shard lacks columns {missing}; it was not written by MiniLLM")
    return t.select(columns) if columns else t


def read_manifest(shard_dir: str | os.PathLike) -> dict | None:
    """The manifest of `shard_dir`, or None when there is none yet."""
    path = Path(shard_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: bad JSON ({e}); the manifest is damaged") from None
    if not isinstance(m, dict) or m.get("version") != VERSION or "entries" not in m:
        raise ValueError(f"{path}: not a MiniLLM shard manifest (version {VERSION})")
    return m


def totals(entries: list[dict]) -> dict[str, Any]:
    """Sums over manifest entries: rows, tasks, and per-category accepted/rejected counts."""
    acc, rej, dup, err = Counter(), Counter(), 0, Counter()
    for e in entries:
        acc.update(e["accepted"])
        rej.update(e["rejected"])
        dup += e["duplicates"]
        err.update(e["errors"])
    return {
        "rows": sum(e["rows"] for e in entries),
        "tasks": sum(e["count"] for e in entries),
        "accepted": dict(acc),
        "rejected": dict(rej),
        "duplicates": dup,
        "errors": dict(err),
    }


class ShardStore:
    """Commits generator output (an Arrow table of accepted rows + its counts) lease by lease.

    `config` describes the task stream (seed, lease size, ...); reopening a store with a
    different one is an error, since the lease numbers would mean other tasks. `max_rows`
    (0 = no limit) trims the last commit so the store never holds more rows than asked for.
    """

    def __init__(
        self,
        shard_dir: str | os.PathLike,
        config: dict,
        max_rows: int = 0,
        export_jsonl: str | None = None,
    ):
        self.dir = Path(shard_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        m = read_manifest(self.dir)
        if m is None:
            m = {"version": VERSION, "config": config, "entries": [], "closed": False}
            write_json_atomic(self.dir / MANIFEST, m)
        elif m["config"] != config:
            diff = sorted(
                k for k in set(config) | set(m["config"]) if config.get(k) != m["config"].get(k)
            )
            raise ValueError(
                f"{self.dir / MANIFEST} was written with other task settings ({', '.join(diff)}); "
                "use the same settings to resume, or another out_dir"
            )
        self.manifest = m
        known = {e["file"] for e in m["entries"] if e["file"]} | {MANIFEST}
        for p in self.dir.iterdir():  # a shard written before a crash, never committed
            if p.name not in known and (p.suffix == ".arrow" or ".tmp-" in p.name):
                p.unlink()
        self.hashes: set[str] = set()
        for e in m["entries"]:
            if e["file"]:
                col = read_table(self.dir / e["file"], ["prompt_hash"]).column(0)
                self.hashes.update(col.to_pylist())
        self.done = {e["lease"] for e in m["entries"]}
        self.rows = sum(e["rows"] for e in m["entries"])
        self.export = Path(export_jsonl) if export_jsonl else None
        if self.export is not None:
            self._check_export()

    # ---- writing
    def commit(
        self, lease: int, start: int, count: int, table: pa.Table, stats: dict
    ) -> dict | None:
        """Commit one lease; returns its manifest entry, or None when the store is closed (the
        sample target was reached while the lease was out). A lease already done is not
        written again (a retried call after a lost reply): its entry is returned."""
        if lease in self.done:
            old = next(e for e in self.manifest["entries"] if e["lease"] == lease)
            return {**old, "repeat": True}
        if self.manifest["closed"]:
            return None
        table = table.cast(SCHEMA) if table.schema != SCHEMA else table
        keep, dup = [], 0
        for i, h in enumerate(table.column("prompt_hash").to_pylist()):
            if h in self.hashes:
                dup += 1
            else:
                self.hashes.add(h)
                keep.append(i)
        over = 0
        if self.max_rows and self.rows + len(keep) > self.max_rows:
            over = self.rows + len(keep) - self.max_rows
            for i in keep[len(keep) - over :]:
                self.hashes.discard(table.column("prompt_hash")[i].as_py())
            keep = keep[: len(keep) - over]
        table = table.take(pa.array(keep, pa.int64())) if len(keep) != len(table) else table
        accepted = Counter(table.column("category").to_pylist())
        name = f"shard-{lease:08d}.arrow" if len(table) else None
        if name:
            write_table(self.dir / name, table)
        entry = {
            "lease": lease,
            "start": start,
            "count": count,
            "file": name,
            "rows": len(table),
            "accepted": dict(accepted),
            "rejected": dict(stats.get("rejected", {})),
            "duplicates": dup,
            "over_target": over,
            "errors": dict(stats.get("errors", {})),
            "generator": stats.get("generator"),
        }
        self.manifest["entries"].append(entry)
        if self.max_rows and self.rows + len(table) >= self.max_rows:
            self.manifest["closed"] = True
        write_json_atomic(self.dir / MANIFEST, self.manifest)
        self.done.add(lease)
        self.rows += len(table)
        if self.export is not None and len(table):
            with self.export.open("a", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in to_records(table))
        return entry

    def close(self) -> None:
        """Mark the stream finished: the learner stops once it has read everything."""
        if not self.manifest["closed"]:
            self.manifest["closed"] = True
            write_json_atomic(self.dir / MANIFEST, self.manifest)

    # ---- reading
    def leases_done(self) -> list[int]:
        return sorted(self.done)

    def summary(self) -> dict:
        """Totals over the manifest plus `closed` and the number of shard files."""
        entries = self.manifest["entries"]
        return {
            **totals(entries),
            "leases": len(entries),
            "shards": sum(1 for e in entries if e["file"]),
            "closed": self.manifest["closed"],
        }

    def _check_export(self) -> None:
        """Rewrite the JSONL export from the shards when it does not match them (a crash
        between a commit and its export, or a new DATA_JSONL path on resume)."""
        n = 0
        if self.export.is_file():
            with self.export.open("rb") as f:
                n = sum(1 for _ in f)
        if n == self.rows:
            return
        self.export.parent.mkdir(parents=True, exist_ok=True)

        def write(f):
            for e in self.manifest["entries"]:
                if e["file"]:
                    for r in to_records(read_table(self.dir / e["file"])):
                        f.write((json.dumps(r, ensure_ascii=False) + "\n").encode())

        _write_atomic(self.export, write)


def to_records(table: pa.Table) -> list[dict]:
    """Rows as MiniMind SFT records (`conversations`), with the task metadata beside them."""
    out = []
    for r in table.to_pylist():
        conv = [
            {"role": "system", "content": r["system"]},
            {"role": "user", "content": r["prompt"]},
            {"role": "assistant", "content": r["reply"]},
        ]
        out.append(
            {
                "conversations": conv,
                "category": r["category"],
                "lang": r["lang"],
                "answer": r["answer"],
                "teacher": r["teacher"],
                "task_index": r["task_index"],
                "prompt_hash": r["prompt_hash"],
            }
        )
    return out
