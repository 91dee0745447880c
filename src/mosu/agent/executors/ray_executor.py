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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from mosu.core.errors import Conflict, InvalidInput, PlatformError
from mosu.core.models import Node, NodeState, Placement

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

    The scheduler requeues the job: the placement was stale (a node went away) or a
    node refused the replica.
    """

    code = "gang-start"


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


@dataclass(slots=True)
class _Replica:
    index: int
    node: str
    node_id: str
    actor: Any
    actor_name: str
    log_path: Path
    log_offset: int = 0
    final: ReplicaStatus | None = None


@dataclass(slots=True)
class RayGang:
    """Handle of a started gang; pass it back to ``poll`` and ``stop``."""

    job_id: str
    master_addr: str
    master_port: int
    replicas: list[_Replica]

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(r.node for r in self.replicas)


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


def _die_with_parent() -> None:
    """In the forked child: get SIGKILL when the runner dies, so no replica outlives it."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


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
                preexec_fn=_die_with_parent,
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

    def read_log(self, offset: int, max_bytes: int) -> bytes:
        try:
            with open(self._log_path, "rb") as f:
                f.seek(offset)
                return f.read(max_bytes)
        except FileNotFoundError:
            return b""


# ---------------------------------------------------------------------------------------
# The executor (controller side)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PlatformError(
            "the ray executor needs Ray; install it with: pip install 'mosu[ray]'"
        ) from None
    return ray


class RayExecutor:
    """Starts, polls and stops gangs on a Ray cluster from the controller process.

    ``log_dir`` is on the controller: each replica's output is copied to
    ``log_dir/<job>/replica-<i>.log`` on every ``poll`` and at ``stop``.
    ``remote_log_dir`` is where runners write on their own nodes.
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
            ray.init(
                address=self.address,
                namespace=self.namespace,
                log_to_driver=False,
                logging_level="ERROR",
            )

    def close(self) -> None:
        ray = _ray()
        if ray.is_initialized():
            ray.shutdown()

    # -- nodes --------------------------------------------------------------------------

    def ray_nodes(self) -> list[RayNode]:
        """Every node Ray knows, alive first; a dead node's name is shadowed by a live one."""
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

    # -- gangs --------------------------------------------------------------------------

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
        attempt = f"{time.time_ns():x}"
        try:
            for i, rp in enumerate(spec.placement):
                name = f"{self._actor_prefix(spec.job_id)}{attempt}/{i}"
                remote_log = f"{self.remote_log_dir}/{spec.job_id}/replica-{i}.log"
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
                local_log = self.log_path(spec.job_id, i)
                local_log.parent.mkdir(parents=True, exist_ok=True)
                local_log.write_bytes(b"")
                replicas.append(
                    _Replica(i, rp.node, by_name[rp.node].node_id, actor, name, local_log)
                )
            infos = ray.get(
                [r.actor.ready.remote() for r in replicas], timeout=self.start_timeout_s
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
            self._get_each(replicas, starts, self.start_timeout_s)
        except Exception as exc:
            self._abort(gang)
            if isinstance(exc, GangStartError):
                raise
            raise GangStartError(f"job {spec.job_id}: {_describe(exc)}") from None
        return gang

    def _get_each(self, replicas: list[_Replica], refs: list[Any], timeout_s: float) -> None:
        """Wait for every call; the first failure names its replica."""
        ray = _ray()
        _ready, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        for r, ref in zip(replicas, refs, strict=True):
            if ref in pending:
                raise GangStartError(f"replica {r.index} on {r.node}: no answer in {timeout_s}s")
            try:
                ray.get(ref)
            except Exception as exc:
                raise GangStartError(
                    f"replica {r.index} on {r.node} did not start: {_describe(exc)}"
                ) from None

    def runner_names(self, job_id: str) -> list[str]:
        """Names of the job's runners that Ray still knows (detached actors outlive us)."""
        ray = _ray()
        self.connect()
        prefix = self._actor_prefix(job_id)
        return sorted(n for n in ray.util.list_named_actors() if n.startswith(prefix))

    def _kill_stale(self, job_id: str) -> None:
        """Runners left by an earlier attempt of the same job must not keep running it."""
        ray = _ray()
        for name in self.runner_names(job_id):
            try:
                stale = ray.get_actor(name, namespace=self.namespace)
            except ValueError:
                continue
            with contextlib.suppress(Exception):
                ray.get(stale.terminate.remote(0.0), timeout=self.call_timeout_s)
            with contextlib.suppress(Exception):
                ray.kill(stale, no_restart=True)

    def _abort(self, gang: RayGang) -> None:
        ray = _ray()
        for r in gang.replicas:
            with contextlib.suppress(Exception):
                ray.get(r.actor.terminate.remote(0.0), timeout=self.call_timeout_s)
            with contextlib.suppress(Exception):
                self._pump_log(r)
            with contextlib.suppress(Exception):
                ray.kill(r.actor, no_restart=True)

    def _pump_log(self, r: _Replica) -> None:
        ray = _ray()
        with open(r.log_path, "ab") as out:
            while True:
                chunk: bytes = ray.get(
                    r.actor.read_log.remote(r.log_offset, _LOG_CHUNK), timeout=self.call_timeout_s
                )
                out.write(chunk)
                r.log_offset += len(chunk)
                if len(chunk) < _LOG_CHUNK:
                    return

    def poll(self, gang: RayGang) -> list[ReplicaStatus]:
        """Every replica's state; copies new output to the controller's log files.

        A replica whose node is down or whose runner died is ``lost``. A runner that is
        merely slow to answer keeps its last state until the node is declared down.
        """
        ray = _ray()
        live = [r for r in gang.replicas if r.final is None]
        if live:
            alive_ids = {n.node_id for n in self.ray_nodes() if n.alive}
            refs = [r.actor.status.remote() for r in live]
            _, pending = ray.wait(refs, num_returns=len(refs), timeout=self.call_timeout_s)
            for r, ref in zip(live, refs, strict=True):
                self._observe(r, ref, ref in pending, r.node_id in alive_ids)
        return [self._status(r) for r in gang.replicas]

    def _observe(self, r: _Replica, ref: Any, timed_out: bool, node_alive: bool) -> None:
        ray = _ray()
        if not node_alive:
            r.final = ReplicaStatus(
                r.index, r.node, ReplicaState.LOST, None, f"node {r.node} is down"
            )
            return
        if timed_out:
            return
        try:
            code = ray.get(ref)
        except Exception as exc:
            r.final = ReplicaStatus(
                r.index, r.node, ReplicaState.LOST, None, f"runner lost: {_describe(exc)}"
            )
            return
        with contextlib.suppress(Exception):
            self._pump_log(r)
        if code is not None:
            state = ReplicaState.SUCCEEDED if code == 0 else ReplicaState.FAILED
            r.final = ReplicaStatus(r.index, r.node, state, code, _exit_message(code))
            with contextlib.suppress(Exception):
                ray.kill(r.actor, no_restart=True)

    def _status(self, r: _Replica) -> ReplicaStatus:
        return r.final or ReplicaStatus(r.index, r.node, ReplicaState.RUNNING)

    def stop(self, gang: RayGang, *, grace_s: float) -> list[ReplicaStatus]:
        """SIGTERM every replica's process group, SIGKILL what is left after ``grace_s``.

        Returns when every replica has ended or is unreachable; safe to call twice.
        """
        ray = _ray()
        self.poll(gang)
        live = [r for r in gang.replicas if r.final is None]
        terms = [r.actor.terminate.remote(grace_s) for r in live]
        ray.wait(terms, num_returns=len(terms), timeout=self.call_timeout_s)
        deadline = time.monotonic() + grace_s + _KILL_MARGIN_S
        while live and time.monotonic() < deadline:
            time.sleep(0.2)
            refs = [r.actor.status.remote() for r in live]
            _, pending = ray.wait(refs, num_returns=len(refs), timeout=self.call_timeout_s)
            still: list[_Replica] = []
            for r, ref in zip(live, refs, strict=True):
                code: int | None = None
                if ref in pending:
                    still.append(r)
                    continue
                try:
                    code = ray.get(ref)
                except Exception as exc:
                    r.final = ReplicaStatus(
                        r.index, r.node, ReplicaState.LOST, None, f"runner lost: {_describe(exc)}"
                    )
                    continue
                if code is None:
                    still.append(r)
                else:
                    r.final = ReplicaStatus(
                        r.index, r.node, ReplicaState.STOPPED, code, _exit_message(code)
                    )
            live = still
        for r in gang.replicas:
            with contextlib.suppress(Exception):
                self._pump_log(r)
            with contextlib.suppress(Exception):
                ray.kill(r.actor, no_restart=True)
            if r.final is None:
                r.final = ReplicaStatus(
                    r.index, r.node, ReplicaState.LOST, None, "did not end; runner killed"
                )
        return [self._status(r) for r in gang.replicas]


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
