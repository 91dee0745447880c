"""Run a job's gang on a Ray cluster, every replica pinned to the node the engine chose.

Nomenclature: a *gang* is every replica of one job, started as a unit; a *replica* is
one process tree running the job's command on one node; a *runner* is the small Ray
actor that owns one replica's process on that node. The engine decides placement and
mosu does its own GPU accounting: runners are pinned with hard node affinity, ask Ray for
no CPUs and for as many of the node vendor's accelerator resource as the replica holds
(``GPU`` for NVIDIA and AMD, ``NPU`` for Ascend), so Ray's own count of busy devices
agrees with mosu's, and show the replica exactly the engine's device indices through
its vendor's variable (``core.accelerators``).

Ray is an optional extra (``pip install 'mosu[ray]'``). It is imported inside the
functions that talk to the cluster, so importing this module never needs it. mosu must
be installed on every Ray node (runners are defined here).

A Ray node becomes a mosu node as follows (labels win over custom resources):

- name: label ``mosu.io/node``, else ``ray-<first 12 hex of the Ray node id>``;
- GPU count: Ray's ``GPU`` resource; a node with Ray's ``NPU`` resource and no ``GPU``
  is an Ascend node, its NPUs counted;
- GPU type: label ``mosu.io/gpu-type``, else a custom resource ``mosu-gpu-type:<TYPE>``,
  else Ray's own ``accelerator_type:<TYPE>`` resource (read as a known model where it
  names one: ``AMD-Instinct-MI300X-OAM`` is ``MI300X``), else the executor's default
  (``npu`` on an Ascend node);
- vendor: label ``mosu.io/gpu-vendor``, else ``huawei`` on an Ascend node, else the
  vendor of the GPU type (``core.accelerators.vendor_of``);
- topology: labels ``mosu.io/zone`` and ``mosu.io/rack``, else custom resources
  ``mosu-zone:<ZONE>`` and ``mosu-rack:<RACK>``;
- GPU memory: label ``mosu.io/gpu-mem-mib``;
- a head node without GPUs is the cluster's control plane and is not offered to jobs.

Replicas run under the same rules as on the local executor: each runner starts a
replica supervisor (``mosu.agent.supervisor``) on its node, which runs the replica in the
node's sandbox (a Unix user per tenant when Ray runs as root, bubblewrap otherwise;
``MOSU_SANDBOX`` in the node's environment overrides), with the environment built by
``mosu.agent.replica_env``, in a cgroup. Runners are detached named actors, so after a
controller failover the next controller re-attaches to them instead of restarting gangs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from mosu.agent.checkpoints import gang_checkpoint
from mosu.agent.replica_env import ReplicaSlot, gang_contracts
from mosu.agent.sandbox import SandboxUnavailable, resolve
from mosu.agent.supervised import SupervisedReplica, SupervisorStartError, private_dir
from mosu.core.accelerators import CONTRACTS, Vendor, model_from_product, vendor_of
from mosu.core.api import CheckpointReport, JobExit, JobLaunch
from mosu.core.errors import InvalidInput, PlatformError
from mosu.core.executor import (
    Adoption,
    AttemptRecord,
    Capability,
    LaunchError,
    NodeReport,
    ReplicaStarted,
)
from mosu.core.models import GPU_MILLI, Node, NodeState

__all__ = [
    "LABEL_GPU_MEM_MIB",
    "LABEL_GPU_TYPE",
    "LABEL_GPU_VENDOR",
    "LABEL_NODE",
    "LABEL_RACK",
    "LABEL_ZONE",
    "RESOURCE_GPU_TYPE",
    "RESOURCE_RACK",
    "RESOURCE_ZONE",
    "GangStartError",
    "RayExecutor",
    "RayGang",
    "RayGangs",
    "RayNode",
    "ReplicaState",
    "ReplicaStatus",
    "node_from_ray",
]

LABEL_NODE = "mosu.io/node"
LABEL_GPU_TYPE = "mosu.io/gpu-type"
LABEL_ZONE = "mosu.io/zone"
LABEL_RACK = "mosu.io/rack"
LABEL_GPU_MEM_MIB = "mosu.io/gpu-mem-mib"
LABEL_GPU_VENDOR = "mosu.io/gpu-vendor"
RESOURCE_GPU_TYPE = "mosu-gpu-type:"
RESOURCE_ZONE = "mosu-zone:"
RESOURCE_RACK = "mosu-rack:"
_RAY_ACCELERATOR = "accelerator_type:"
_RAY_HEAD = "node:__internal_head__"
_RAY_NPU = "NPU"
_DEFAULT_NPU_TYPE = "npu"
_RAY_LABEL_PREFIX = "ray.io/"

_LOG_CHUNK = 1 << 20
_KILL_MARGIN_S = 5.0


class GangStartError(LaunchError):
    """A gang could not start on its placement; nothing of it is left running.

    ``requeue`` is True when the placement was at fault (a node went away or refused the
    replica), so the job should wait for another placement; False when the job itself
    cannot start (its command or workdir does not exist), so it should fail.
    """

    code = "gang-start"

    def __init__(self, message: str, *, requeue: bool = True) -> None:
        super().__init__(message, requeue=requeue)


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
    vendor: Vendor = Vendor.NVIDIA

    @property
    def device_resource(self) -> str:
        """The Ray resource that counts this node's devices."""
        return _RAY_NPU if self.vendor is Vendor.HUAWEI else "GPU"


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
    log_base: int = 0
    """Size of the controller's log file when this attempt's output began."""
    final: ReplicaStatus | None = None
    checkpoint: dict[str, Any] | None = None
    """Its supervisor's last checkpoint report (``mosu.agent.checkpoints``)."""


@dataclass(slots=True)
class RayGang:
    """Handle of a started gang; pass it back to ``poll`` and ``stop``."""

    job_id: int
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
    npus = int(resources.get(_RAY_NPU, 0)) if gpus == 0 else 0
    if gpus == 0 and npus == 0 and _RAY_HEAD in resources:
        return None
    ray_type = _named(resources, _RAY_ACCELERATOR)
    gpu_type = (
        labels.get(LABEL_GPU_TYPE)
        or _named(resources, RESOURCE_GPU_TYPE)
        or (ray_type and (model_from_product(ray_type) or ray_type))
        or (_DEFAULT_NPU_TYPE if npus else default_gpu_type)
    )
    declared = labels.get(LABEL_GPU_VENDOR)
    if declared is None and npus:
        declared = Vendor.HUAWEI.value
    vendor = vendor_of(gpu_type, declared, field=LABEL_GPU_VENDOR)
    if npus:
        gpus = npus
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
    return RayNode(
        node=node,
        node_id=node_id,
        address=str(info["NodeManagerAddress"]),
        alive=alive,
        vendor=vendor,
    )


class _Devices(Protocol):
    """A replica's devices on its node (a ``ReplicaLaunch``, a ``ReplicaPlacement``)."""

    @property
    def gpu_indices(self) -> Sequence[int]: ...
    @property
    def gpu_milli(self) -> int: ...


def _device_request(node: RayNode, rp: _Devices) -> dict[str, Any]:
    """What a runner asks Ray for: the replica's devices in the resource Ray's own
    accelerator manager counts them under, so Ray and mosu agree on what is busy. A
    vendor Ray has no manager for (Cambricon) is counted by mosu alone."""
    share = len(rp.gpu_indices) * rp.gpu_milli / GPU_MILLI
    amount: float = int(share) if share.is_integer() else share  # Ray: whole above 1
    resource = CONTRACTS[node.vendor].ray_resource
    if resource is None or amount == 0:
        return {"num_gpus": 0}
    if resource == "GPU":
        return {"num_gpus": amount}
    return {"num_gpus": 0, "resources": {resource: amount}}


# ---------------------------------------------------------------------------------------
# The runner: one Ray actor per replica, on the replica's node


class _ReplicaRunner:
    """The handle of one replica on its node: it starts the replica's supervisor and
    relays stops, exit status and output. Every method returns at once (the actor runs
    one call at a time); the supervisor escalates a stop to SIGKILL on its own, so that
    happens even if the controller goes away.

    The supervisor watches this runner: if the runner dies (its node's Ray worker, or a
    ``ray.kill``), the supervisor stops the replica. Runners are detached and named, so a
    new controller finds them again (``info`` says where it left off).
    """

    def __init__(self, log_path: str, run_dir: str) -> None:
        self._log_path = log_path
        self._run_dir = run_dir
        self._replica: SupervisedReplica | None = None
        self._exit_code: int | None = None
        self._copied = 0
        self._lost = ""
        self._pid = 0
        self._controller_log: dict[str, Any] = {}

    def ready(self) -> dict[str, Any]:
        import ray

        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "sandbox": _node_sandbox(self._log_path),
        }

    def free_port(self) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            return int(s.getsockname()[1])

    def start(
        self,
        argv: list[str],
        job_env: dict[str, str],
        workdir: str | None,
        contract: dict[str, Any],
        tenant: str,
        controller_log: dict[str, Any],
    ) -> int:
        import ray

        self._controller_log = controller_log
        node_id = ray.get_runtime_context().get_node_id()
        resource = _RAY_NPU if contract.get("vendor") == Vendor.HUAWEI.value else "GPU"
        gpus = next(
            (int(n["Resources"].get(resource, 0)) for n in ray.nodes() if n["NodeID"] == node_id),
            0,
        )
        bad = [i for i in contract["gpu_indices"] if not 0 <= i < gpus]
        if bad:
            raise ValueError(f"GPU indices {bad} do not exist on this node ({gpus} {resource})")
        log_root = Path(self._log_path).parents[2]
        private_dir(log_root)
        if log_root.stat().st_uid != os.geteuid() or log_root.stat().st_mode & 0o077:
            raise ValueError(f"{log_root} must be private to Ray's user (mode 0700)")
        box = _node_box(self._log_path)
        spec = {
            "run_dir": self._run_dir,
            "log_path": self._log_path,
            "header": "",
            "argv": argv,
            "workdir": workdir,
            "job_env": job_env,
            "tenant": tenant,
            "contract": contract,
            "sandbox": box.to_json(),
            "cgroup": os.environ.get("MOSU_CGROUP", "auto"),
            "grace_s": 10.0,
        }
        replica = SupervisedReplica.spawn(spec, tied=True)
        self._pid = replica.confirm(time.monotonic() + 60)
        self._replica = replica
        return self._pid

    def status(self) -> int | None:
        """The exit code once the replica and every process it started have ended
        (negative: killed by that signal)."""
        if self._replica is None or self._exit_code is not None:
            return self._exit_code
        if self._lost:
            raise RuntimeError(self._lost)
        outcome = self._replica.outcome()
        if outcome is None:
            return None
        if outcome.lost or outcome.code is None:
            self._lost = outcome.message or "its supervisor ended without an exit record"
            raise RuntimeError(self._lost)
        self._exit_code = outcome.code
        return self._exit_code

    def terminate(self, grace_s: float) -> None:
        if self._replica is not None and self.status() is None:
            self._replica.request_stop(grace_s)

    def report(
        self, offset: int, max_bytes: int
    ) -> tuple[int | None, bytes, dict[str, Any] | None]:
        """Exit code (None while running), new output and the supervisor's checkpoint
        report, in one round trip. ``offset`` is how much the controller has copied so
        far (a new controller resumes there).

        The code is read first, so once it is known the output returned is complete
        up to ``max_bytes`` and the checkpoint report is the replica's last.
        """
        code = self.status()
        checkpoint = self._replica.checkpoint_report() if self._replica is not None else None
        return code, self.read_log(offset, max_bytes), checkpoint

    def request_checkpoint(self, signal_number: int, request_id: int) -> None:
        """Hand a checkpoint request to the replica's supervisor, which delivers it."""
        if self._replica is not None and self.status() is None:
            self._replica.request_checkpoint(signal_number, request_id)

    def read_log(self, offset: int, max_bytes: int) -> bytes:
        self._copied = offset
        try:
            with open(self._log_path, "rb") as f:
                f.seek(offset)
                return f.read(max_bytes)
        except FileNotFoundError:
            return b""

    def info(self) -> dict[str, Any]:
        """What a controller that re-attaches needs: the replica's pid, and where the
        previous controller's copy of its output began (``controller_log``) or, failing
        that, how much it had asked for (``copied``)."""
        return {"pid": self._pid, "copied": self._copied, "controller_log": self._controller_log}


def _copied(local_log: Path, info: Mapping[str, Any]) -> int:
    """How much of a replica's output is in ``local_log`` already: exact when it is the
    file the previous controller copied into (everything after its ``base`` is this
    attempt's); else what that controller had asked for, which may repeat a last chunk."""
    mine = info.get("controller_log") or {}
    try:
        size = local_log.stat().st_size
    except OSError:
        size = -1
    if mine.get("path") == str(local_log) and size >= int(mine.get("base", 0)):
        return size - int(mine["base"])
    return int(info.get("copied", 0))


def _node_box(log_path: str) -> Any:
    """The sandbox replicas run in on this node, from the node's own environment."""
    log_root = Path(log_path).parents[2]
    home_root = os.environ.get("MOSU_HOME_ROOT")
    hide = (str(log_root), str(Path.home()))
    try:
        return resolve(
            os.environ.get("MOSU_SANDBOX", "auto"),
            home_root=Path(home_root) if home_root else None,
            fallback_home_root=log_root.parent / "homes",
            hide=hide,
        )
    except SandboxUnavailable as exc:
        raise ValueError(f"no sandbox on this node: {exc}") from None


def _node_sandbox(log_path: str) -> str:
    try:
        return str(_node_box(log_path).mode)
    except ValueError:
        return "unavailable"


def _probe_sandbox(log_dir: str) -> str:
    """Run on a node (as a Ray task): the sandbox its replicas would run in."""
    return _node_sandbox(f"{log_dir}/probe/0/replica-0.log")


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
        instance: str = "mosu",
    ) -> None:
        self.address = address
        self.log_dir = Path(log_dir)
        self.namespace = namespace
        self.instance = instance
        """Names the store (``MOSU_INSTANCE`` of every replica)."""
        self.sandboxes: dict[str, str] = {}
        """Ray node id → the sandbox its replicas run in, as its runners report it."""
        self._probes: dict[str, Any] = {}
        self.keep_ended_runners = False
        """Keep a runner after its replica ended until ``release`` (the platform's executor
        does, so a controller that dies before recording an exit leaves it to be read)."""
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

    def log_path(self, job_id: int, replica: int) -> Path:
        return self.log_dir / str(job_id) / f"replica-{replica}.log"

    def _actor_prefix(self, job_id: int) -> str:
        return f"mosu/{job_id}/"

    def start(self, spec: JobLaunch) -> RayGang:
        """Start every replica of the gang on its node, or none of them. A replica whose
        ``log_path`` is empty logs to ``log_path(job, replica)``."""
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        argv = list(spec.argv)
        if not argv:
            raise InvalidInput("the job has an empty command", field="command")
        if not spec.replicas:
            raise InvalidInput("a gang needs at least one replica placement", field="placement")
        placement = sorted(spec.replicas, key=lambda r: r.replica)
        by_name = {n.node.name: n for n in self.ray_nodes()}
        for i, rp in enumerate(placement):
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
            for i, rp in enumerate(placement):
                name = f"{self._actor_prefix(spec.job_id)}{token}/{i}"
                remote_log = f"{self.remote_log_dir}/{spec.job_id}/{token}/replica-{i}.log"
                remote_run = f"{self.remote_log_dir}/{spec.job_id}/{token}/run-{i}"
                actor = runner_cls.options(
                    name=name,
                    namespace=self.namespace,
                    lifetime="detached",
                    num_cpus=0,
                    **_device_request(by_name[rp.node], rp),
                    max_restarts=0,
                    max_task_retries=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(
                        by_name[rp.node].node_id, soft=False
                    ),
                ).remote(remote_log, remote_run)
                local_log = Path(rp.log_path) if rp.log_path else self.log_path(spec.job_id, i)
                private_dir(local_log.parent)
                gpus = ",".join(str(g) for g in rp.gpu_indices) or "none"
                header = f"--- mosu: attempt {spec.attempt}, node {rp.node}, GPUs {gpus} ---\n"
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                fd = os.open(local_log, flags, 0o600)
                try:
                    os.write(fd, header.encode())
                    base = os.fstat(fd).st_size
                finally:
                    os.close(fd)
                replica = _Replica(i, rp.node, by_name[rp.node].node_id, actor, name, local_log)
                replica.log_base = base
                replicas.append(replica)
            infos = self._get_each(
                replicas, [r.actor.ready.remote() for r in replicas], self.start_timeout_s
            )
            for r, info in zip(replicas, infos, strict=True):
                if info["node_id"] != r.node_id:
                    raise GangStartError(f"replica {r.index} landed on the wrong Ray node")
                self.sandboxes[r.node_id] = str(info["sandbox"])
            gang.master_addr = by_name[replicas[0].node].address
            gang.master_port = ray.get(
                replicas[0].actor.free_port.remote(), timeout=self.call_timeout_s
            )
            contracts = gang_contracts(
                instance=self.instance,
                job_id=spec.job_id,
                attempt=spec.attempt,
                slots=[
                    ReplicaSlot(
                        r.index,
                        r.node,
                        tuple(rp.gpu_indices),
                        rp.gpu_milli,
                        by_name[r.node].vendor.value,
                    )
                    for r, rp in zip(replicas, placement, strict=True)
                ],
                master_addr=gang.master_addr,
                master_port=gang.master_port,
            )
            starts = []
            for r, contract in zip(replicas, contracts, strict=True):
                starts.append(
                    r.actor.start.remote(
                        argv,
                        dict(spec.env),
                        spec.workdir,
                        contract.to_json(),
                        spec.tenant,
                        {"path": str(r.log_path), "base": r.log_base},
                    )
                )
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
                if isinstance(cause, SupervisorStartError):
                    requeue = cause.requeue  # a node's sandbox failed, or the command
                else:
                    requeue = not isinstance(exc, OSError) and not isinstance(cause, OSError)
                raise GangStartError(
                    f"replica {r.index} on {r.node} did not start: {_describe(exc)}",
                    requeue=requeue,
                ) from None
        return values

    def runner_names(self, job_id: int) -> list[str]:
        """Names of the job's runners that Ray still knows (detached actors outlive us)."""
        ray = _ray()
        self.connect()
        prefix = self._actor_prefix(job_id)
        return sorted(
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == self.namespace and a["name"].startswith(prefix)
        )

    def stop_runners(self, job_id: int, grace_s: float) -> int:
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

    def remove_runners_except(self, job_ids: set[int]) -> int:
        """Kill every runner of this namespace whose job is not in ``job_ids`` (left by a
        controller that recorded their end but stopped before removing them, or by one
        that died); returns how many. Runners hold their replica's devices in Ray, so
        such leftovers would keep new gangs off those devices."""
        ray = _ray()
        removed = 0
        for job_id, names in self.runners().items():
            if job_id in job_ids:
                continue
            for name in names:
                with contextlib.suppress(Exception):
                    ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=True)
                    removed += 1
        return removed

    def _kill_stale(self, job_id: int) -> None:
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
            code, chunk, *more = ray.get(ref)  # a runner started before checkpoints: two
        except Exception as exc:
            r.final = ReplicaStatus(
                r.index, r.node, ReplicaState.LOST, None, f"runner lost: {_describe(exc)}"
            )
            return
        self._append(r, chunk)
        if more and isinstance(more[0], dict):
            r.checkpoint = more[0]
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
        if not self.keep_ended_runners:
            with contextlib.suppress(Exception):
                ray.kill(r.actor, no_restart=True)

    def release(self, gang: RayGang) -> None:
        """Remove the gang's runners (once its end has been recorded where it matters)."""
        ray = _ray()
        for r in gang.replicas:
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

    def request_checkpoint(self, gang: RayGang, signal_number: int) -> bool:
        """Ask every running replica for a checkpoint (its supervisor sends the signal);
        returns at once, False when none runs. The answer comes with ``poll``."""
        ray = _ray()
        live = [r for r in gang.replicas if r.final is None]
        if gang.stopping or not live:
            return False
        request_id = time.time_ns()
        refs = [r.actor.request_checkpoint.remote(signal_number, request_id) for r in live]
        ray.wait(refs, num_returns=len(refs), timeout=min(self.call_timeout_s, 1.0))
        return True

    @staticmethod
    def checkpoint(gang: RayGang, attempt: int) -> CheckpointReport:
        """The gang's checkpoint from what its replicas' supervisors last reported."""
        found = gang_checkpoint([r.checkpoint for r in gang.replicas])
        return CheckpointReport(
            attempt=attempt, at=found.at, requested=found.requested, answered=found.answered
        )

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
        if not self.keep_ended_runners:
            self.release(gang)
        return [self._status(r) for r in gang.replicas]

    # -- after a controller failover ------------------------------------------------------

    def runners(self) -> dict[int, list[str]]:
        """Every runner of this namespace that Ray still knows, by job id."""
        ray = _ray()
        self.connect()
        out: dict[int, list[str]] = {}
        for a in ray.util.list_named_actors(all_namespaces=True):
            name = a["name"]
            job = name.split("/")[1] if name.startswith("mosu/") else ""
            if a["namespace"] == self.namespace and job.isdigit():
                out.setdefault(int(job), []).append(name)
        return {k: sorted(v) for k, v in out.items()}

    def reattach(
        self, job_id: int, attempt: int, num_replicas: int, log_paths: Sequence[Path]
    ) -> RayGang | None:
        """The gang of ``job_id``'s ``attempt`` from the runners a previous controller
        started, if every one of them is still there and answers; None otherwise."""
        ray = _ray()
        prefix = f"{self._actor_prefix(job_id)}{attempt}-"
        names = [n for n in self.runner_names(job_id) if n.startswith(prefix)]
        tokens = sorted({n.split("/")[2] for n in names})
        if len(tokens) != 1:
            return None
        wanted = [f"{prefix}{tokens[0].split('-', 1)[1]}/{i}" for i in range(num_replicas)]
        if sorted(wanted) != sorted(names):
            return None
        nodes = {n.node_id: n.node.name for n in self.ray_nodes() if n.alive}
        replicas: list[_Replica] = []
        try:
            actors = [ray.get_actor(n, namespace=self.namespace) for n in wanted]
            answers = ray.get(
                [a.ready.remote() for a in actors] + [a.info.remote() for a in actors],
                timeout=self.call_timeout_s,
            )
        except Exception:
            return None
        ready, info = answers[:num_replicas], answers[num_replicas:]
        for i, (actor, name, r, inf) in enumerate(zip(actors, wanted, ready, info, strict=True)):
            if r["node_id"] not in nodes:
                return None
            local_log = log_paths[i] if log_paths else self.log_path(job_id, i)
            replicas.append(
                _Replica(
                    i,
                    nodes[r["node_id"]],
                    r["node_id"],
                    actor,
                    name,
                    local_log,
                    pid=int(inf["pid"]),
                    log_offset=_copied(local_log, inf),
                )
            )
            self.sandboxes[r["node_id"]] = str(r["sandbox"])
        return RayGang(job_id=job_id, master_addr="", master_port=0, replicas=replicas)

    def node_sandboxes(self) -> dict[str, str]:
        """Ray node id → sandbox mode, probing (once, without waiting) nodes no runner
        has reported yet."""
        ray = _ray()
        if self._probes:
            done, _ = ray.wait(
                list(self._probes.values()), num_returns=len(self._probes), timeout=0
            )
            for node_id, ref in list(self._probes.items()):
                if ref in done:
                    with contextlib.suppress(Exception):
                        self.sandboxes[node_id] = str(ray.get(ref))
                    del self._probes[node_id]
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        for n in self.ray_nodes():
            if n.alive and n.node_id not in self.sandboxes and n.node_id not in self._probes:
                task = ray.remote(_probe_sandbox).options(
                    num_cpus=0,
                    max_retries=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False),
                )
                self._probes[n.node_id] = task.remote(self.remote_log_dir)
        return dict(self.sandboxes)


# ---------------------------------------------------------------------------------------
# The platform's executor


@dataclass(slots=True)
class _Attempt:
    attempt: int
    gang: RayGang


class RayExecutor:
    """The scheduling loop's executor on a Ray cluster (``mosu up --executor ray``).

    ``stop`` and ``poll`` never wait for a replica: stops are escalated by the supervisors
    themselves and ``poll`` asks the cluster at most every ``poll_every_s``. A gang lives
    and dies together: when one replica fails or is lost the others get SIGTERM. An
    attempt with a lost replica is reported with ``lost=True`` so the job is requeued.
    A runner is removed only after its attempt's end was handed to the loop, so a new
    controller after a failover re-attaches to every gang still there (``adopt``).
    """

    sandbox = "per-node"
    capabilities = frozenset({Capability.DISCOVERS_NODES, Capability.CHECKPOINTS})

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
            instance=instance,
        )
        self.gangs.keep_ended_runners = True
        self._failure_grace_s = failure_grace_s
        self._poll_every_s = poll_every_s
        self._clock = clock
        self._last_poll = -float("inf")
        self._jobs: dict[int, _Attempt] = {}
        self._handed_out: list[RayGang] = []
        self._pending: list[JobExit] = []

    def cluster_nodes(self) -> list[NodeReport]:
        """The Ray cluster as mosu nodes (dead ones ``down``) with their sandboxes, for
        the store to mirror."""
        sandboxes = self.gangs.node_sandboxes()
        return [
            NodeReport(node=n.node, sandbox=sandboxes.get(n.node_id), vendor=n.vendor)
            for n in self.gangs.ray_nodes()
        ]

    def start(self, launch: JobLaunch) -> dict[int, ReplicaStarted]:
        # Runners hold their devices in Ray until removed: those of attempts whose end is
        # recorded go first (and any a previous controller left), or a new gang on the
        # same devices would wait for them.
        self._release_handed_out()
        self.gangs.remove_runners_except(set(self._jobs))
        gang = self.gangs.start(launch)
        self._jobs[launch.job_id] = _Attempt(launch.attempt, gang)
        return {r.index: ReplicaStarted(pid=r.pid, supervisor=r.actor_name) for r in gang.replicas}

    def poll(self) -> list[JobExit]:
        self._release_handed_out()
        exits, self._pending = self._pending, []
        now = self._clock()
        if not self._jobs or now - self._last_poll < self._poll_every_s:
            return exits
        self._last_poll = now
        ids = sorted(self._jobs)
        attempts = [self._jobs[i] for i in ids]
        all_statuses = self.gangs.poll_many([a.gang for a in attempts], wait_s=1.0)
        for job_id, att, statuses in zip(ids, attempts, all_statuses, strict=True):
            broken = any(s.state in (ReplicaState.FAILED, ReplicaState.LOST) for s in statuses)
            if broken and not att.gang.stopping and not att.gang.ended:
                self.gangs.signal_stop(att.gang, grace_s=self._failure_grace_s)
            if att.gang.ended:
                del self._jobs[job_id]
                report = _exit_report(job_id, att.attempt, statuses)
                checkpoint = RayGangs.checkpoint(att.gang, att.attempt)
                if checkpoint.at is not None or checkpoint.requested:
                    report.checkpoint = checkpoint
                exits.append(report)
                self._handed_out.append(att.gang)
        return exits

    def checkpoints(self) -> dict[int, CheckpointReport]:
        """As of the last poll of each gang (at most ``poll_every_s`` old)."""
        return {j: RayGangs.checkpoint(a.gang, a.attempt) for j, a in self._jobs.items()}

    def request_checkpoint(self, job_id: int, signal: str) -> bool:
        att = self._jobs.get(job_id)
        if att is None:
            return False
        return self.gangs.request_checkpoint(att.gang, int(_signal_number(signal)))

    def _release_handed_out(self) -> None:
        # Ends handed out by the previous poll are recorded by now: their runners may go.
        for gang in self._handed_out:
            self.gangs.release(gang)
        self._handed_out = []

    def stop(self, job_id: int, grace_s: float) -> None:
        att = self._jobs.get(job_id)
        if att is not None and not att.gang.stopping:
            self.gangs.signal_stop(att.gang, grace_s=grace_s)

    def adopt(self, attempts: Sequence[AttemptRecord]) -> Adoption:
        """Re-attach to the runners of every attempt the store says runs. An attempt with
        no runner at all never started (the controller died first) and is left to the
        caller; a gang with a runner missing is stopped and reported lost; runners of
        anything else in this store's namespace (ended attempts whose end was recorded)
        are removed."""
        found = Adoption(running={}, unstarted=[])
        keep: set[int] = set()
        runners = self.gangs.runners()
        for rec in attempts:
            job = rec.job_id
            keep.add(job)
            if rec.job_id in self._jobs:
                continue
            prefix = f"mosu/{job}/{rec.attempt}-"
            if not any(n.startswith(prefix) for n in runners.get(job, [])):
                found.unstarted.append(rec.job_id)
                continue
            logs = [Path(r.log_path) for r in sorted(rec.replicas, key=lambda r: r.replica)]
            gang = self.gangs.reattach(job, rec.attempt, len(rec.replicas), logs)
            if gang is None:
                left = self.gangs.stop_runners(job, grace_s=self._failure_grace_s)
                self._pending.append(
                    JobExit(
                        job_id=rec.job_id,
                        attempt=rec.attempt,
                        exit_code=None,
                        message=f"{len(rec.replicas) - left} of its runners were gone",
                        lost=True,
                    )
                )
                continue
            self._jobs[rec.job_id] = _Attempt(rec.attempt, gang)
            found.running[rec.job_id] = {
                r.index: ReplicaStarted(pid=r.pid, supervisor=r.actor_name) for r in gang.replicas
            }
        for job in runners:
            if job not in keep:
                self.gangs.stop_runners(job, grace_s=0.0)
        return found

    def detach(self) -> None:
        """Forget every gang; runners and replicas keep running for the next controller."""
        for gang in self._handed_out:
            self.gangs.release(gang)
        self._handed_out = []
        self._jobs.clear()

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
        return JobExit(
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
        return JobExit(job_id=job_id, attempt=attempt, exit_code=0)
    first = failed[0]
    code = first.exit_code if first.exit_code is not None and first.exit_code > 0 else None
    return JobExit(
        job_id=job_id,
        attempt=attempt,
        exit_code=code,
        message=f"replica {first.replica} on {first.node}: {first.message}",
    )


def _signal_number(name: str) -> signal.Signals:
    return signal.Signals[name]


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
