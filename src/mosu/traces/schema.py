"""The one job record every trace loader produces.

Units live in field names. ``duration_s`` is the true run time, known to the
simulator only; the engine sees ``estimate_s`` (the user's estimate) or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from mosu.core.models import Job, JobKind, Shape, Topology


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
