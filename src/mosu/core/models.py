"""Typed records of the engine's world: nodes, tenants, jobs and placements.

GPU amounts are integers in thousandths of a GPU ("milli") so that fractional
sharing is exact; one whole GPU is ``GPU_MILLI``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

GPU_MILLI = 1000
"""Thousandths in one whole GPU."""

ANY_GPU_TYPE = "*"
"""Quota key that covers every GPU type without a quota of its own."""


class Topology(StrEnum):
    """How close a gang's replicas must be."""

    NONE = "none"
    SAME_NODE = "same-node"
    SAME_RACK = "same-rack"


class NodeState(StrEnum):
    READY = "ready"
    DRAINING = "draining"
    DOWN = "down"


class JobKind(StrEnum):
    TRAIN = "train"
    FINETUNE = "finetune"
    EVAL = "eval"
    BATCH = "batch"
    INFERENCE = "inference"
    DEV = "dev"


@dataclass(frozen=True, slots=True)
class Node:
    """A machine. ``rack`` and ``zone`` come from its topology path zone/rack/node."""

    name: str
    gpu_type: str
    gpus: int
    cpu_milli: int
    mem_mib: int
    gpu_mem_mib: int = 0
    zone: str = "zone-0"
    rack: str = "rack-0"
    state: NodeState = NodeState.READY
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Shape:
    """What one replica needs.

    ``gpus`` is the number of GPU devices (0 for a CPU-only replica) and
    ``gpu_milli`` the share of each one; a share below ``GPU_MILLI`` is only
    valid with ``gpus == 1``.
    """

    gpus: int
    gpu_milli: int = GPU_MILLI
    cpu_milli: int = 0
    mem_mib: int = 0

    def __post_init__(self) -> None:
        if self.gpus < 0:
            raise ValueError(f"gpus must be >= 0, got {self.gpus}")
        if self.gpus == 0 and self.gpu_milli not in (0, GPU_MILLI):
            raise ValueError("a CPU-only shape cannot ask for a GPU share")
        if self.gpus > 0 and not 0 < self.gpu_milli <= GPU_MILLI:
            raise ValueError(f"gpu_milli must be in 1..{GPU_MILLI}, got {self.gpu_milli}")
        if self.gpus > 1 and self.gpu_milli != GPU_MILLI:
            raise ValueError("a fractional GPU share is only valid for one GPU")
        if self.cpu_milli < 0 or self.mem_mib < 0:
            raise ValueError("cpu_milli and mem_mib must be >= 0")

    @classmethod
    def of_gpus(cls, gpus: float, *, cpu_milli: int = 0, mem_mib: int = 0) -> Shape:
        """The shape of a replica that asks for ``gpus`` GPUs as a user writes them:
        ``0.5`` is half of one device, ``4`` four whole ones, ``0`` none."""
        if 0 < gpus < 1:
            return cls(1, round(gpus * GPU_MILLI), cpu_milli, mem_mib)
        return cls(int(gpus), GPU_MILLI if gpus else 0, cpu_milli, mem_mib)

    @property
    def requested_gpus(self) -> float:
        """GPUs per replica as a user writes them (``of_gpus`` backwards)."""
        return requested_gpus(self.gpus, self.gpu_milli)

    @property
    def total_gpu_milli(self) -> int:
        return self.gpus * self.gpu_milli if self.gpus else 0

    @property
    def fractional(self) -> bool:
        return self.gpus == 1 and self.gpu_milli < GPU_MILLI


def requested_gpus(gpus: int, gpu_milli: int) -> float:
    """GPUs per replica as a user writes them, from devices and the share of each (the
    store's two columns): ``(1, 500)`` is ``0.5``, ``(4, 1000)`` is ``4.0``."""
    if gpus == 1 and gpu_milli < GPU_MILLI:
        return gpu_milli / GPU_MILLI
    return float(gpus)


@dataclass(frozen=True, slots=True)
class Quota:
    """One tenant's promise for one GPU type, in GPU milli.

    ``limit_milli`` None means no cap beyond the cluster itself.
    """

    guaranteed_milli: int = 0
    limit_milli: int | None = None


@dataclass(frozen=True, slots=True)
class Tenant:
    """A resident company. ``quotas`` maps GPU type (or ``ANY_GPU_TYPE``) to its quota."""

    name: str
    quotas: tuple[tuple[str, Quota], ...] = ()
    weight: float = 1.0
    cohort: str | None = None

    def quota(self, gpu_type: str) -> Quota:
        fallback = Quota()
        for key, quota in self.quotas:
            if key == gpu_type:
                return quota
            if key == ANY_GPU_TYPE:
                fallback = quota
        return fallback


@dataclass(frozen=True, slots=True)
class Job:
    """The engine's view of a submitted job: a gang of ``replicas`` of one shape.

    ``estimate_s`` is what the user (or history) says the run takes; the engine
    never sees a true duration.
    """

    id: str
    tenant: str
    shape: Shape
    replicas: int = 1
    gpu_types: tuple[str, ...] = ()
    topology: Topology = Topology.NONE
    priority: int = 0
    submit_s: float = 0.0
    estimate_s: float | None = None
    checkpoint_every_s: float | None = None
    kind: JobKind = JobKind.TRAIN
    dims: tuple[int, int, int, int, int] = field(init=False, repr=False, compare=False)
    """(GPUs per replica, share of each, replicas, CPU and memory per replica): a job
    no smaller than another in each of these needs at least the same room. Kept on
    the job because a scheduling cycle compares sizes for many jobs."""

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        if self.replicas > 1 and self.shape.fractional:
            raise ValueError("a fractional GPU share is only valid for a single replica")
        shape = self.shape
        dims = (shape.gpus, shape.gpu_milli, self.replicas, shape.cpu_milli, shape.mem_mib)
        object.__setattr__(self, "dims", dims)

    @property
    def total_gpu_milli(self) -> int:
        return self.shape.total_gpu_milli * self.replicas

    def allows(self, gpu_type: str) -> bool:
        return not self.gpu_types or gpu_type in self.gpu_types


@dataclass(frozen=True, slots=True)
class ReplicaPlacement:
    """Where one replica runs: node, GPU indices, the share of each, CPU and memory."""

    node: str
    gpu_indices: tuple[int, ...]
    gpu_milli: int = GPU_MILLI
    cpu_milli: int = 0
    mem_mib: int = 0


Placement = tuple[ReplicaPlacement, ...]


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job holding an allocation.

    ``attained_gpu_s`` counts GPU-seconds served by earlier attempts, before
    ``started_s``; the engine adds the service of the current attempt itself.
    """

    job: Job
    placement: Placement
    started_s: float
    last_checkpoint_s: float | None = None
    attained_gpu_s: float = 0.0
    extra: tuple[tuple[str, float], ...] = field(default=())
