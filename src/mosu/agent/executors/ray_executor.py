"""Run a job's gang on a Ray cluster, every replica pinned to the node the engine chose.

Nomenclature: a *gang* is every replica of one job, started as a unit; a *replica* is
one process tree running the job's command on one node; a *runner* is the small Ray
actor that owns one replica's process on that node. The engine decides placement and
mosu does its own GPU accounting: runners ask Ray for no CPUs and no GPUs, are pinned
with hard node affinity, and show the replica exactly the engine's GPU indices through
``CUDA_VISIBLE_DEVICES``.

Ray is an optional extra (``pip install 'mosu[ray]'``). It is imported inside the
functions that talk to the cluster, so importing this module never needs it. mosu must
be installed on every Ray node (runners are defined here).

A Ray node becomes a mosu node as follows (labels win over custom resources):

- name: label ``mosu.io/node``, else ``ray-<first 12 hex of the Ray node id>``;
- GPU count: Ray's ``GPU`` resource;
- GPU type: label ``mosu.io/gpu-type``, else a custom resource ``mosu-gpu-type:<TYPE>``,
  else Ray's own ``accelerator_type:<TYPE>`` resource, else the executor's default;
- topology: labels ``mosu.io/zone`` and ``mosu.io/rack``, else custom resources
  ``mosu-zone:<ZONE>`` and ``mosu-rack:<RACK>``;
- GPU memory: label ``mosu.io/gpu-mem-mib``;
- a head node without GPUs is the cluster's control plane and is not offered to jobs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from mosu.agent.executors.base import Executor
from mosu.core.api import JobExit, JobLaunch
from mosu.core.errors import Conflict, InvalidInput, PlatformError
from mosu.core.models import GPU_MILLI, Node, NodeState, Placement, ReplicaPlacement

__all__ = [
    "LABEL_GPU_MEM_MIB",
    "LABEL_GPU_TYPE",
    "LABEL_NODE",
    "LABEL_RACK",
    "LABEL_ZONE",
    "RESOURCE_GPU_TYPE",
    "RESOURCE_RACK",
    "RESOURCE_ZONE",
    "GangSpec",
    "GangStartError",
    "RayExecutor",
    "RayGang",
    "RayGangs",
    "RayJobExit",
    "RayNode",
    "ReplicaState",
    "ReplicaStatus",
    "node_from_ray",
    "replica_env",
]

LABEL_NODE = "mosu.io/node"
LABEL_GPU_TYPE = "mosu.io/gpu-type"
LABEL_ZONE = "mosu.io/zone"
LABEL_RACK = "mosu.io/rack"
LABEL_GPU_MEM_MIB = "mosu.io/gpu-mem-mib"
RESOURCE_GPU_TYPE = "mosu-gpu-type:"
RESOURCE_ZONE = "mosu-zone:"
RESOURCE_RACK = "mosu-rack:"
_RAY_ACCELERATOR = "accelerator_type:"
_RAY_HEAD = "node:__internal_head__"
_RAY_LABEL_PREFIX = "ray.io/"

# Env the replica contract owns; a job's own env cannot override these.
_CONTRACT_KEYS = (
    "CUDA_VISIBLE_DEVICES",
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "NNODES",
    "MOSU_JOB_ID",
    "MOSU_REPLICA",
    "MOSU_NUM_REPLICAS",
    "MOSU_NODE",
    "MOSU_GPUS_PER_REPLICA",
)

_LOG_CHUNK = 1 << 20
_KILL_MARGIN_S = 5.0


class GangStartError(Conflict):
    """A gang could not start on its placement; nothing of it is left running.

    ``requeue`` (read by the scheduling loop, which cannot import executors) is True when
    the placement was at fault (a node went away or refused the replica), so the job
    should wait for another placement; False when the job itself cannot start (its
    command or workdir does not exist), so it should fail.
    """

    code = "gang-start"

    def __init__(self, message: str, *, requeue: bool = True) -> None:
        super().__init__(message)
        self.requeue = requeue


class ReplicaState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"
    """The replica's node or runner is gone; its outcome is unknown."""
    STOPPED = "stopped"
    """Ended by ``stop`` (cancel or preemption)."""

    @property
    def terminal(self) -> bool:
        return self is not ReplicaState.RUNNING


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    replica: int
    node: str
    state: ReplicaState
    exit_code: int | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class RayNode:
    """A Ray node seen as a mosu node, with what the executor needs to reach it."""

    node: Node
    node_id: str
    address: str
    alive: bool


@dataclass(frozen=True, slots=True)
class GangSpec:
    """What to run and where: the engine's placement plus the job's command.

    ``command`` is an argv, or one string run with ``/bin/sh -c``.
    """

    job_id: str
    command: Sequence[str] | str
    placement: Placement
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    attempt: int = 1
    log_paths: tuple[Path, ...] = ()
    """Controller-side log file of each replica (appended to); default under ``log_dir``."""


@dataclass(slots=True)
class _Replica:
    index: int
    node: str
    node_id: str
    actor: Any
    actor_name: str
    log_path: Path
    pid: int = 0
    log_offset: int = 0
    final: ReplicaStatus | None = None


@dataclass(slots=True)
class RayGang:
    """Handle of a started gang; pass it back to ``poll`` and ``stop``."""

    job_id: str
    master_addr: str
    master_port: int
    replicas: list[_Replica]
    stopping: bool = False
    """``signal_stop`` was called: replicas that end from now on are ``stopped``."""

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(r.node for r in self.replicas)

    @property
    def pids(self) -> dict[int, int]:
        """Replica → process id on its own node."""
        return {r.index: r.pid for r in self.replicas}

    @property
    def ended(self) -> bool:
        return all(r.final is not None for r in self.replicas)


# ---------------------------------------------------------------------------------------
# Conventions (pure)


def _named(resources: Mapping[str, float], prefix: str) -> str | None:
    names = sorted(k[len(prefix) :] for k in resources if k.startswith(prefix))
    return names[0] if names else None


def node_from_ray(info: Mapping[str, Any], *, default_gpu_type: str) -> RayNode | None:
    """Turn one entry of ``ray.nodes()`` into a mosu node, or None for a GPU-less head."""
    node_id = str(info["NodeID"])
    resources: Mapping[str, float] = info.get("Resources") or {}
    labels: Mapping[str, str] = info.get("Labels") or {}
    gpus = int(resources.get("GPU", 0))
    if gpus == 0 and _RAY_HEAD in resources:
        return None
    gpu_type = (
        labels.get(LABEL_GPU_TYPE)
        or _named(resources, RESOURCE_GPU_TYPE)
        or _named(resources, _RAY_ACCELERATOR)
        or default_gpu_type
    )
    zone = labels.get(LABEL_ZONE) or _named(resources, RESOURCE_ZONE) or "zone-0"
    rack = labels.get(LABEL_RACK) or _named(resources, RESOURCE_RACK) or "rack-0"
    name = labels.get(LABEL_NODE) or f"ray-{node_id[:12]}"
    gpu_mem = labels.get(LABEL_GPU_MEM_MIB, "0")
    try:
        gpu_mem_mib = int(gpu_mem)
    except ValueError:
        raise InvalidInput(
            f"Ray node {node_id[:12]}: label value {gpu_mem!r} is not an integer",
            field=LABEL_GPU_MEM_MIB,
        ) from None
    alive = bool(info.get("Alive", False))
    node = Node(
        name=name,
        gpu_type=gpu_type,
        gpus=gpus,
        cpu_milli=int(resources.get("CPU", 0) * 1000),
        mem_mib=int(resources.get("memory", 0)) // (1 << 20),
        gpu_mem_mib=gpu_mem_mib,
        zone=zone,
        rack=rack,
        state=NodeState.READY if alive else NodeState.DOWN,
        labels=tuple(sorted((k, v) for k, v in labels.items() if not k.startswith("ray.io/"))),
    )
    return RayNode(node=node, node_id=node_id, address=str(info["NodeManagerAddress"]), alive=alive)


def replica_env(
    *,
    job_id: str,
    replica: int,
    num_replicas: int,
    gpu_indices: Sequence[int],
    master_addr: str,
    master_port: int,
    node: str,
    job_env: Mapping[str, str] = {},
) -> dict[str, str]:
    """The environment contract of one replica, over the job's own env.

    One replica is one torch "node": ``RANK``/``NODE_RANK`` are the replica index and
    ``WORLD_SIZE``/``NNODES`` the gang size, with ``LOCAL_RANK=0``. A replica that runs a
    single process initialises ``torch.distributed`` from these directly; one that runs
    ``torchrun --nnodes=$NNODES --node_rank=$NODE_RANK --nproc_per_node=$MOSU_GPUS_PER_REPLICA
    --master_addr=$MASTER_ADDR --master_port=$MASTER_PORT`` gets per-GPU ranks from torchrun.
    """
    env = {k: v for k, v in job_env.items() if k not in _CONTRACT_KEYS}
    env.update(
        CUDA_VISIBLE_DEVICES=",".join(str(i) for i in gpu_indices),
        MASTER_ADDR=master_addr,
        MASTER_PORT=str(master_port),
        RANK=str(replica),
        WORLD_SIZE=str(num_replicas),
        LOCAL_RANK="0",
        LOCAL_WORLD_SIZE="1",
        NODE_RANK=str(replica),
        NNODES=str(num_replicas),
        MOSU_JOB_ID=job_id,
        MOSU_REPLICA=str(replica),
        MOSU_NUM_REPLICAS=str(num_replicas),
        MOSU_NODE=node,
        MOSU_GPUS_PER_REPLICA=str(len(gpu_indices)),
    )
    return env


def _argv(command: Sequence[str] | str) -> list[str]:
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    argv = [str(a) for a in command]
    if not argv:
        raise InvalidInput("the job has an empty command", field="command")
    return argv


# ---------------------------------------------------------------------------------------
# The runner: one Ray actor per replica, on the replica's node


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook that makes the child get SIGKILL when the runner dies, so no
    replica outlives it (Linux). libc is loaded here, before the fork: the child of a
    multi-threaded process should do as little as possible."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return hook


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _ReplicaRunner:
    """Owns one replica's process group on its node.

    Every method returns at once (the actor runs one call at a time): ``terminate``
    sends SIGTERM and arms a timer that sends SIGKILL when the grace period ends, so the
    escalation happens even if the controller goes away.
    """

    def __init__(self, log_path: str) -> None:
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._exit_code: int | None = None
        self._kill_timer: threading.Timer | None = None

    def ready(self) -> dict[str, Any]:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def free_port(self) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            return int(s.getsockname()[1])

    def start(
        self,
        argv: list[str],
        env: dict[str, str],
        workdir: str | None,
        gpu_indices: list[int],
    ) -> int:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
        gpus = next(
            (int(n["Resources"].get("GPU", 0)) for n in ray.nodes() if n["NodeID"] == node_id),
            0,
        )
        bad = [i for i in gpu_indices if not 0 <= i < gpus]
        if bad:
            raise ValueError(f"GPU indices {bad} do not exist on this node ({gpus} GPUs)")
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("RAY_") and k != "CUDA_VISIBLE_DEVICES"
        }
        base.update(env)
        Path(self._log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                env=base,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        return self._proc.pid

    def status(self) -> int | None:
        """The exit code once the replica has ended (negative: killed by that signal)."""
        if self._proc is None:
            return None
        if self._exit_code is None:
            code = self._proc.poll()
            if code is None:
                return None
            self._exit_code = code
            # Children left in the group would hold GPUs with nobody accounting for them.
            _signal_group(self._proc.pid, signal.SIGKILL)
            if self._kill_timer is not None:
                self._kill_timer.cancel()
        return self._exit_code

    def terminate(self, grace_s: float) -> None:
        if self._proc is None or self.status() is not None:
            return
        _signal_group(self._proc.pid, signal.SIGTERM)
        if self._kill_timer is None:
            self._kill_timer = threading.Timer(
                grace_s, _signal_group, args=(self._proc.pid, signal.SIGKILL)
            )
            self._kill_timer.daemon = True
            self._kill_timer.start()

    def report(self, offset: int, max_bytes: int) -> tuple[int | None, bytes]:
        """Exit code (None while running) and new output, in one round trip.

        The code is read first, so once it is known the output returned is complete
        up to ``max_bytes``.
        """
        code = self.status()
        return code, self.read_log(offset, max_bytes)

    def read_log(self, offset: int, max_bytes: int) -> bytes:
        try:
            with open(self._log_path, "rb") as f:
                f.seek(offset)
                return f.read(max_bytes)
        except FileNotFoundError:
            return b""


# ---------------------------------------------------------------------------------------
# Gangs on a Ray cluster (controller side)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PlatformError(
            "the ray executor needs Ray; install it with: pip install 'mosu[ray]'"
        ) from None
    return ray


class RayGangs:
    """Starts, polls and stops gangs on a Ray cluster from the controller process.

    Replica output is copied to controller-side files on every ``poll`` (by default
    ``log_dir/<job>/replica-<i>.log``); ``remote_log_dir`` is where runners write on their
    own nodes. Runners are detached named actors in ``namespace``, so they outlive a
    controller restart and the next controller finds them by job (``runner_names``).
    """

    def __init__(
        self,
        *,
        address: str,
        log_dir: Path,
        namespace: str = "mosu",
        remote_log_dir: str = "/tmp/mosu/replica-logs",
        default_gpu_type: str = "gpu",
        call_timeout_s: float = 10.0,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.address = address
        self.log_dir = Path(log_dir)
        self.namespace = namespace
        self.remote_log_dir = remote_log_dir
        self.default_gpu_type = default_gpu_type
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s

    # -- connection ---------------------------------------------------------------------

    def connect(self) -> None:
        ray = _ray()
        if not ray.is_initialized():
            self._check_reachable()
            extra: dict[str, str] = {}
            if _is_loopback(self.address.rpartition(":")[0]):
                # Otherwise the driver advertises the machine's outside address and its
                # own servers listen there, although the whole cluster is on loopback.
                extra["_node_ip_address"] = "127.0.0.1"
            ray.init(
                address=self.address,
                namespace=self.namespace,
                log_to_driver=False,
                logging_level="ERROR",
                **extra,
            )

    def close(self) -> None:
        ray = _ray()
        if ray.is_initialized():
            ray.shutdown()

    def _check_reachable(self) -> None:
        """Fail in seconds with a clear message: ``ray.init`` retries for minutes."""
        host, sep, port = self.address.rpartition(":")
        if not sep or not port.isdigit():
            raise InvalidInput(
                f"expected HOST:PORT of the Ray head, got {self.address!r}", field="--ray-address"
            )
        try:
            socket.create_connection((host, int(port)), timeout=self.call_timeout_s).close()
        except OSError as exc:
            raise PlatformError(
                f"cannot reach the Ray head at {self.address}: {exc.strerror or exc}; "
                "start it with `ray start --head` or fix --ray-address"
            ) from None

    # -- nodes --------------------------------------------------------------------------

    def ray_nodes(self) -> list[RayNode]:
        """Every node Ray knows; a dead node's name is shadowed by a live one."""
        self.connect()
        seen: dict[str, RayNode] = {}
        for info in _ray().nodes():
            found = node_from_ray(info, default_gpu_type=self.default_gpu_type)
            if found is None:
                continue
            other = seen.get(found.node.name)
            if other is not None and other.alive and found.alive:
                raise InvalidInput(
                    f"Ray nodes {other.node_id[:12]} and {found.node_id[:12]} both call "
                    f"themselves {found.node.name!r}; give each a unique {LABEL_NODE} label",
                    field=LABEL_NODE,
                )
            if other is None or (found.alive and not other.alive):
                seen[found.node.name] = found
        return sorted(seen.values(), key=lambda n: n.node.name)

    def nodes(self) -> list[Node]:
        """The cluster as mosu nodes; dead Ray nodes are ``down``."""
        return [n.node for n in self.ray_nodes()]

    def down_nodes(self) -> set[str]:
        return {n.node.name for n in self.ray_nodes() if not n.alive}

    # -- start --------------------------------------------------------------------------

    def log_path(self, job_id: str, replica: int) -> Path:
        return self.log_dir / job_id / f"replica-{replica}.log"

    def _actor_prefix(self, job_id: str) -> str:
        return f"mosu/{job_id}/"

    def start(self, spec: GangSpec) -> RayGang:
        """Start every replica of the gang on its node, or none of them."""
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        argv = _argv(spec.command)
        if not spec.placement:
            raise InvalidInput("a gang needs at least one replica placement", field="placement")
        by_name = {n.node.name: n for n in self.ray_nodes()}
        for i, rp in enumerate(spec.placement):
            target = by_name.get(rp.node)
            if target is None or not target.alive:
                why = "is not in the Ray cluster" if target is None else "is down"
                raise GangStartError(f"job {spec.job_id}: replica {i}'s node {rp.node!r} {why}")

        runner_cls = ray.remote(_ReplicaRunner)
        replicas: list[_Replica] = []
        gang = RayGang(job_id=spec.job_id, master_addr="", master_port=0, replicas=replicas)
        self._kill_stale(spec.job_id)
        # Runner names are unique per attempt, so a new attempt never waits for the name
        # of a runner that is still being torn down.
        token = f"{spec.attempt}-{time.time_ns():x}"
        try:
            for i, rp in enumerate(spec.placement):
                name = f"{self._actor_prefix(spec.job_id)}{token}/{i}"
                remote_log = f"{self.remote_log_dir}/{spec.job_id}/{token}/replica-{i}.log"
                actor = runner_cls.options(
                    name=name,
                    namespace=self.namespace,
                    lifetime="detached",
                    num_cpus=0,
                    num_gpus=0,
                    max_restarts=0,
                    max_task_retries=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(
                        by_name[rp.node].node_id, soft=False
                    ),
                ).remote(remote_log)
                local_log = spec.log_paths[i] if spec.log_paths else self.log_path(spec.job_id, i)
                local_log.parent.mkdir(parents=True, exist_ok=True)
                gpus = ",".join(str(g) for g in rp.gpu_indices) or "none"
                header = f"--- mosu: attempt {spec.attempt}, node {rp.node}, GPUs {gpus} ---\n"
                with local_log.open("ab") as out:
                    out.write(header.encode())
                replicas.append(
                    _Replica(i, rp.node, by_name[rp.node].node_id, actor, name, local_log)
                )
            infos = self._get_each(
                replicas, [r.actor.ready.remote() for r in replicas], self.start_timeout_s
            )
            for r, info in zip(replicas, infos, strict=True):
                if info["node_id"] != r.node_id:
                    raise GangStartError(f"replica {r.index} landed on the wrong Ray node")
            gang.master_addr = by_name[replicas[0].node].address
            gang.master_port = ray.get(
                replicas[0].actor.free_port.remote(), timeout=self.call_timeout_s
            )
            starts = []
            for r, rp in zip(replicas, spec.placement, strict=True):
                env = replica_env(
                    job_id=spec.job_id,
                    replica=r.index,
                    num_replicas=len(replicas),
                    gpu_indices=rp.gpu_indices,
                    master_addr=gang.master_addr,
                    master_port=gang.master_port,
                    node=r.node,
                    job_env=spec.env,
                )
                starts.append(r.actor.start.remote(argv, env, spec.workdir, list(rp.gpu_indices)))
            pids = self._get_each(replicas, starts, self.start_timeout_s)
            for r, pid in zip(replicas, pids, strict=True):
                r.pid = int(pid)
        except Exception as exc:
            self._abort(gang)
            if isinstance(exc, GangStartError):
                raise
            raise GangStartError(f"job {spec.job_id}: {_describe(exc)}") from None
        return gang

    def _get_each(self, replicas: list[_Replica], refs: list[Any], timeout_s: float) -> list[Any]:
        """Wait for one call per replica; the first failure names its replica."""
        ray = _ray()
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        values = []
        for r, ref in zip(replicas, refs, strict=True):
            if ref in pending:
                raise GangStartError(f"replica {r.index} on {r.node}: no answer in {timeout_s}s")
            try:
                values.append(ray.get(ref))
            except Exception as exc:
                cause = getattr(exc, "cause", None)
                raise GangStartError(
                    f"replica {r.index} on {r.node} did not start: {_describe(exc)}",
                    requeue=not isinstance(exc, OSError) and not isinstance(cause, OSError),
                ) from None
        return values

    def runner_names(self, job_id: str) -> list[str]:
        """Names of the job's runners that Ray still knows (detached actors outlive us)."""
        ray = _ray()
        self.connect()
        prefix = self._actor_prefix(job_id)
        return sorted(
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == self.namespace and a["name"].startswith(prefix)
        )

    def stop_runners(self, job_id: str, grace_s: float) -> int:
        """Stop every runner of ``job_id`` that Ray still knows, e.g. left by a controller
        that died; returns how many there were. Their output is not copied."""
        ray = _ray()
        actors = []
        for name in self.runner_names(job_id):
            with contextlib.suppress(ValueError):
                actors.append(ray.get_actor(name, namespace=self.namespace))
        if not actors:
            return 0
        ray.wait(
            [a.terminate.remote(grace_s) for a in actors],
            num_returns=len(actors),
            timeout=self.call_timeout_s,
        )
        deadline = time.monotonic() + grace_s + _KILL_MARGIN_S
        live = actors
        while live and time.monotonic() < deadline:
            refs = [a.status.remote() for a in live]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.call_timeout_s)
            done = set()
            for a, ref in zip(live, refs, strict=True):
                if ref in ready:
                    try:
                        if ray.get(ref) is not None:
                            done.add(id(a))
                    except Exception:
                        done.add(id(a))  # the runner is gone, and its replica with it
            live = [a for a in live if id(a) not in done]
            if live:
                time.sleep(0.2)
        for a in actors:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)
        return len(actors)

    def _kill_stale(self, job_id: str) -> None:
        """Runners left by an earlier attempt of the same job must not keep running it."""
        self.stop_runners(job_id, grace_s=0.0)

    def _abort(self, gang: RayGang) -> None:
        ray = _ray()
        for r in gang.replicas:
            with contextlib.suppress(Exception):
                ray.get(r.actor.terminate.remote(0.0), timeout=self.call_timeout_s)
            with contextlib.suppress(Exception):
                self._drain_log(r)
            with contextlib.suppress(Exception):
                ray.kill(r.actor, no_restart=True)

    def _drain_log(self, r: _Replica) -> None:
        ray = _ray()
        while True:
            chunk: bytes = ray.get(
                r.actor.read_log.remote(r.log_offset, _LOG_CHUNK), timeout=self.call_timeout_s
            )
            self._append(r, chunk)
            if len(chunk) < _LOG_CHUNK:
                return

    def _append(self, r: _Replica, chunk: bytes) -> None:
        if chunk:
            with open(r.log_path, "ab") as out:
                out.write(chunk)
            r.log_offset += len(chunk)

    # -- poll and stop ------------------------------------------------------------------

    def poll(self, gang: RayGang) -> list[ReplicaStatus]:
        """Every replica's state; copies new output to the controller's log files.

        A replica whose node is down or whose runner died is ``lost``. A runner that is
        merely slow to answer keeps its last state until its node is declared down.
        """
        return self.poll_many([gang])[0]

    def poll_many(
        self, gangs: Sequence[RayGang], *, wait_s: float | None = None
    ) -> list[list[ReplicaStatus]]:
        """``poll`` for several gangs with one round of calls, waiting at most ``wait_s``."""
        ray = _ray()
        live = [r for g in gangs for r in g.replicas if r.final is None]
        if live:
            alive_ids = {n.node_id for n in self.ray_nodes() if n.alive}
            stopping = {id(r) for g in gangs if g.stopping for r in g.replicas}
            refs = [r.actor.report.remote(r.log_offset, _LOG_CHUNK) for r in live]
            timeout = self.call_timeout_s if wait_s is None else wait_s
            _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout)
            for r, ref in zip(live, refs, strict=True):
                if r.node_id not in alive_ids:
                    r.final = self._node_down(r)
                elif ref not in pending:
                    self._observe(r, ref, id(r) in stopping)
            lost = [r for r in live if r.final and r.final.state is ReplicaState.LOST]
            if any(r.node_id in alive_ids for r in lost):
                # A runner that died with its node can be reported before the node list
                # catches up; name the node as the cause when it is.
                alive_ids = {n.node_id for n in self.ray_nodes() if n.alive}
                for r in lost:
                    if r.node_id not in alive_ids:
                        r.final = self._node_down(r)
        return [[self._status(r) for r in g.replicas] for g in gangs]

    def _node_down(self, r: _Replica) -> ReplicaStatus:
        return ReplicaStatus(r.index, r.node, ReplicaState.LOST, None, f"node {r.node} is down")

    def _observe(self, r: _Replica, ref: Any, stopping: bool) -> None:
        ray = _ray()
        try:
            code, chunk = ray.get(ref)
        except Exception as exc:
            r.final = ReplicaStatus(
                r.index, r.node, ReplicaState.LOST, None, f"runner lost: {_describe(exc)}"
            )
            return
        self._append(r, chunk)
        if code is None:
            return
        with contextlib.suppress(Exception):
            if len(chunk) == _LOG_CHUNK:
                self._drain_log(r)
        if stopping:
            state = ReplicaState.STOPPED
        else:
            state = ReplicaState.SUCCEEDED if code == 0 else ReplicaState.FAILED
        r.final = ReplicaStatus(r.index, r.node, state, code, _exit_message(code))
        with contextlib.suppress(Exception):
            ray.kill(r.actor, no_restart=True)

    def _status(self, r: _Replica) -> ReplicaStatus:
        return r.final or ReplicaStatus(r.index, r.node, ReplicaState.RUNNING)

    def signal_stop(self, gang: RayGang, *, grace_s: float) -> None:
        """SIGTERM every running replica's process group; its runner sends SIGKILL after
        ``grace_s`` on its own. Returns at once; ``poll`` sees the replicas end."""
        ray = _ray()
        gang.stopping = True
        live = [r for r in gang.replicas if r.final is None]
        refs = [r.actor.terminate.remote(grace_s) for r in live]
        # The calls are on their way; an unresponsive node must not hold the loop long.
        ray.wait(refs, num_returns=len(refs), timeout=min(self.call_timeout_s, 1.0))

    def stop(self, gang: RayGang, *, grace_s: float) -> list[ReplicaStatus]:
        """``signal_stop``, then wait until every replica has ended or is unreachable.

        Safe to call twice. A runner that has not reported an end ``grace_s`` plus a
        margin later is killed (its replica dies with it) and reported ``lost``.
        """
        ray = _ray()
        self.poll(gang)
        if not gang.ended:
            self.signal_stop(gang, grace_s=grace_s)
        deadline = time.monotonic() + grace_s + _KILL_MARGIN_S
        while not gang.ended and time.monotonic() < deadline:
            time.sleep(0.2)
            self.poll(gang)
        for r in gang.replicas:
            if r.final is None:
                with contextlib.suppress(Exception):
                    self._drain_log(r)
                with contextlib.suppress(Exception):
                    ray.kill(r.actor, no_restart=True)
                r.final = ReplicaStatus(
                    r.index, r.node, ReplicaState.LOST, None, "did not end; runner killed"
                )
        return [self._status(r) for r in gang.replicas]


# ---------------------------------------------------------------------------------------
# The platform's executor


class RayJobExit(JobExit):
    lost: bool = False
    """A replica's node or runner vanished: the attempt says nothing about the job, which
    should be requeued rather than failed."""


@dataclass(slots=True)
class _Attempt:
    attempt: int
    gang: RayGang


class RayExecutor(Executor):
    """The scheduling loop's executor on a Ray cluster (``mosu up --executor ray``).

    ``stop`` and ``poll`` never wait for a replica: stops are escalated by the runners
    themselves and ``poll`` asks the cluster at most every ``poll_every_s``. A gang lives
    and dies together: when one replica fails or is lost the others get SIGTERM. An
    attempt with a lost replica is reported with ``lost=True`` so the job is requeued.
    """

    def __init__(
        self,
        *,
        address: str,
        instance: str,
        remote_log_dir: str = "/tmp/mosu/replica-logs",
        default_gpu_type: str = "gpu",
        failure_grace_s: float = 10.0,
        poll_every_s: float = 1.0,
        call_timeout_s: float = 10.0,
        start_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gangs = RayGangs(
            address=address,
            log_dir=Path(remote_log_dir),
            namespace=f"mosu-{instance}",
            remote_log_dir=remote_log_dir,
            default_gpu_type=default_gpu_type,
            call_timeout_s=call_timeout_s,
            start_timeout_s=start_timeout_s,
        )
        self._failure_grace_s = failure_grace_s
        self._poll_every_s = poll_every_s
        self._clock = clock
        self._last_poll = -float("inf")
        self._jobs: dict[int, _Attempt] = {}

    def cluster_nodes(self) -> list[Node]:
        """The Ray cluster as mosu nodes (dead ones ``down``), for the store to mirror."""
        return self.gangs.nodes()

    def start(self, launch: JobLaunch) -> dict[int, int]:
        replicas = sorted(launch.replicas, key=lambda r: r.replica)
        env = {**launch.env, "MOSU_ATTEMPT": str(launch.attempt)}
        if len(replicas) == 1 and replicas[0].gpu_indices and replicas[0].gpu_fraction < 1:
            env["MOSU_GPU_FRACTION"] = f"{replicas[0].gpu_fraction:g}"  # as the local executor
        spec = GangSpec(
            job_id=str(launch.job_id),
            command=launch.argv,
            placement=tuple(
                ReplicaPlacement(
                    r.node, tuple(r.gpu_indices), gpu_milli=round(r.gpu_fraction * GPU_MILLI)
                )
                for r in replicas
            ),
            env=env,
            workdir=launch.workdir,
            attempt=launch.attempt,
            log_paths=tuple(Path(r.log_path) for r in replicas),
        )
        gang = self.gangs.start(spec)
        self._jobs[launch.job_id] = _Attempt(launch.attempt, gang)
        return gang.pids

    def poll(self) -> list[JobExit]:
        now = self._clock()
        if not self._jobs or now - self._last_poll < self._poll_every_s:
            return []
        self._last_poll = now
        ids = sorted(self._jobs)
        attempts = [self._jobs[i] for i in ids]
        all_statuses = self.gangs.poll_many([a.gang for a in attempts], wait_s=1.0)
        exits: list[JobExit] = []
        for job_id, att, statuses in zip(ids, attempts, all_statuses, strict=True):
            broken = any(s.state in (ReplicaState.FAILED, ReplicaState.LOST) for s in statuses)
            if broken and not att.gang.stopping and not att.gang.ended:
                self.gangs.signal_stop(att.gang, grace_s=self._failure_grace_s)
            if att.gang.ended:
                del self._jobs[job_id]
                exits.append(_exit_report(job_id, att.attempt, statuses))
        return exits

    def stop(self, job_id: int, grace_s: float) -> None:
        att = self._jobs.get(job_id)
        if att is not None and not att.gang.stopping:
            self.gangs.signal_stop(att.gang, grace_s=grace_s)

    def terminate_orphans(self, job_id: int, pids: list[int], grace_s: float) -> int:
        return self.gangs.stop_runners(str(job_id), grace_s)

    def shutdown(self, grace_s: float) -> None:
        for job_id in sorted(self._jobs):
            self.stop(job_id, grace_s)
        deadline = time.monotonic() + grace_s + _KILL_MARGIN_S
        while self._jobs and time.monotonic() < deadline:
            gangs = [a.gang for a in self._jobs.values()]
            self.gangs.poll_many(gangs, wait_s=1.0)
            if all(g.ended for g in gangs):
                break
            time.sleep(0.2)
        # Exits are handed out by the next poll, which must not wait for its interval.
        self._last_poll = -float("inf")


def _exit_report(job_id: int, attempt: int, statuses: list[ReplicaStatus]) -> JobExit:
    lost = [s for s in statuses if s.state is ReplicaState.LOST]
    if lost:
        return RayJobExit(
            job_id=job_id,
            attempt=attempt,
            exit_code=None,
            message=f"replica {lost[0].replica} lost: {lost[0].message}",
            lost=True,
        )
    # The replica that failed on its own, not a sibling stopped because of it.
    failed = [s for s in statuses if s.state is ReplicaState.FAILED]
    failed += [s for s in statuses if s.exit_code != 0 and s not in failed]
    if not failed:
        return RayJobExit(job_id=job_id, attempt=attempt, exit_code=0)
    first = failed[0]
    code = first.exit_code if first.exit_code is not None and first.exit_code > 0 else None
    return RayJobExit(
        job_id=job_id,
        attempt=attempt,
        exit_code=code,
        message=f"replica {first.replica} on {first.node}: {first.message}",
    )


def _exit_message(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _describe(exc: BaseException) -> str:
    """One line for an error that may be a Ray wrapper around the runner's exception."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")
