"""A real Ray cluster on 127.0.0.1: a GPU-less head and two workers with 4 fake GPUs each.

Every node runs under ``ray start --block`` in its own session, so teardown stops
exactly the processes this fixture started (by pid, never by name): SIGTERM to each
``ray start`` (which stops its node), then SIGKILL to anything of its process tree still
alive. ``kill_node`` kills one worker's whole tree at once, as a machine failure would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import OPERATOR_TOKEN, Server, free_port
from tests.jobs import JOB_PYTHON, shared_copy, shared_dir, stop_leftover_replicas

GPU_TYPE = "H800"
REPLICA_SCRIPT = Path(__file__).with_name("replica_script.py")
WORKERS = ("w0", "w1")
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
JOIN_ATTEMPTS = 3


def default_worker_args(name: str) -> list[str]:
    """4 fake GPUs of ``GPU_TYPE``, the node's own name and rack as labels."""
    return [
        "--num-gpus=4",
        f"--resources={json.dumps({f'mosu-gpu-type:{GPU_TYPE}': 4})}",
        f"--labels=mosu.io/node={name},mosu.io/rack=rack-{name}",
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    tree = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def _kill(pids: list[int]) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)


@dataclass
class RayCluster:
    address: str
    temp_dir: str
    bin_dir: Path
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)

    def start_node(self, name: str, args: list[str]) -> None:
        log = Path(self.temp_dir) / f"{name}.out"
        self.logs.append(log)
        with open(log, "wb") as out:
            self.nodes[name] = subprocess.Popen(
                [
                    str(self.bin_dir / "ray"),
                    "start",
                    "--block",
                    "--node-ip-address=127.0.0.1",
                    "--disable-usage-stats",
                    "--object-store-memory=100000000",
                    f"--dashboard-agent-listen-port={_free_port()}",
                    f"--dashboard-agent-grpc-port={_free_port()}",
                    f"--metrics-export-port={_free_port()}",
                    f"--runtime-env-agent-port={_free_port()}",
                    *args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"),
            )

    def start_worker(self, name: str, args: list[str] | None = None) -> None:
        """Start worker ``name``: by default 4 fake GPUs of ``GPU_TYPE`` with its own node
        and rack labels; ``args`` replaces those (the node label is always set)."""
        extra = args if args is not None else default_worker_args(name)
        self.start_node(name, [f"--address={self.address}", "--num-cpus=1", *extra])

    def join_worker(self, ray: object, name: str, args: list[str] | None = None) -> None:
        """Start worker ``name`` and wait until the cluster counts it alive.

        Ray's ``ray start`` gives a raylet a fixed 30 s to register with the GCS; on a
        loaded two-core machine that can run out while the raylet is still starting, and
        ``ray start`` then exits. Such a worker is started again (with all of its
        processes killed first), up to ``JOIN_ATTEMPTS`` times.
        """
        expected = len(_alive_nodes(ray)) + 1
        for attempt in range(1, JOIN_ATTEMPTS + 1):
            self.start_worker(name, args)
            deadline = time.monotonic() + START_TIMEOUT_S
            while len(_alive_nodes(ray)) < expected:
                if time.monotonic() > deadline or self.nodes[name].poll() is not None:
                    break
                time.sleep(0.5)
            else:
                return
            self.kill_node(name)
            if attempt == JOIN_ATTEMPTS:
                raise RuntimeError(f"Ray node {name} did not register\n{self.describe()}")

    def kill_node(self, name: str) -> None:
        """Kill one node's every process at once, like pulling its power cord."""
        _kill(_tree(self.nodes[name].pid))
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.nodes[name].wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> None:
        # Workers first, then the head; remember each tree before it starts unravelling.
        for name in [*(n for n in self.nodes if n != "head"), "head"]:
            proc = self.nodes.get(name)
            if proc is None:
                continue
            pids = _tree(proc.pid)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=STOP_TIMEOUT_S)
            _kill(pids + _tree(proc.pid))
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT_S)

    def describe(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in self.logs
        )


def _alive_nodes(ray: object) -> list[dict[str, object]]:
    return [n for n in ray.nodes() if n["Alive"]]  # type: ignore[attr-defined]


def run_ray_cluster(
    ray: object,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    namespace: str,
    workers: dict[str, list[str] | None],
) -> Iterator[RayCluster]:
    """A GPU-less head and ``workers`` (name: ``ray start`` arguments, ``None`` for the
    default 4-GPU worker) on 127.0.0.1, stopped with every process it started."""
    # A short path: Ray's Unix sockets live under it and have a 107-byte limit.
    temp_dir = tempfile.mkdtemp(prefix="mosu-ray-", dir="/tmp")
    port = _free_port()
    cluster = RayCluster(
        address=f"127.0.0.1:{port}", temp_dir=temp_dir, bin_dir=Path(sys.executable).parent
    )
    try:
        cluster.start_node(
            "head",
            [
                "--head",
                f"--port={port}",
                "--num-gpus=0",
                "--num-cpus=1",
                "--include-dashboard=false",
                f"--dashboard-port={_free_port()}",
                f"--ray-client-server-port={_free_port()}",
                f"--temp-dir={temp_dir}",
            ],
        )
        _wait_for_port(port, cluster)
        ray.init(  # type: ignore[attr-defined]
            address=cluster.address,
            namespace=namespace,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
        )
        # One worker at a time: two raylets registering from one IP at once can time out.
        for name, args in workers.items():
            cluster.join_worker(ray, name, args)
        yield cluster
    finally:
        if ray.is_initialized():  # type: ignore[attr-defined]
            ray.shutdown()  # type: ignore[attr-defined]
        cluster.stop()
        # Replicas' supervisors are nobody's children in Ray's trees: those whose runner
        # died with the cluster are still stopping their replica; end them now.
        stop_leftover_replicas(tmp_path_factory.getbasetemp())
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'mosu[ray]'")
    yield from run_ray_cluster(
        ray, tmp_path_factory, namespace="mosu", workers=dict.fromkeys(WORKERS)
    )


@pytest.fixture(scope="module")
def server(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``mosu up --executor ray`` on the module's cluster."""
    home = tmp_path_factory.mktemp("mosu")
    env = dict(os.environ)
    env.update(
        MOSU_OPERATOR_TOKEN=OPERATOR_TOKEN,
        MOSU_CONFIG=str(home / "client.json"),
        MOSU_POLL_S="0.05",
        MOSU_TICK_S="0.5",
        MOSU_RAY_LOG_DIR=str(home / "node-logs"),
    )
    args = ["--executor", "ray", "--ray-address", ray_cluster.address]
    args += ["--grace", "3", "--min-runtime", "0"]
    srv = Server(data_dir=home / "data", port=free_port(), args=args, env=env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _wait_for_port(port: int, cluster: RayCluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        head = cluster.nodes["head"]
        if head.poll() is not None:
            raise RuntimeError(f"the Ray head exited\n{cluster.describe()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the Ray head did not listen on {port} in time\n{cluster.describe()}")


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Replicas run as the tenants' own Unix users: the directory a Ray test hands its
    replicas (to write what they saw) must be one they may write in."""
    with shared_dir(prefix="mosu-ray-test-") as path:
        yield path


@pytest.fixture
def script(tmp_path: Path) -> Path:
    """The replica script, where every tenant's user may read it."""
    return shared_copy(REPLICA_SCRIPT, tmp_path)


def replica_command(script: Path, modes: str, out: Path) -> list[str]:
    return [JOB_PYTHON, str(script), modes, str(out)]
