"""A distillation run (`python launch/distill.py`, its own local Ray) whose learner is killed ends
with one line naming it and the exact `--resume` command, which then finishes the run with
nothing lost or duplicated; a driver stopped by SIGINT, SIGTERM or SIGKILL leaves no process
of its Ray behind. Any driver's dead actor becomes that one line (`drive`)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.shards import read_manifest, totals
from tests.test_distill_resume import ROOT, ckpt_steps, command

pytest.importorskip("ray")
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def session_procs(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of session `sid`: pid -> name."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        fields = rest.split()
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            out[int(d.name)] = name
    return out


def listening(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket the processes `pids` listen on."""
    inodes = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes[link[8:-1]] = pid
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            raw, port = f[1].split(":")
            b = bytes.fromhex(raw)  # each 32-bit word is stored little-endian
            b = b"".join(b[i : i + 4][::-1] for i in range(0, len(b), 4))
            ip = ipaddress.ip_address(b)
            ip = getattr(ip, "ipv4_mapped", None) or ip
            out.append((inodes[f[9]], str(ip), int(port, 16)))
    return out


def start(out: Path, argv: list[str] | None = None) -> tuple[subprocess.Popen, list[str]]:
    argv = argv or command(out)
    p = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True, text=True)  # fmt: skip
    deadline = time.time() + 240
    while not ckpt_steps(out) and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    assert ckpt_steps(out), "no checkpoint appeared: " + (p.communicate()[1] or "")[-2000:]
    return p, argv


def wait_gone(sid: int, seconds: float = 90) -> dict[int, str]:
    end = time.time() + seconds
    while (left := session_procs(sid)) and time.time() < end:
        time.sleep(0.5)
    return left


def test_learner_death_ends_with_the_resume_command_which_finishes_the_run(tmp_path):
    out = tmp_path / "run"
    p, argv = start(out)
    learner = [pid for pid, name in session_procs(p.pid).items() if "Learner" in name]
    assert len(learner) == 1, session_procs(p.pid)
    os.kill(learner[0], signal.SIGKILL)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 2, stdout[-2000:] + stderr[-2000:]
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("launch/distill.py: error: actor learner died: "), line
    assert f"last checkpoint in {out}" in line and "Traceback" not in stderr
    cmd = shlex.split(line.split("Continue it with: ", 1)[1])
    assert cmd[:2] == ["python", "launch/distill.py"] and cmd[-1] == "--resume"
    assert cmd[2:-1] == argv[2:]  # the same arguments as the run
    assert not wait_gone(p.pid)

    r = subprocess.run([sys.executable, str(ROOT / cmd[1]), *cmd[2:]], env=ENV, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert ckpt_steps(out)[-1] == 30
    m = read_manifest(out / "shards")
    t = totals(m["entries"])
    assert m["closed"] and t["rows"] == 320 == sum(t["accepted"].values())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=str)
def test_stopped_driver_leaves_no_ray_process(tmp_path, sig):
    p, _ = start(tmp_path / "run")
    before = session_procs(p.pid)
    assert any("raylet" in n for n in before.values()) and len(before) > 5, before
    os.kill(p.pid, sig)  # the driver alone, as a user's Ctrl-C, `kill` or the OOM killer would
    _, stderr = p.communicate(timeout=120)
    if sig != signal.SIGKILL:
        assert p.returncode == 130 and stderr.strip().endswith("interrupted"), stderr[-2000:]
    left = wait_gone(p.pid)
    assert not left, f"{len(left)} of {len(before)} processes left after {sig!r}: {left}"


def test_taken_dashboard_port_and_every_port_on_loopback(tmp_path):
    """Another program on the dashboard port: the run says so and takes a free one; every port
    of the Ray it starts (GCS, raylet, workers, agents, metrics) listens on 127.0.0.1 only."""
    argv = command(tmp_path / "run")
    port = int(argv[argv.index("--dashboard_port") + 1])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        p, _ = start(tmp_path / "run", argv)
        try:
            socks = listening(set(session_procs(p.pid)))
        finally:
            os.killpg(p.pid, signal.SIGKILL)
        stdout, _ = p.communicate(timeout=60)
    assert f"[ray] dashboard port {port} of 127.0.0.1 is taken" in stdout, stdout[-2000:]
    assert len(socks) >= 6, socks
    exposed = [s for s in socks if not ipaddress.ip_address(s[1]).is_loopback]
    assert not exposed, exposed


@pytest.mark.usefixtures("cluster")
@pytest.mark.parametrize("name", ["buffer", "evaluator"])
def test_any_dead_actor_is_one_line_naming_it(name, tmp_path):
    """`drive`: whichever actor a driver cannot do without dies, the run ends in ActorDied
    naming it (the CLIs add the `--resume` command), and its other actors are stopped."""
    from dataclasses import dataclass

    import ray

    from actors.driver import ActorDied, Driver, RayConfig, drive

    @dataclass
    class ToyConfig(RayConfig):
        out_dir: str = str(tmp_path)

    @ray.remote(num_cpus=0)
    class Part:
        def ping(self) -> int:
            return os.getpid()

    class Toy(Driver):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.part = Part.options(name=name).remote()
            self.other = Part.options(name="other").remote()
            self.actors = [self.part, self.other]

        def loop(self) -> dict:
            os.kill(ray.get(self.part.ping.remote()), signal.SIGKILL)
            while True:
                ray.get(self.part.ping.remote())
                time.sleep(0.1)

    with pytest.raises(ActorDied, match=rf"^actor {name} died: "):
        drive(Toy, ToyConfig())
    with pytest.raises(ValueError):
        ray.get_actor("other")  # stopped by the driver's shutdown
