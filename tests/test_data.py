"""Data pipeline: JSONL validation, packing, SFT masks, buckets, sparse labels, exact resume,
pretokenize, streaming memory. Hermetic: data is generated in tmp_path."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minillm.data.batching import Batches
from minillm.data.jsonl import resolve_paths
from minillm.pretokenize import main as pretokenize_main
from minillm.pretokenize import pretokenize

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "猫",
    "坐在",
    "垫子",
    "上",
    "model",
    "data",
    "token",
    "train",
    "loss",
    "123",
    "!",
]


@pytest.fixture(scope="module")
def tok():
    from minillm.tokenizer import load_tokenizer

    return load_tokenizer()


def _text(rng: random.Random, lo: int = 1, hi: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _conv(rng: random.Random) -> dict:
    turns = [{"role": "system", "content": _text(rng, 1, 5)}] if rng.random() < 0.5 else []
    for _ in range(rng.randint(1, 3)):
        turns += [
            {"role": "user", "content": _text(rng, 1, 12)},
            {"role": "assistant", "content": _text(rng, 1, 20)},
        ]
    return {"conversations": turns}


def _write(path, records) -> str:
    with open(path, "wb") as f:
        for r in records:
            f.write(r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode())
            f.write(b"\n")
    return str(path)


def _all(batches) -> list:
    return list(batches)


def _same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for k in ("inputs", "targets", "mask", "label_pos", "label_mask", "label_targets"):
            u, v = getattr(x, k), getattr(y, k)
            assert (u is None and v is None) or np.array_equal(u, v), k
        assert (x.n_tokens, x.epoch) == (y.n_tokens, y.epoch)


def test_resolve_paths(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    for n in ("b.jsonl", "a.jsonl", "c.txt"):
        (d / n).write_text("{}\n")
    one = _write(tmp_path / "one.jsonl", [{"text": "x"}])
    got = resolve_paths(f"{one}, {d}, {d}/a*.jsonl")
    assert [p.name for p in got] == ["one.jsonl", "a.jsonl", "b.jsonl", "a.jsonl"]
    (tmp_path / "empty").mkdir()
    for bad in (
        f"{one},{tmp_path}/missing.jsonl",
        f"{tmp_path}/nothing*.jsonl",
        str(tmp_path / "empty"),
    ):
        name = bad.split(",")[-1]
        with pytest.raises(FileNotFoundError, match=name.replace("*", r"\*")):
            resolve_paths(bad)
    with pytest.raises(ValueError, match="minimind:auto"):
        resolve_paths("minimind:auto")


def test_sft_mask_hand_computed(tok, tmp_path):
    conv = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "the cat"},
        {"role": "assistant", "content": "sat on"},
        {"role": "user", "content": "a mat"},
        {"role": "assistant", "content": "猫 坐在 垫子"},
    ]
    ids, mask = [], []
    for m in conv:
        head = tok.encode(f"<|im_start|>{m['role']}\n")
        if m["role"] == "assistant":
            body = tok.encode(m["content"]) + [tok.eos_id]
            ids += head + body + tok.encode("\n")
            mask += [0] * len(head) + [1] * len(body) + [0] * len(tok.encode("\n"))
        else:
            part = tok.encode(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
            ids, mask = ids + part, mask + [0] * len(part)
    rendered = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conv)
    assert ids == tok.encode(rendered)
    assert sum(mask) == len(tok.encode("sat on")) + len(tok.encode("猫 坐在 垫子")) + 2
    path = _write(tmp_path / "sft.jsonl", [{"conversations": conv}])
    (b,) = _all(Batches(path, tok, "sft", seq_len=64, batch_size=1))
    n = len(ids) - 1
    assert b.inputs[0, :n].tolist() == ids[:-1] and b.targets[0, :n].tolist() == ids[1:]
    assert b.mask[0].tolist() == mask[1:] + [0] * (64 - n)
    assert b.n_tokens == sum(mask) and (b.mask[0, n:] == 0).all()
    trained = b.targets[0][b.mask[0] == 1].tolist()
    assert trained == (
        tok.encode("sat on") + [tok.eos_id] + tok.encode("猫 坐在 垫子") + [tok.eos_id]
    )


def _rows(batches) -> list[list[int]]:
    rows = []
    for b in batches:
        for i in range(b.inputs.shape[0]):
            n = int(b.mask[i].sum())
            if n:
                rows.append([int(b.inputs[i, 0])] + b.targets[i, :n].tolist())
    return rows


@pytest.mark.parametrize("epochs", [1, 2])
def test_pretrain_packing_loses_nothing(tok, tmp_path, epochs):
    rng = random.Random(0)
    docs = [_text(rng, 1, 60) for _ in range(23)] + ["cat " * 90]
    path = _write(tmp_path / "pt.jsonl", [{"text": d} for d in docs])
    it = Batches(path, tok, "pretrain", seq_len=16, batch_size=3, epochs=epochs)
    batches = _all(it)
    stream = [t for d in docs for t in tok.encode(d) + [tok.eos_id]] * epochs
    rows = _rows(batches)
    assert [t for r in rows for t in r] == stream
    assert all(len(r) == 17 for r in rows[:-1]) and 2 <= len(rows[-1]) <= 17
    assert len(batches) == it.num_batches() == -(-len(rows) // 3)
    assert all(b.inputs.shape == (3, 16) and b.mask.dtype == np.float32 for b in batches)
    assert all(b.n_tokens == 3 * 16 for b in batches[:-1])
    assert [b.epoch for b in batches][-1] == epochs - 1


BAD = {
    "bad JSON": b'{"text": "unterminated',
    "missing field": b'{"txt": "no text field"}',
    "empty text": b'{"text": ""}',
    "invalid UTF-8": b'{"text": "caf\xc3 \xff"}',
    "not a JSON object": b'["a", "list"]',
    "bad ids": b'{"ids": [1, 99999]}',
}
BAD_SFT = {
    "empty conversation": b'{"conversations": []}',
    "bad conversation": b'{"conversations": [{"role": "user", "content": "no answer"}]}',
    "bad mask": b'{"ids": [5, 6, 7], "mask": [0, 1]}',
}


@pytest.mark.parametrize(
    "task,kind,line",
    [("pretrain", k, v) for k, v in BAD.items()] + [("sft", k, v) for k, v in BAD_SFT.items()],
)
def test_bad_lines(tok, tmp_path, task, kind, line):
    rng = random.Random(1)
    good = [{"text": _text(rng)} if task == "pretrain" else _conv(rng) for _ in range(4)]
    path = _write(tmp_path / "bad.jsonl", good[:2] + [line] + good[2:])
    clean = _write(tmp_path / "clean.jsonl", good)
    kw = dict(task=task, seq_len=32, batch_size=2)
    with pytest.raises(ValueError, match=rf"bad\.jsonl:3: {kind}.*--skip_bad_lines"):
        _all(Batches(path, tok, **kw))
    it = Batches(path, tok, skip_bad_lines=True, epochs=2, **kw)
    _same(_all(it), _all(Batches(clean, tok, epochs=2, **kw)))
    assert it.skipped == {kind: 1}  # counted once, not once per epoch


def test_control_character_message_reads_once(tok, tmp_path):
    path = _write(tmp_path / "ctl.jsonl", [b'{"text": "a raw \x01 control character"}'])
    with pytest.raises(ValueError) as e:
        _all(Batches(path, tok, task="pretrain", seq_len=32, batch_size=2))
    assert "ctl.jsonl:1: bad JSON: Invalid control character at column 17" in str(e.value)


def _sft_file(tmp_path, n=60, seed=0) -> str:
    rng = random.Random(seed)
    return _write(tmp_path / f"sft{seed}.jsonl", [_conv(rng) for _ in range(n)])


@pytest.mark.parametrize("task", ["sft", "pretrain"])
def test_exact_resume_every_cut(tok, tmp_path, task):
    if task == "sft":
        paths = [_sft_file(tmp_path, 40, 0), _sft_file(tmp_path, 25, 1)]
        kw = dict(task="sft", seq_len=96, batch_size=3, bucket_sizes=[32, 64])
    else:
        rng = random.Random(2)
        paths = [_write(tmp_path / "pt.jsonl", [{"text": _text(rng, 1, 50)} for _ in range(50)])]
        kw = dict(task="pretrain", seq_len=20, batch_size=2)
    kw.update(seed=7, epochs=2, shuffle_buffer=9, sparse_loss=True)
    it = Batches(paths, tok, **kw)
    states, batches = [json.dumps(it.state())], []
    for b in it:
        batches.append(b)
        states.append(json.dumps(it.state()))
    assert len(batches) == Batches(paths, tok, **kw).num_batches() > 10
    if task == "sft":
        assert {b.inputs.shape[1] for b in batches} == {32, 64, 96}
        assert len(states[-1]) < 4000
    for cut in range(len(states)):
        again = Batches(paths, tok, **kw)
        again.restore(json.loads(states[cut]))
        _same(_all(again), batches[cut:])
    other = Batches(paths, tok, **{**kw, "seed": 8})
    with pytest.raises(ValueError, match="seed"):
        other.restore(json.loads(states[3]))


def test_shuffle_is_seeded_permutation(tok, tmp_path):
    path = _write(tmp_path / "ids.jsonl", [{"ids": [i + 3] * 4} for i in range(40)])
    kw = dict(task="pretrain", seq_len=4, batch_size=1, shuffle_buffer=8)
    first = lambda s: [int(b.inputs[0, 0]) for b in Batches(path, tok, seed=s, **kw)]  # noqa: E731
    a, b = first(1), first(1)
    assert a == b and a != first(2) and a != sorted(a) and sorted(a) == list(range(3, 43))


def test_sparse_label_positions(tok, tmp_path):
    path = _sft_file(tmp_path, 30)
    it = Batches(
        path,
        tok,
        "sft",
        seq_len=64,
        batch_size=4,
        bucket_sizes=[24, 40],
        sparse_loss=True,
        label_bucket_sizes=[8, 16],
    )
    for b in it:
        for row in b.inputs:  # each sample sits in the smallest bucket that holds it
            n = int((row != tok.pad_id).sum())
            assert n == 0 or b.inputs.shape[1] == min(s for s in (24, 40, 64) if s >= n)
        K = b.label_pos.shape[1]
        assert K in (8, 16, 64) and b.label_mask.sum() == b.n_tokens
        for i in range(4):
            nz = np.nonzero(b.mask[i])[0]
            assert b.label_pos[i, : len(nz)].tolist() == nz.tolist()
            assert (b.label_mask[i, : len(nz)] == 1).all() and (
                b.label_mask[i, len(nz) :] == 0
            ).all()
            assert (b.label_targets[i, : len(nz)] == b.targets[i, nz]).all()
        assert K == 64 or (b.mask.sum(1) <= K).all()


def test_sft_ids_records_and_truncation(tok, tmp_path):
    path = _write(
        tmp_path / "ids.jsonl",
        [
            {"ids": [5, 6, 7, 8], "mask": [0, 0, 1, 1]},
            {"ids": [9, 10, 11]},
            {"ids": [1, 2, 3, 4, 5, 6], "mask": [0] * 5 + [1]},
        ],
    )
    it = Batches(path, tok, "sft", seq_len=4, batch_size=1, epochs=2)
    b1, b2 = _all(it)[:2]
    assert it.dropped == 1 and it.num_batches() == 4
    assert b1.targets[0].tolist() == [6, 7, 8, 0] and b1.mask[0].tolist() == [0, 1, 1, 0]
    assert b2.mask[0].tolist() == [1, 1, 0, 0]  # no mask: every token trains; the last sample
    # has its only trained token beyond seq_len + 1, so it is dropped


def test_pretokenize_is_transparent(tok, tmp_path, capsys):
    rng = random.Random(3)
    sft = _sft_file(tmp_path, 50)
    pt = _write(
        tmp_path / "pt.jsonl",
        [{"text": _text(rng)} for _ in range(30)]
        + [{"conversations": _conv(rng)["conversations"]}, b'{"oops": 1}'],
    )
    cases = [
        (sft, "sft", dict(seq_len=40, batch_size=3, bucket_sizes=[16])),
        (pt, "pretrain", dict(seq_len=24, batch_size=2)),
    ]
    for raw, task, kw in cases:
        kw.update(seed=5, shuffle_buffer=6, epochs=2, skip_bad_lines=True)
        ref = _all(Batches(raw, tok, task, **kw))
        for workers in (1, 2) if task == "sft" else (2,):
            out = tmp_path / f"{task}_{workers}.jsonl"
            stats = pretokenize(
                resolve_paths(raw),
                out,
                task,
                num_workers=workers,
                skip_bad_lines=True,
                progress=False,
            )
            assert stats["skipped"] == ({"missing field": 1} if task == "pretrain" else {})
            _same(_all(Batches(str(out), tok, task, **kw)), ref)
    out = tmp_path / "cli.jsonl"
    pretokenize_main(
        [
            "--data_path",
            sft,
            "--task",
            "sft",
            "--out_path",
            str(out),
            "--num_workers",
            "2",
            "--keep_fields",
            "--seq_len",
            "40",
        ]
    )
    assert "50 lines" in capsys.readouterr().out
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first) == {"conversations", "ids", "mask"} and len(first["ids"]) <= 41
    with pytest.raises(ValueError, match=r"pt\.jsonl:32: missing field"):
        pretokenize(
            resolve_paths(pt), tmp_path / "x.jsonl", "pretrain", num_workers=1, progress=False
        )
    assert not (tmp_path / "x.jsonl").exists()


def test_streaming_memory_is_flat(tok, tmp_path):
    """Peak RSS grows by < 8 MB while streaming a ~30 MB file (measured in a subprocess)."""
    script = textwrap.dedent("""
        import json, resource, sys
        import numpy as np
        from minillm.data.batching import Batches
        from minillm.tokenizer import load_tokenizer
        path, tok_path = sys.argv[1], sys.argv[2]
        rows = np.random.default_rng(0).integers(3, 6000, size=(3300, 2000)).tolist()
        with open(path, "w") as f:
            f.writelines(json.dumps({"ids": r}) + "\\n" for r in rows)
        it = Batches(path, load_tokenizer(tok_path), "pretrain", seq_len=512, batch_size=4,
                     shuffle_buffer=64)
        for _, b in zip(range(200), it):
            pass
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        n = 200 + sum(1 for _ in it)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        unit = 2**20 if sys.platform == "darwin" else 2**10  # ru_maxrss: bytes on macOS
        print(json.dumps({"growth_mb": (peak - base) / 2**20 * unit, "batches": n}))
    """)
    path = tmp_path / "big.jsonl"
    out = subprocess.run(
        [sys.executable, "-c", script, str(path), str(tok.path)],
        capture_output=True,
        text=True,
        check=True,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert path.stat().st_size >= 30_000_000 and res["batches"] > 2000
    assert res["growth_mb"] < 8, res
