"""What the Ray drivers of actors/distill.py and actors/rl.py share: the Ray settings and start,
evaluation of the newest checkpoint while the learner trains, the learner's user errors, actor
shutdown, and the wrapper around a run (start Ray, loop, stop the actors, plots)."""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.metrics import Metrics


class DistillError(ValueError):
    """A run that cannot go on for a reason the user can fix; shown as one line."""


class ActorDied(DistillError):
    """An actor the run cannot do without died (the learner, the buffer, the evaluator): the
    run stops at its last checkpoint; the CLI adds the `--resume` command to the message."""


def died(e: Exception) -> ActorDied:
    """ActorDied naming the actor of a RayActorError (its Ray name, else its class) and the
    reason Ray gives, on one line."""
    lines = [ln.strip() for ln in str(getattr(e, "error_msg", "") or e).splitlines()]
    field = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ":" in ln)}
    who = field.get("name") or field.get("class_name") or "an actor"
    keys = ("class_name", "actor_id", "pid", "name", "namespace", "ip")
    why = [ln for ln in lines[1:] if ln and ln.partition(":")[0] not in keys]
    reason = why[0] if why else type(e).__name__
    return ActorDied(f"actor {who} died: {reason[:160]}")


def resume_command(prog: str, argv: list[str] | None) -> str:
    """The command line that continues this run: the same arguments, with `--resume`."""
    import shlex

    args = list(sys.argv[1:] if argv is None else argv)
    if "--resume" not in args:
        args.append("--resume")
    return f"{prog} {shlex.join(args)}"


def with_resume(e: ActorDied, out_dir: Any, prog: str, argv: list[str] | None) -> DistillError:
    """The one-line error of a run an actor death stopped, with the command that continues it."""
    return DistillError(
        f"{e}; the run stopped at its last checkpoint in {out_dir}. "
        f"Continue it with: {resume_command(prog, argv)}"
    )


@dataclass
class RayConfig:
    """Where a run's actors live: an existing cluster (`address`) or a local Ray of `num_cpus`
    whose dashboard binds `dashboard_host:dashboard_port`; what the learner actor reserves."""

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None  # local Ray: None = the NVIDIA GPUs this machine has
    learner_cpus: float = 1.0
    learner_gpus: float | None = None  # None: 1 when the cluster has a GPU, else 0
    # on CUDA, the share of the card each MLX actor's memory (arrays + cache) keeps to
    learner_gpu_memory: float = 0.6
    eval_gpu_memory: float = 0.15
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265

    def check_gpu_memory(self, *more: str) -> None:
        """ValueError naming the field when a `*_gpu_memory` share is not in (0, 1]."""
        from minillm.gpu_memory import check_fraction

        for name in ("learner_gpu_memory", "eval_gpu_memory", *more):
            check_fraction(getattr(self, name), name)

    def to_dict(self) -> dict:
        """Every setting, a subclass's too (written to the run's folder as JSON)."""
        return dataclasses.asdict(self)


def resolve_init_from(init_from: str) -> str:
    """The checkpoint folder `--init_from` names (a path or an alias); FileNotFoundError when
    it holds no model."""
    from minillm.checkpoint import resolve_checkpoint

    ck = resolve_checkpoint(init_from)
    if not (ck / "config.json").is_file():
        raise FileNotFoundError(
            f"--init_from {init_from}: no checkpoint there (config.json missing)"
        )
    return str(ck)


def runtime_env() -> dict:
    """Ray runtime env of MiniLLM's actors: this checkout on PYTHONPATH and, on Linux with
    OpenBLAS installed, OpenBLAS preloaded into the workers (MLX's CPU wheel ships a reference
    BLAS; see minillm/blas.py), and `MINILLM_CORES` (actors/cores.py) when set."""
    import os

    from minillm.blas import openblas_path

    paths = [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]
    env = {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    lib = openblas_path()
    if lib and "openblas" not in os.environ.get("LD_PRELOAD", ""):
        env["LD_PRELOAD"] = f"{lib} {os.environ.get('LD_PRELOAD', '')}".strip()
    if os.environ.get("MINILLM_CORES"):
        env["MINILLM_CORES"] = os.environ["MINILLM_CORES"]
    return {"env_vars": env}


def local_gpus() -> int:
    """NVIDIA GPUs of this machine that CUDA_VISIBLE_DEVICES leaves visible (0 without
    `nvidia-smi`). Ray's own detection needs pynvml; MLX's CUDA build does not."""
    import os
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    n = sum(line.startswith("GPU ") for line in out.stdout.splitlines())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        n = min(n, len([d for d in visible.split(",") if d.strip()]))
    return n


def resolve_gpus(cfg: RayConfig, ray) -> None:
    """`learner_gpus=None` becomes 1 when the cluster has a GPU (else 0), and the choice is
    printed: a GPU box trains on its GPU without a flag."""
    if cfg.learner_gpus is None:
        gpus = ray.cluster_resources().get("GPU", 0)
        cfg.learner_gpus = 1.0 if gpus >= 1 else 0.0
        print(
            f"[ray] cluster GPUs: {gpus:g}; the learner reserves {cfg.learner_gpus:g}", flush=True
        )


def init_ray(cfg: RayConfig) -> bool:
    """Connect to `cfg.address`, or start a local Ray whose dashboard binds `dashboard_host`.
    Returns whether this call started Ray (and so should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    env = runtime_env()
    log = quiet_ray(getattr(cfg, "out_dir", None))
    where = cfg.address or f"a local Ray ({cfg.num_cpus or 'all'} CPUs)"
    print(f"[ray] connecting to {where}", flush=True)
    if cfg.address:
        ctx = ray.init(
            address=cfg.address, namespace="minillm", runtime_env=env, configure_logging=False
        )
    else:
        if cfg.dashboard_host in LOOPBACK:
            loopback_only()
        port = cfg.dashboard_port
        if port and not port_free(cfg.dashboard_host, port):
            print(f"[ray] dashboard port {port} of {cfg.dashboard_host} is taken (another Ray?); "
                  "using a free one (--dashboard_port N picks it)", flush=True)  # fmt: skip
            port = 0
        ctx = ray.init(
            num_cpus=cfg.num_cpus,
            num_gpus=cfg.num_gpus if cfg.num_gpus is not None else local_gpus(),
            namespace="minillm",
            include_dashboard=True,
            dashboard_host=cfg.dashboard_host,
            dashboard_port=port,
            runtime_env=env,
            configure_logging=False,
        )
    quiet_ray(getattr(cfg, "out_dir", None))  # again: ray.init cleared the "ray" handlers
    url = getattr(ctx, "dashboard_url", None)
    WHERE.update(dashboard=f"http://{url}" if url else None, ray_log=log)
    line = f"[ray] dashboard: http://{url}" if url else "[ray] dashboard: off"
    print(line + (f" (Ray's own log: {log})" if log else ""), flush=True)
    return True


def quiet_ray(log_dir: Any) -> Path | None:
    """Keep Ray's own log records (its start-up banner, the token-auth notice, deprecation
    warnings) out of the terminal: they go to `log_dir/logs/ray.log`, errors to stderr as well.
    The actors' prints still reach the terminal, without colour codes when stdout is not one.
    Returns the log file (None without `log_dir`: Ray's warnings then go to stderr)."""
    import logging
    import os

    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.ERROR if log_dir else logging.WARNING)
    handlers: list[logging.Handler] = [errors]
    path = None
    if log_dir:
        path = Path(log_dir) / "logs" / "ray.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    # ray.init(configure_logging=False) clears the "ray" logger's handlers, so the records it
    # logs while starting are caught one level down; "ray" gets the same handlers for the rest
    for name in ("ray", "ray._private"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        for h in [h for h in logger.handlers if getattr(h, "minillm", False)]:
            logger.removeHandler(h)
            h.close()
        for h in handlers:
            h.minillm = True  # type: ignore[attr-defined]
            h.setFormatter(fmt)
            logger.addHandler(h)
    return path


LOOPBACK = ("127.0.0.1", "localhost", "::1")
WHERE: dict[str, Any] = {"dashboard": None, "ray_log": None}  # of the Ray init_ray started


def summary(tag: str, out_dir: Any, res: dict, held_out: list[str]) -> str:
    """The block a run ends with: where its checkpoint, metrics, plots, logs and dashboard
    are, and its final held-out numbers (`held_out` lines)."""
    from minillm.checkpoint import list_checkpoints

    out = Path(out_dir)
    ckpts = list_checkpoints(out) if out.is_dir() else []
    step = res.get("learner", {}).get("step")
    rows = [("checkpoint", f"{ckpts[-1][1]}  (step {step}, {res.get('seconds', 0):.0f} s)"
             if ckpts else "none saved")]  # fmt: skip
    rows.append(("metrics", str(out / "metrics.jsonl")))
    plots = res.get("plots") or []
    run_png = [p for p in plots if Path(p).name == "run.png"]
    rows.append(("plots", str(run_png[0]) if run_png else (str(plots[0]) if plots else "none")))
    if WHERE["ray_log"]:
        rows.append(("Ray log", str(WHERE["ray_log"])))
    if WHERE["dashboard"]:
        rows.append(("dashboard", f"{WHERE['dashboard']} (a local Ray's stops with the run)"))
    rows += [("held-out", h) for h in held_out] or [("held-out", "not evaluated")]
    return "\n".join([f"[{tag}] summary", *(f"  {k:<11} {v}" for k, v in rows)])


def port_free(host: str, port: int) -> bool:
    """Whether a TCP server could listen on host:port now (Ray would wait 60 s, then fail)."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError:
        return False
    return True


def loopback_only() -> None:
    """Make the local Ray this process starts use 127.0.0.1 as its node address, so that GCS,
    raylet, workers, agents and metrics exporters all listen on loopback only. On Linux Ray
    replaces a loopback `_node_ip_address` with the machine's routable address unless Ray
    clusters are off (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the macOS/Windows default): set
    it for the processes Ray starts, and in this already imported Ray."""
    import os

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


class Driver:
    """One run inside an initialised Ray. A subclass starts its actors (`evaluator` among
    them, or None) in `__init__`, runs to the end in `loop()`, and says when a checkpoint is
    due for evaluation (`eval_every`) and how a result reads (`eval_line`)."""

    tag = "driver"  # prefix of its log lines

    def __init__(self, cfg: Any):
        import ray

        from minillm.train.metrics import MetricsLog

        self.ray, self.cfg = ray, cfg
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.log = MetricsLog(out)
        self.metrics = Metrics()
        self.actors: list = []
        self.evaluator = None
        self.evals: list[dict] = []
        self.eval_ref = None
        self.evaluated: set[int] = set()

    def loop(self) -> dict:
        raise NotImplementedError

    # ---- evaluation
    def eval_every(self) -> int:
        """Evaluate checkpoints whose step is a multiple of this (0: only the final one)."""
        return 0

    def eval_line(self, res: dict) -> str:
        return f"step={res['step']}"

    def maybe_eval(self, final: bool = False) -> None:
        """Collect a finished evaluation; start one on the newest checkpoint when it is due
        (every `eval_every()` steps). `final` waits for both."""
        from minillm.checkpoint import list_checkpoints

        if self.evaluator is None:
            return
        if self.eval_ref is not None:
            ready, _ = self.ray.wait([self.eval_ref], timeout=None if final else 0)
            if not ready:
                return
            ref, self.eval_ref = self.eval_ref, None
            try:
                self.record_eval(self.ray.get(ref))
            except self.ray.exceptions.RayTaskError as e:  # e.g. pruned before it was read
                print(f"[{self.tag}] evaluation failed: {e.cause!r}", flush=True)
        ckpts = list_checkpoints(self.cfg.out_dir)
        if not ckpts:
            return
        step, path = ckpts[-1]
        every = self.eval_every()
        if step not in self.evaluated and (final or (every and step % every == 0)):
            self.evaluated.add(step)
            self.eval_ref = self.evaluator.evaluate.remote(str(path))
            if final:
                self.maybe_eval(final=True)

    def record_eval(self, res: dict) -> None:
        self.evals.append(res)
        print(f"[eval] {self.eval_line(res)}", flush=True)
        self.log.write({"event": "eval", **res, "time": time.time()})

    # ---- learner, shutdown
    def learner_result(self, ref) -> dict:
        """The learner's `run()` result; a user error in it (a bad setting or a missing file)
        becomes a DistillError of one line."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, (ValueError, FileNotFoundError)):
                raise DistillError(f"learner: {e.cause}") from None
            raise

    def release(self, *actors) -> None:
        """Stop actors whose work is done before the final evaluation, so the GPU memory they
        hold (a learner's MLX cache, its graphs) is free for the evaluator."""
        for a in actors:
            if a is not None:
                self.ray.kill(a)
                self.actors = [b for b in self.actors if b is not a]

    def shutdown(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception as e:  # noqa: BLE001 - already gone is fine, anything else is shown
                print(f"[{self.tag}] could not stop an actor: {e!r}", file=sys.stderr)


def drive(
    cls: type[Driver],
    cfg: RayConfig,
    *args,
    plot: Callable[[], list] | None = None,
    extra: dict | None = None,
) -> dict:
    """`cls(cfg, *args).loop()` in a Ray this starts (and stops) unless one is running; the
    actors are stopped however it ends. `extra` is added to the result, then `plot()`'s files
    as "plots" (a run without the data to plot says so on stderr)."""
    import ray

    started = init_ray(cfg)
    old_term = sigterm_interrupts()  # after ray.init, which installs a SIGTERM handler of its own
    r = None
    try:
        resolve_gpus(cfg, ray)
        r = cls(cfg, *args)
        res = r.loop()
    except ray.exceptions.RayActorError as e:
        raise died(e) from None
    except ray.exceptions.RayTaskError as e:  # a call that failed because an actor it used died
        if isinstance(e.cause, ray.exceptions.RayActorError):
            raise died(e.cause) from None
        raise
    finally:
        if r is not None:
            r.shutdown()
        if started:
            ray.shutdown()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    res.update(extra or {})
    if plot is not None:
        add_plots(res, plot, cls.tag)
    return res


def sigterm_interrupts():
    """Make SIGTERM unwind like Ctrl-C (so the actors and the Ray this run started are stopped
    in `drive`'s `finally`); the previous handler, or None off the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


def add_plots(res: dict, plot: Callable[[], list], tag: str) -> None:
    """`res["plots"]`: the files `plot()` wrote; a run without the data to plot says so on
    stderr."""
    try:
        res["plots"] = [str(p) for p in plot()]
    except (FileNotFoundError, ValueError) as e:
        print(f"[{tag}] no plots: {e}", file=sys.stderr)


def wait_ready(ray, refs: list, what: str, tag: str, every_s: float = 5.0) -> None:
    """`ray.get(refs)`, saying every `every_s` seconds how many of `what` are up (a piped
    run is never silent for long while Ray starts actors)."""
    import time

    t, left = time.time(), list(refs)
    while left:
        done, left = ray.wait(left, num_returns=len(left), timeout=every_s)
        ray.get(done)
        if left:
            print(f"[{tag}] starting {what}: {len(refs) - len(left)}/{len(refs)} up after "
                  f"{time.time() - t:.0f}s", flush=True)  # fmt: skip
