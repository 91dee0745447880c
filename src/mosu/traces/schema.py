"""The one job record every trace loader produces.

Units live in field names. ``duration_s`` is the true run time, known to the
simulator only; the engine sees ``estimate_s`` (the user's estimate) or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mosu.core.models import Job, JobKind, NodeState, Quota, Shape, Topology


class Ended(StrEnum):
    """How a job of a platform's history ended (or had not, when it was exported)."""

    EXIT = "exit"
    """Its processes ended by themselves (exit code 0 or not)."""
    CANCELLED = "cancelled"
    MAX_RUNTIME = "max-runtime"
    """Stopped by the platform after its ``max_runtime``."""
    RUNNING = "running"
    """Still starting or running: its run time is what it had run so far."""
    PENDING = "pending"
    """Still waiting (never started, or requeued after a preemption)."""


@dataclass(frozen=True, slots=True)
class JobHistory:
    """What really happened to a job on the platform, carried by an exported history.

    ``start_s`` is its first start on the trace's clock (None if it never started);
    ``attempts_s`` the run time of each attempt, in order (a preempted attempt
    included)."""

    ended: Ended
    start_s: float | None = None
    attempts_s: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class TraceJob:
    id: str
    tenant: str
    submit_s: float
    duration_s: float | None
    shape: Shape
    replicas: int = 1
    gpu_types: tuple[str, ...] = ()
    priority: int = 0
    kind: JobKind = JobKind.TRAIN
    estimate_s: float | None = None
    topology: Topology = Topology.NONE
    checkpoint_every_s: float | None = None
    """Seconds between the job's own checkpoints, if it declares them; a replay
    uses its default for a job that does not."""
    history: JobHistory | None = None
    """Set only for a job exported from a platform's own history."""

    def to_job(self, *, checkpoint_every_s: float | None = None) -> Job:
        """The engine's view: everything but the true duration."""
        return Job(
            id=self.id,
            tenant=self.tenant,
            shape=self.shape,
            replicas=self.replicas,
            gpu_types=self.gpu_types,
            topology=self.topology,
            priority=self.priority,
            submit_s=self.submit_s,
            estimate_s=self.estimate_s,
            checkpoint_every_s=checkpoint_every_s,
            kind=self.kind,
        )


class ChangeKind(StrEnum):
    """What a timed change of a history changes (``traces.native`` changes file)."""

    QUOTA = "quota"
    """A tenant's quota for one GPU type: its guarantee and limit."""
    WEIGHT = "weight"
    """A tenant's fair-share weight."""
    COHORT = "cohort"
    """A tenant's cohort (None: the default cohort)."""
    NODE = "node"
    """A node's state: ``ready`` (added, or back), ``draining`` (cordoned: what runs
    there goes on, nothing new starts) or ``down`` (gone: what ran there is requeued)."""


@dataclass(frozen=True, slots=True)
class TimedChange:
    """A change of the configuration at ``time_s`` on the trace's clock, in force from
    then on: what an exported history carries of quota and node changes made during
    its window. ``subject`` is the tenant or node; the field of ``kind`` holds the new
    value."""

    time_s: float
    kind: ChangeKind
    subject: str
    gpu_type: str = ""
    quota: Quota | None = None
    weight: float | None = None
    cohort: str | None = None
    node_state: NodeState | None = None
