"""The executor contract, declared once: what the scheduling loop asks of whatever runs
replicas (local processes under supervisors, runner actors on a Ray cluster).

The service depends on this module only, so executors are plugged in by whoever builds
the server and the service never imports them. What an executor can do beyond the
protocol it declares in ``capabilities`` (a ``Capability`` each, with the protocol that
comes with it); the service asks the declaration, never looks for a method.

Implementations: ``agent/executors/local.py`` (processes on this machine),
``ray_executor.py`` (a Ray cluster; ``DISCOVERS_NODES``), ``simulated.py`` (no process;
``DISCOVERS_NODES``).

Nomenclature: an *attempt* is one run of a job (its ``attempt`` counter); a *replica*
is one process tree of an attempt on one node; a replica's *supervisor* is what owns
that tree on its node and outlives the server (a supervisor process, or a Ray runner
actor); its *handle* is the text an executor needs to find the supervisor again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import Field

from mosu.core.accelerators import Vendor
from mosu.core.api import CheckpointReport, JobExit, JobLaunch, OutputModel
from mosu.core.errors import PlatformError
from mosu.core.models import Node


class ReplicaStarted(OutputModel):
    """A replica that runs: its main process id on its node and its supervisor's handle."""

    pid: int
    supervisor: str


class ReplicaRecord(OutputModel):
    """What the store remembers of a running replica, for a new server to adopt it."""

    replica: int
    node: str
    run_dir: str | None = None
    """Where its supervisor keeps its lock, handle and exit record (local executor)."""
    supervisor: str | None = None
    """The handle ``start`` returned; None if the server died before recording it."""
    pid: int | None = None
    log_path: str = ""
    """This server's log file of the replica (where output copied from a node goes)."""


class AttemptRecord(OutputModel):
    """An attempt the store says is starting or running."""

    job_id: int
    attempt: int
    tenant: str
    replicas: list[ReplicaRecord]


class Adoption(OutputModel):
    """What a new server found of the attempts the store says run."""

    running: dict[int, dict[int, ReplicaStarted]] = Field(default_factory=dict)
    """Job id → replica → what runs, for attempts watched again from now on."""
    unstarted: list[int] = Field(default_factory=list)
    """Jobs whose attempt never started anything (the server died first): start them."""


class LaunchError(PlatformError):
    """An attempt could not start; nothing of it is left running.

    ``requeue`` is True when the placement was at fault (a node went away or refused the
    replica), so the job waits for another placement; False when the job itself cannot
    start (its command or working directory does not exist), so it fails.
    """

    code = "launch"
    status = 409

    def __init__(self, message: str, *, requeue: bool = False) -> None:
        super().__init__(message)
        self.requeue = requeue


@dataclass(frozen=True, slots=True)
class NodeReport:
    """A node an executor found, and the sandbox its replicas run in there (None while
    not known yet)."""

    node: Node
    sandbox: str | None = None
    vendor: Vendor | None = None
    """Who makes the node's GPUs, where the executor knows (Ray's ``NPU`` resource is
    Huawei's); None: the vendor of the GPU type in the table of known models."""


class Capability(StrEnum):
    """What an executor may do beyond ``Executor``, declared in its ``capabilities``."""

    DISCOVERS_NODES = "discovers-nodes"
    """It knows the cluster's nodes (``DiscoversNodes.cluster_nodes``): the store mirrors
    them instead of nodes being registered (Ray, the simulated cluster)."""
    CHECKPOINTS = "checkpoints"
    """Its replicas report the checkpoints they save (``MOSU_CHECKPOINT_FILE``) and can be
    asked for one by a signal (``ReportsCheckpoints``): a preemption then asks first."""


@runtime_checkable
class Executor(Protocol):
    """Runs attempts. Every method returns promptly; exits are reported by ``poll``.

    A replica's supervisor outlives the server: a server that stops (or dies) leaves its
    replicas running, and the next server ``adopt``s them.
    """

    capabilities: frozenset[Capability]
    """What else it does, each with its protocol (``Capability``); empty for none."""

    @property
    def sandbox(self) -> str:
        """How replicas run: ``users`` (a Unix user per tenant), ``bwrap`` (a user and
        mount namespace), ``none`` (as the server's user), or ``per-node``."""
        ...

    def start(self, launch: JobLaunch) -> dict[int, ReplicaStarted]:
        """Launch every replica; return replica → what runs. Raises ``LaunchError`` (or
        ``OSError``) if one cannot start; the others are stopped first."""
        ...

    def poll(self) -> list[JobExit]:
        """Attempts whose processes have all exited since the last poll (each once)."""
        ...

    def stop(self, job_id: int, grace_s: float) -> None:
        """SIGTERM now, SIGKILL after ``grace_s``; the exit is reported by ``poll``."""
        ...

    def adopt(self, attempts: Sequence[AttemptRecord]) -> Adoption:
        """Take over attempts a previous server started (called once, before anything
        starts). Live replicas are watched again; exits that happened meanwhile and
        replicas that died without an exit record (``lost``) are reported by ``poll``;
        an attempt none of whose replicas ever started is left to the caller to start.
        Anything the executor runs for this store but not in ``attempts`` is stopped."""
        ...

    def detach(self) -> None:
        """Stop watching without touching what runs (a graceful server stop)."""
        ...

    def shutdown(self, grace_s: float) -> None:
        """Stop every attempt and wait (at most ``grace_s`` plus a moment) until gone."""
        ...


@runtime_checkable
class DiscoversNodes(Protocol):
    """``Capability.DISCOVERS_NODES``: the executor knows the cluster's nodes."""

    def cluster_nodes(self) -> list[NodeReport]: ...


@runtime_checkable
class ReportsCheckpoints(Protocol):
    """``Capability.CHECKPOINTS``: replicas report checkpoints and can be asked for one."""

    def checkpoints(self) -> dict[int, CheckpointReport]:
        """Job id → the checkpoints its running attempt reported, for every attempt
        watched; an attempt's last word is also in its ``JobExit.checkpoint``."""
        ...

    def request_checkpoint(self, job_id: int, signal: str) -> bool:
        """Deliver ``signal`` (``SIGUSR1``) to every replica of the job's attempt, asking
        for a checkpoint; False when there is no running attempt to ask. Returns at once:
        the answer shows in ``checkpoints``."""
        ...


def checkpoint_source(executor: Executor) -> ReportsCheckpoints | None:
    """The executor as the one that reports checkpoints, if it declares it is one."""
    if Capability.CHECKPOINTS not in executor.capabilities:
        return None
    if not isinstance(executor, ReportsCheckpoints):
        name = type(executor).__name__
        raise TypeError(f"{name} declares {Capability.CHECKPOINTS} but cannot report checkpoints")
    return executor


def node_source(executor: Executor) -> DiscoversNodes | None:
    """The executor as the source of the cluster's nodes, if it declares it is one."""
    if Capability.DISCOVERS_NODES not in executor.capabilities:
        return None
    if not isinstance(executor, DiscoversNodes):
        name = type(executor).__name__
        raise TypeError(f"{name} declares {Capability.DISCOVERS_NODES} but has no cluster_nodes")
    return executor


__all__ = [
    "Adoption",
    "AttemptRecord",
    "Capability",
    "CheckpointReport",
    "DiscoversNodes",
    "Executor",
    "JobExit",
    "JobLaunch",
    "LaunchError",
    "NodeReport",
    "ReplicaRecord",
    "ReplicaStarted",
    "ReportsCheckpoints",
    "checkpoint_source",
    "node_source",
]
