"""A job spec normalized once, where it enters the platform.

``JobSpec`` is what a client writes (``gpus: 0.5``, ``memory: 16Gi``, ``estimate: 2h``,
``priority: high``, a command as a string or a list). ``Submission`` is the same job in
the units everything after the API edge reads: the store's columns, the engine's
``Job``, the launch an executor gets. Sizes are a ``Shape`` (devices, the share of each
in thousandths, CPU in millicores, memory in MiB), durations are seconds, the priority
is its number and the command an argv. Nothing downstream converts a size or parses a
duration again; a job's size as its user wrote it is ``requested_gpus`` of the shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mosu.core.api import (
    DEFAULT_CHECKPOINT_GRACE_S,
    PRIORITY_CLASSES,
    JobSpec,
    argv_of,
    parse_duration_s,
    parse_memory_mib,
)
from mosu.core.models import JobKind, Shape, Topology


@dataclass(frozen=True, slots=True)
class Submission:
    """One job as the platform stores, schedules and launches it."""

    name: str
    kind: JobKind
    priority: int
    replicas: int
    gpus: float
    """GPUs per replica as the client wrote them, for messages; what the job holds is
    ``shape`` (``shape.requested_gpus`` is the same to a thousandth)."""
    shape: Shape
    """One replica's need, in thousandths of a GPU, millicores and MiB."""
    gpu_types: tuple[str, ...]
    topology: Topology
    estimate_s: float | None
    max_runtime_s: float | None
    checkpoint_every_s: float | None
    checkpoint_signal: str | None
    """The signal that asks it for a checkpoint before a preemption stops it (``SIGUSR1``)."""
    checkpoint_grace_s: float | None
    """How long such a stop waits for the checkpoint (set whenever ``checkpoint_signal`` is)."""
    argv: tuple[str, ...]
    env: dict[str, str] = field(repr=False)
    secrets: tuple[str, ...]
    workdir: str | None
    spec: dict[str, Any] = field(repr=False, compare=False)
    """The spec as the client wrote it, as JSON: stored with the job, shown back by the
    API, and what makes two submissions with one idempotency key the same."""

    @classmethod
    def of(cls, spec: JobSpec) -> Submission:
        """Normalize a validated spec (the one place its units are converted)."""
        priority = spec.priority
        types = spec.gpu_type
        return cls(
            name=spec.name,
            kind=spec.kind,
            priority=PRIORITY_CLASSES[priority] if isinstance(priority, str) else priority,
            replicas=spec.replicas,
            gpus=spec.gpus,
            shape=Shape.of_gpus(
                spec.gpus, cpu_milli=round(spec.cpu * 1000), mem_mib=parse_memory_mib(spec.memory)
            ),
            gpu_types=() if types is None else (types,) if isinstance(types, str) else tuple(types),
            topology=spec.topology,
            estimate_s=parse_duration_s(spec.estimate),
            max_runtime_s=parse_duration_s(spec.max_runtime),
            checkpoint_every_s=parse_duration_s(spec.checkpoint_every),
            checkpoint_signal=spec.checkpoint_signal,
            checkpoint_grace_s=(
                None
                if spec.checkpoint_signal is None
                else parse_duration_s(spec.checkpoint_grace) or DEFAULT_CHECKPOINT_GRACE_S
            ),
            argv=tuple(argv_of(spec.command)),
            env=dict(spec.env),
            secrets=tuple(spec.secrets),
            workdir=spec.workdir,
            spec=spec.model_dump(mode="json"),
        )

    @property
    def total_gpu_milli(self) -> int:
        return self.shape.total_gpu_milli * self.replicas


__all__ = ["Submission"]
