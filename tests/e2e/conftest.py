"""A real ``mosu up`` on 127.0.0.1 (free port, temporary data dir), stopped at teardown
together with every replica its supervisors still run (a stopped server leaves them)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mosu.client import Client, ServerUnreachable
from tests.jobs import JOB_PYTHON, shared_copy, shared_dir, stop_leftover_replicas

OPERATOR_TOKEN = "mosu_op_e2e-operator-token"
WORKER = Path(__file__).with_name("worker.py")

REQUEUED_ONCE_THEN_SUCCEEDED = [
    "pending",
    "starting",
    "running",
    "preempted",
    "pending",
    "starting",
    "running",
    "succeeded",
]
"""The state history of a job stopped once, requeued, and run again to success."""


def worker_argv(work: Path, release: str) -> list[str]:
    """The stand-in training job (``worker.py``, copied into ``work`` by the ``work``
    fixture), writing its records into ``work`` until ``work/release`` exists."""
    return [JOB_PYTHON, str(work / WORKER.name), str(work), release]


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory every tenant's replicas may write their records in, with the worker."""
    with shared_dir() as path:
        shared_copy(WORKER, path)
        yield path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], object], *, timeout: float, what: str, every: float = 0.1):
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def state_history(client: Client, job_id: int) -> list[str]:
    """The states ``job_id`` went through, in order, from its state events."""
    return [e.to_state for e in client.job_events(job_id) if e.kind == "state"]


@dataclass
class Server:
    data_dir: Path
    port: int
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)
    command: str = "up"
    """``up`` (SQLite in the data directory) or ``server`` (the store named by
    ``MOSU_DATABASE_URL`` in ``env``)."""
    umask: int | None = None

    def __post_init__(self) -> None:
        # Beside the data directory's nearest existing parent: the server creates the rest.
        where = self.data_dir.parent
        while not where.exists():
            where = where.parent
        self.log = where / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str = OPERATOR_TOKEN) -> Client:
        return Client(self.url, token, timeout=10)

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mosu.cli.main", self.command]
        cmd += ["--data-dir", str(self.data_dir)]
        cmd += ["--port", str(self.port), *self.args]
        with self.log.open("ab") as out:
            umask = self.umask
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=None if umask is None else lambda: os.umask(umask),
            )
        wait_for(self._healthy, timeout=30, what=f"mosu up on port {self.port}")

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"mosu up exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            with self.client() as c:
                return c.health()["status"] == "ok"
        except ServerUnreachable:
            return False

    def kill9(self) -> None:
        """Crash: SIGKILL the server process only (its jobs live on, orphaned)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(
        *args: str,
        data_dir: Path | None = None,
        port: int | None = None,
        command: str = "up",
        env: dict[str, str] | None = None,
        umask: int | None = None,
    ) -> Server:
        full = dict(os.environ)
        full["MOSU_OPERATOR_TOKEN"] = OPERATOR_TOKEN
        full["MOSU_CONFIG"] = str(tmp_path / "client.json")
        full["MOSU_POLL_S"] = "0.05"
        # These tests restart servers many times; the model gateway is not what they test.
        full["MOSU_GATEWAY_PORT"] = "0"
        full.update(env or {})
        server = Server(
            data_dir=data_dir or tmp_path / "data",
            port=port or free_port(),
            args=list(args),
            env=full,
            command=command,
            umask=umask,
        )
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
    stop_leftover_replicas(tmp_path)
