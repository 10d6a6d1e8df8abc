"""Dataset downloads against a local HTTP server standing in for the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest

from minillm.data import hub
from minillm.data.hub import alias_file, hub_download, resolve_data_spec, url_download
from tests.fakehub import running_hub

REPO = "jingyaogong/minimind_dataset"
MB = 1024 * 1024


@pytest.fixture
def server(tmp_path, monkeypatch):
    with running_hub(REPO, tmp_path, monkeypatch) as srv:
        yield srv


def leftovers(data_dir: Path) -> list[Path]:
    return [
        p for p in data_dir.rglob("*") if p.is_file() and p.name.endswith((".incomplete", ".part"))
    ]


@pytest.mark.parametrize(
    "spec,task,want",
    [
        ("minimind", "pretrain", "pretrain_hq.jsonl"),
        ("minimind:auto", "pretrain", "pretrain_hq.jsonl"),
        ("minimind:full", "sft", "sft_mini_512.jsonl"),
        ("minimind:recommended", "sft", "sft_mini_512.jsonl"),
        ("minimind:auto", "sft", "sft_mini_512.jsonl"),
        ("minimind:small", "pretrain", "lora_medical.jsonl"),
        ("minimind:smoke", "sft", "lora_identity.jsonl"),
        ("minimind:dpo", "sft", "dpo.jsonl"),
        ("minimind:dpo.jsonl", "pretrain", "dpo.jsonl"),
        ("minimind:r1_mix_1024", "sft", "r1_mix_1024.jsonl"),
        ("minimind:sft_512.jsonl", "sft", "sft_512.jsonl"),
        ("data/minimind.jsonl", "sft", None),
    ],
)
def test_alias_file(spec, task, want):
    assert alias_file(spec, task) == want


def test_alias_unknown_task():
    with pytest.raises(ValueError, match="task 'grpo'"):
        alias_file("minimind:auto", "grpo")


def test_download_via_hf_endpoint_and_cache_reuse(server, tmp_path):
    server.files["lora_identity.jsonl"] = b'{"text": "hi"}\n' * 10
    server.files["pretrain_hq.jsonl"] = b'{"text": "pre"}\n' * 10
    local = tmp_path / "mine.jsonl"
    local.write_text("x\n")
    spec = f"minimind:smoke,{local},minimind:auto"
    kw = dict(task="pretrain", data_dir=str(tmp_path / "d"), hf_endpoint=server.url, progress=False)
    paths = resolve_data_spec(spec, **kw)
    assert paths == [
        str(tmp_path / "d" / "lora_identity.jsonl"),
        str(local),
        str(tmp_path / "d" / "pretrain_hq.jsonl"),
    ]
    assert Path(paths[0]).read_bytes() == server.files["lora_identity.jsonl"]
    assert len(server.gets()) == 2
    n = len(server.log)
    assert resolve_data_spec(spec, **kw) == paths
    assert len(server.log) == n  # reused without any request
    resolve_data_spec("minimind:smoke", **kw, force_download=True)
    assert len(server.gets()) == 3


def test_download_via_env_endpoint(server, tmp_path, monkeypatch):
    server.files["lora_medical.jsonl"] = b"med\n" * 100
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    [path] = resolve_data_spec("minimind:small", task="sft", data_dir=str(tmp_path), progress=False)
    assert Path(path).read_bytes() == server.files["lora_medical.jsonl"]


def test_generic_repo_and_subfolder(server, tmp_path):
    server.files["main/train-00000-of-00001.parquet"] = b"PAR1" * 50
    path = hub_download(
        REPO,
        "main/train-00000-of-00001.parquet",
        data_dir=tmp_path,
        endpoint=server.url,
        max_mb=1,
        progress=False,
    )
    assert path == tmp_path / "main" / "train-00000-of-00001.parquet"
    assert path.read_bytes() == b"PAR1" * 50


def test_metadata_guard_refuses_before_get(server, tmp_path):
    server.files["pretrain_hq.jsonl"] = b"x" * (3 * MB)
    with pytest.raises(ValueError) as e:
        resolve_data_spec(
            "minimind",
            task="pretrain",
            data_dir=str(tmp_path),
            max_download_mb=1,
            hf_endpoint=server.url,
            progress=False,
        )
    msg = str(e.value)
    assert "minimind" in msg and "pretrain_hq.jsonl" in msg and "3.0 MB" in msg
    assert "--max_download_mb 4" in msg and "0 disables" in msg and "\n" not in msg
    assert server.gets() == [] and not (tmp_path / "pretrain_hq.jsonl").exists()
    [path] = resolve_data_spec(
        "minimind",
        task="pretrain",
        data_dir=str(tmp_path),
        max_download_mb=0,
        hf_endpoint=server.url,
        progress=False,
    )
    assert Path(path).stat().st_size == 3 * MB


@pytest.mark.parametrize("xet", [False, True])
def test_byte_counter_aborts_lying_hub(server, tmp_path, xet):
    server.xet = xet
    server.files["dpo.jsonl"] = b"y" * (64 * MB)
    server.claims["dpo.jsonl"] = 100
    with pytest.raises(ValueError, match="aborted mid-transfer") as e:
        resolve_data_spec(
            "minimind:dpo",
            task="sft",
            data_dir=str(tmp_path),
            max_download_mb=1,
            hf_endpoint=server.url,
            progress=False,
        )
    assert "--max_download_mb" in str(e.value)
    assert len(server.gets()) == 1 and server.sent < 64 * MB
    assert not (tmp_path / "dpo.jsonl").exists() and leftovers(tmp_path) == []
    assert hub.hf_constants.HF_HUB_DISABLE_XET == hf_constants.HF_HUB_DISABLE_XET


def test_lying_hub_under_cap_is_one_line_error(server, tmp_path):
    server.files["dpo.jsonl"] = b"z" * 5000
    server.claims["dpo.jsonl"] = 100
    with pytest.raises(ValueError, match="minimind:dpo") as e:
        resolve_data_spec(
            "minimind:dpo",
            task="sft",
            data_dir=str(tmp_path),
            hf_endpoint=server.url,
            progress=False,
        )
    assert "\n" not in str(e.value)
    assert not (tmp_path / "dpo.jsonl").exists() and leftovers(tmp_path) == []


def test_url_download_and_guards(server, tmp_path):
    server.files["corpus.jsonl"] = b"line\n" * 1000
    url = f"{server.url}/files/corpus.jsonl"
    [path] = resolve_data_spec(url, task="sft", data_dir=str(tmp_path), progress=False)
    assert Path(path) == tmp_path / "corpus.jsonl"
    assert Path(path).read_bytes() == server.files["corpus.jsonl"]
    n = len(server.log)
    assert url_download(url, data_dir=tmp_path, progress=False) == Path(path)
    assert len(server.log) == n

    server.files["big.jsonl"] = b"b" * (2 * MB)
    with pytest.raises(ValueError, match=r"2\.0 MB.*--max_download_mb 3"):
        url_download(f"{server.url}/files/big.jsonl", data_dir=tmp_path, max_mb=1, progress=False)
    assert "/files/big.jsonl" not in server.gets()

    server.files["liar.jsonl"] = b"l" * (32 * MB)
    server.claims["liar.jsonl"] = 10
    with pytest.raises(ValueError, match="aborted mid-transfer"):
        url_download(f"{server.url}/files/liar.jsonl", data_dir=tmp_path, max_mb=1, progress=False)
    assert server.sent < len(server.files["corpus.jsonl"]) + 32 * MB
    assert not (tmp_path / "liar.jsonl").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "spec,endpoint_repo", [("minimind:nope", REPO), ("minimind:smoke", "someone/missing")]
)
def test_not_found_is_clear(server, tmp_path, spec, endpoint_repo):
    with pytest.raises(FileNotFoundError) as e:
        resolve_data_spec(
            spec,
            task="sft",
            data_dir=str(tmp_path),
            hf_endpoint=server.url,
            repo_id=endpoint_repo,
            progress=False,
        )
    msg = str(e.value)
    assert spec in msg and "HF_ENDPOINT" in msg and "--hf_endpoint" in msg and "\n" not in msg
    with pytest.raises(FileNotFoundError, match="HTTP 404"):
        url_download(f"{server.url}/files/missing.jsonl", data_dir=tmp_path, progress=False)


def test_unreachable_endpoint(tmp_path):
    with pytest.raises(ValueError) as e:
        resolve_data_spec(
            "minimind:smoke",
            task="sft",
            data_dir=str(tmp_path),
            hf_endpoint="http://127.0.0.1:9",
            progress=False,
        )
    msg = str(e.value)
    assert "minimind:smoke" in msg and "HF_ENDPOINT" in msg and "\n" not in msg


def test_local_paths_pass_through(tmp_path):
    spec = f"{tmp_path}/a.jsonl, {tmp_path}/shards/*.parquet ,{tmp_path}"
    assert resolve_data_spec(spec, task="sft", data_dir=str(tmp_path / "d")) == [
        f"{tmp_path}/a.jsonl",
        f"{tmp_path}/shards/*.parquet",
        str(tmp_path),
    ]
    existing = tmp_path / "d" / "sft_mini_512.jsonl"
    existing.parent.mkdir()
    existing.write_text("cached\n")
    assert resolve_data_spec(
        "minimind:auto", task="sft", data_dir=str(tmp_path / "d"), hf_endpoint="http://127.0.0.1:9"
    ) == [str(existing)]
    with pytest.raises(ValueError, match="empty data spec"):
        resolve_data_spec(" , ", task="sft", data_dir=str(tmp_path))


def test_no_disk_space_is_one_line_before_any_download(server, tmp_path, monkeypatch):
    """A corpus bigger than the free space is refused from its size (metadata or HEAD), before
    a byte is fetched; the disk is the real one, its free space reported as 10 MB."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 40, 0, 10 * MB))
    server.files["pretrain_hq.jsonl"] = b"x" * (3 * MB)
    kw = dict(task="pretrain", data_dir=str(tmp_path), hf_endpoint=server.url, progress=False)
    with pytest.raises(ValueError) as e:
        resolve_data_spec("minimind", **kw)
    msg = str(e.value)
    assert (
        "not enough disk space for" in msg and "pretrain_hq.jsonl: 3 MB needed, 10 MB free" in msg
    )
    assert "--data_dir" in msg and "\n" not in msg
    assert server.gets() == [] and not (tmp_path / "pretrain_hq.jsonl").exists()
    server.files["corpus.jsonl"] = b"c" * (2 * MB)
    with pytest.raises(ValueError, match="2 MB needed, 10 MB free"):
        url_download(f"{server.url}/files/corpus.jsonl", data_dir=tmp_path, progress=False)
    assert "/files/corpus.jsonl" not in server.gets()
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 40, 0, 1 << 30))
    [path] = resolve_data_spec("minimind", **kw)  # with room it downloads
    assert Path(path).stat().st_size == 3 * MB
