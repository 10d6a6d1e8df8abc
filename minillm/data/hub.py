"""Resolve `--data_path` specs: `minimind:*` aliases, Hub files, http(s) URLs, local paths."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
from huggingface_hub import constants as hf_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import tqdm as hf_tqdm

try:
    import httpx2

    _HTTP_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, httpx2.HTTPError, OSError)
except ImportError:  # httpx2 is the HTTP client of huggingface_hub 2.x
    _HTTP_ERRORS = (httpx.HTTPError, OSError)

MINIMIND_REPO = "jingyaogong/minimind_dataset"
AUTO_FILES = {"pretrain": "pretrain_hq.jsonl", "sft": "sft_mini_512.jsonl", "dpo": "dpo.jsonl"}
NAMED_FILES = {"small": "lora_medical.jsonl", "smoke": "lora_identity.jsonl"}
AUTO_NAMES = ("", "auto", "full", "recommended")
MB = 1024 * 1024
HINT = (
    "set --hf_endpoint / HF_ENDPOINT (e.g. a mirror such as https://hf-mirror.com) "
    "or pass a local file path"
)


class DownloadTooLarge(ValueError):
    """A download is (or turned out to be) over the `--max_download_mb` limit."""


def _limit(max_mb: float | None) -> int | None:
    return int(max_mb * MB) if max_mb and max_mb > 0 else None


def _too_large(name: str, max_mb: float, size: int | None = None) -> DownloadTooLarge:
    if size is None:
        what, fix = "passed", "N"
    else:
        what, fix = f"is {size / MB:.1f} MB, over", str(int(size / MB) + 1)
    mid = "; aborted mid-transfer and removed the partial file" if size is None else ""
    return DownloadTooLarge(
        f"{name} {what} the download limit of {max_mb:g} MB{mid}; raise it with "
        f"--max_download_mb {fix} (0 disables the limit) or pass a local file"
    )


def _capped_tqdm(name: str, max_mb: float, progress: bool) -> type[hf_tqdm]:
    cap = _limit(max_mb)

    class CappedTqdm(hf_tqdm):
        def __init__(self, *args, **kwargs):
            if not progress:
                kwargs["disable"] = True
            self.seen = kwargs.get("initial", 0) or 0
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1):
            self.seen += n or 0
            if cap is not None and self.seen > cap:
                raise _too_large(name, max_mb)
            return super().update(n)

    return CappedTqdm


@contextmanager
def _plain_http() -> Iterator[None]:
    # Xet transfers run in native code that an exception raised by the progress bar is not known
    # to stop; force the streaming HTTP path, where CappedTqdm.update aborts the GET.
    old = hf_constants.HF_HUB_DISABLE_XET
    hf_constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_DISABLE_XET = old


def _endpoint(endpoint: str | None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or hf_constants.ENDPOINT).rstrip("/")


def _hub_error(what: str, endpoint: str, e: Exception) -> Exception:
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status == 404 or isinstance(
        e, RepositoryNotFoundError | RevisionNotFoundError | EntryNotFoundError
    ):
        return FileNotFoundError(f"{what} not found on {endpoint} (HTTP {status}); {HINT}")
    reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return ValueError(
        f"cannot download {what} from {endpoint} ({type(e).__name__}: {reason}); {HINT}"
    )


def check_disk(what: str, size: int | None, data_dir: str | os.PathLike) -> None:
    """ValueError of one line when `data_dir`'s disk has less free space than `size` bytes
    (plus 64 MiB to spare), before anything is downloaded."""
    if not size:
        return
    free = shutil.disk_usage(data_dir).free
    if size + (64 << 20) > free:
        raise ValueError(
            f"not enough disk space for {what}: {size / 2**20:.0f} MB needed, "
            f"{free / 2**20:.0f} MB free in {Path(data_dir).resolve()}; free some space or "
            "pass --data_dir on a disk with room"
        )


def _no_space(what: str, data_dir: str | os.PathLike, e: OSError) -> ValueError:
    return ValueError(
        f"the disk filled up while downloading {what} into {Path(data_dir).resolve()} "
        f"({e.strerror}); nothing partial was kept. Free some space or pass --data_dir on a "
        "disk with room"
    )


def hub_download(
    repo_id: str,
    filename: str,
    *,
    repo_type: str = "dataset",
    revision: str | None = None,
    data_dir: str | os.PathLike,
    endpoint: str | None = None,
    max_mb: float | None = 2048,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download `filename` of a Hub repo into `data_dir/filename` and return its path.

    An existing non-empty file is reused unless `force`. The size from the file's Hub metadata
    (one HEAD request) must be under `max_mb` (0/None disables); the transfer itself is also
    capped by a byte counter that aborts it and leaves no partial file. `endpoint` defaults to
    `HF_ENDPOINT`, read at call time.
    """
    dest = Path(data_dir) / filename
    if not force and dest.is_file() and dest.stat().st_size > 0:
        return dest
    endpoint = _endpoint(endpoint)
    what = f"{repo_id}/{filename}"
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    try:
        url = hf_hub_url(
            repo_id, filename, repo_type=repo_type, revision=revision, endpoint=endpoint
        )
        meta = get_hf_file_metadata(url, endpoint=endpoint)
        if meta.size is not None and _limit(max_mb) is not None and meta.size > _limit(max_mb):
            raise _too_large(what, max_mb, meta.size)
        check_disk(what, meta.size, data_dir)
        with _plain_http():
            hf_hub_download(
                repo_id,
                filename,
                repo_type=repo_type,
                revision=meta.commit_hash or revision,
                local_dir=data_dir,
                endpoint=endpoint,
                force_download=force,
                tqdm_class=_capped_tqdm(what, max_mb, progress),
            )
    except DownloadTooLarge:
        raise
    except (HfHubHTTPError, *_HTTP_ERRORS) as e:
        raise _hub_error(what, endpoint, e) from None
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        (Path(data_dir) / filename).unlink(missing_ok=True)
        raise _no_space(what, data_dir, e) from None
    return dest


def url_download(
    url: str,
    *,
    data_dir: str | os.PathLike,
    max_mb: float | None = 2048,
    force: bool = False,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download an http(s) `url` to `data_dir/<basename>`, size-checked like `hub_download`."""
    name = unquote(Path(urlparse(url).path).name)
    if not name:
        raise ValueError(f"cannot tell a file name from URL {url!r}; point it at a file")
    dest = Path(data_dir) / name
    if not force and dest.is_file() and dest.stat().st_size > 0:
        return dest
    cap = _limit(max_mb)
    tmp = dest.with_name(f".{name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with httpx.Client(follow_redirects=True, timeout=timeout) as client:
            head = client.head(url, headers={"Accept-Encoding": "identity"})
            size = int(head.headers.get("Content-Length", 0)) if head.is_success else 0
            if cap is not None and size > cap:
                raise _too_large(url, max_mb, size)
            dest.parent.mkdir(parents=True, exist_ok=True)
            check_disk(url, size, dest.parent)
            with client.stream("GET", url) as r, open(tmp, "wb") as f:
                r.raise_for_status()
                total = int(r.headers.get("Content-Length", 0)) or size or None
                if cap is not None and total and total > cap:
                    raise _too_large(url, max_mb, total)
                with hf_tqdm(
                    total=total, unit="B", unit_scale=True, desc=name, disable=not progress
                ) as bar:
                    seen = 0
                    for chunk in r.iter_bytes(1 << 16):
                        seen += len(chunk)
                        if cap is not None and seen > cap:
                            raise _too_large(url, max_mb)
                        f.write(chunk)
                        bar.update(len(chunk))
        os.replace(tmp, dest)
    except DownloadTooLarge:
        raise
    except httpx.HTTPStatusError as e:
        cls = FileNotFoundError if e.response.status_code == 404 else ValueError
        raise cls(
            f"cannot download {url} (HTTP {e.response.status_code}); "
            "check the URL or pass a local file path"
        ) from None
    except _HTTP_ERRORS as e:
        raise ValueError(
            f"cannot download {url} ({type(e).__name__}: {e}); "
            "check the URL or pass a local file path"
        ) from None
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise _no_space(url, data_dir, e) from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def alias_file(spec: str, task: str) -> str | None:
    """The `jingyaogong/minimind_dataset` file a `minimind[:name]` spec names, else None."""
    head, _, name = spec.partition(":")
    if head != "minimind":
        return None
    name = name.strip()
    if name in AUTO_NAMES:
        if task not in AUTO_FILES:
            raise ValueError(
                f"{spec!r} has no default file for task {task!r}; "
                f"known tasks: {', '.join(AUTO_FILES)}; name a file as minimind:<file>"
            )
        return AUTO_FILES[task]
    if name in NAMED_FILES:
        return NAMED_FILES[name]
    return name if Path(name).suffix else f"{name}.jsonl"


def resolve_data_spec(
    spec: str,
    *,
    task: str,
    data_dir: str,
    hf_endpoint: str | None = None,
    max_download_mb: float = 2048,
    force_download: bool = False,
    repo_id: str = MINIMIND_REPO,
    progress: bool = True,
) -> list[str]:
    """Turn a comma-separated data spec into local paths, downloading what must be downloaded.

    Entries: `minimind`, `minimind:auto|full|recommended` (task's default file),
    `minimind:small|smoke|dpo|<file>` (files of `repo_id`), http(s) URLs, and local
    paths/globs/dirs, which are returned unchanged. Order is kept.
    """
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if (filename := alias_file(item, task)) is not None:
            get = partial(hub_download, repo_id, filename, endpoint=hf_endpoint)
        elif item.startswith(("http://", "https://")):
            get = partial(url_download, item)
        else:
            out.append(item)
            continue
        try:
            out.append(
                str(
                    get(
                        data_dir=data_dir,
                        max_mb=max_download_mb,
                        force=force_download,
                        progress=progress,
                    )
                )
            )
        except (FileNotFoundError, ValueError) as e:
            cls = next(
                c for c in (DownloadTooLarge, FileNotFoundError, ValueError) if isinstance(e, c)
            )
            raise cls(f"data spec {item!r}: {e}") from None
    if not out:
        raise ValueError(f"empty data spec {spec!r}; pass a path, URL or minimind:<name>")
    return out
