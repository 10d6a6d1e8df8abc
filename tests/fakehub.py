"""A local HTTP server standing in for the Hugging Face Hub (tests/test_hub.py, test_gsm8k.py)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import huggingface_hub.constants as hf_constants

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(ThreadingHTTPServer):
    """Serves `files` of the dataset `repo` at `/datasets/{repo}/resolve/{rev}/{file}` (HEAD +
    GET, like the Hub; any other repo is RepoNotFound, a missing file EntryNotFound) and at
    `/files/{name}`.

    `claims[path]` makes HEAD announce that size while GET streams `len(files[path])` bytes
    without a Content-Length (a lying server); `xet` adds the Hub's Xet headers to HEAD.
    """

    daemon_threads = True

    def __init__(self, repo: str, files: dict[str, bytes] | None = None, commit: str = COMMIT):
        super().__init__(("127.0.0.1", 0), Handler)
        self.repo, self.commit = repo, commit
        self.files: dict[str, bytes] = dict(files or {})
        self.claims: dict[str, int] = {}
        self.xet = False
        self.log: list[tuple[str, str]] = []
        self.sent = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def gets(self) -> list[str]:
        return [p for m, p in self.log if m == "GET"]


class Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.serve(body=False)

    def do_GET(self):
        self.serve(body=True)

    def serve(self, body: bool):
        srv = self.server
        srv.log.append((self.command, self.path))
        parts = self.path.split("/")
        if parts[1] == "datasets" and len(parts) > 6 and parts[4] == "resolve":
            repo, key = "/".join(parts[2:4]), "/".join(parts[6:])
            if repo != srv.repo:
                return self.fail({"X-Error-Code": "RepoNotFound"})
            if key not in srv.files:
                return self.fail({"X-Error-Code": "EntryNotFound", "X-Repo-Commit": srv.commit})
        elif parts[1] == "files":
            key = "/".join(parts[2:])
            if key not in srv.files:
                return self.fail({})
        else:
            return self.fail({})
        data = srv.files[key]
        lying = key in srv.claims
        self.send_response(200)
        self.send_header("X-Repo-Commit", srv.commit)
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        if srv.xet and not body:
            self.send_header("X-Xet-Hash", "ab" * 32)
            self.send_header("X-Xet-Refresh-Route", f"/api/datasets/{srv.repo}/xet-read-token/main")
        if not (lying and body):
            self.send_header("Content-Length", str(srv.claims.get(key, len(data))))
        self.end_headers()
        if not body:
            return
        try:
            for i in range(0, len(data), 1 << 16):
                self.wfile.write(data[i : i + (1 << 16)])
                srv.sent += len(data[i : i + (1 << 16)])
        except (BrokenPipeError, ConnectionResetError):
            pass

    def fail(self, headers: dict[str, str]):
        self.send_response(404)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextlib.contextmanager
def running_hub(repo: str, tmp_path, monkeypatch) -> Iterator[FakeHub]:
    """A FakeHub of `repo`, serving in a thread, with huggingface_hub's cache under `tmp_path`
    and no endpoint or token from the environment (the body of a test fixture)."""
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    srv = FakeHub(repo)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
