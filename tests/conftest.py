"""Shared fixtures: tiny models built in-process; nothing is downloaded."""

from __future__ import annotations

import contextlib
import os
import socket
import threading

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Full fp32 matmuls on GPUs whose MLX backend defaults to TF32 (CUDA, M5): parity tests need it.
os.environ.setdefault("MLX_ENABLE_TF32", "0")

# MLX's matmuls on OpenBLAS in this process too, as every `minillm` command and Ray actor has
# them (minillm/blas.py); before mlx.core is imported by any test module.
from minillm.blas import load_for_mlx  # noqa: E402

load_for_mlx()

TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
)


def make_tiny(seed: int = 0, dtype: str = "float32", **over):
    """A 2-layer d64 model with the built-in tokenizer's vocab, weights from `seed`."""
    import mlx.core as mx

    from minillm.checkpoint import cast_model, parse_dtype
    from minillm.model import Model, ModelArgs, init_weights
    from minillm.tokenizer import load_tokenizer

    tok = load_tokenizer()
    model = Model(ModelArgs(**{**TINY, "vocab_size": tok.vocab_size, **over}))
    init_weights(model, seed)
    cast_model(model, parse_dtype(dtype))
    mx.eval(model.parameters())
    return model, tok


# The same shape as CLI flags, for verbs that build a model from a preset.
TINY_FLAGS = ["--preset", "custom"] + [x for k, v in TINY.items() for x in (f"--{k}", str(v))]


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """Path of a tiny fp32 checkpoint folder (session-wide, do not modify)."""
    from minillm.checkpoint import save_model

    model, tok = make_tiny(seed=0)
    return str(save_model(tmp_path_factory.mktemp("ckpt") / "tiny", model, tok))


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray (2 CPUs, dashboard and metrics on free ports) for the whole module: request
    it with `pytestmark = pytest.mark.usefixtures("cluster")`."""
    ray = pytest.importorskip("ray")
    from actors.driver import runtime_env

    ray.init(
        num_cpus=2,
        namespace="minillm",
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=0,
        _node_ip_address="127.0.0.1",
        _system_config={"metrics_report_interval_ms": 1000},
        runtime_env=runtime_env(),
    )
    yield
    ray.shutdown()


def scrape() -> str:
    """The Prometheus text of the local Ray node's metrics endpoint."""
    import httpx
    import ray

    node = ray.nodes()[0]
    r = httpx.get(f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics")
    return r.text


@contextlib.contextmanager
def served_app(app):
    """`minillm serve`'s HTTP server for `app` on 127.0.0.1 at a free port, in a thread; yields
    its base URL and shuts server and engine down afterwards."""
    from minillm.serve import serve_app

    server = serve_app(app, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        app.engine.close()


@contextlib.contextmanager
def served_checkpoint(path, name: str = "tiny:latest", **app_kwargs):
    """`served_app` for the checkpoint folder `path` (App options as keyword arguments)."""
    from minillm.checkpoint import load
    from minillm.serve import App

    model, tok = load(path)
    with served_app(App(model, tok, name, log=False, **app_kwargs)) as url:
        yield url
