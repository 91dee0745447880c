"""The task mix a fragmentation-aware policy expects to arrive."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from mosu.core.models import Shape


@dataclass(frozen=True, slots=True, order=True)
class TaskType:
    """One kind of task (replica) in the mix: its request and the GPU types it accepts."""

    cpu_milli: int
    mem_mib: int
    gpus: int
    gpu_milli: int
    gpu_types: tuple[str, ...] = ()

    @property
    def total_gpu_milli(self) -> int:
        return self.gpus * self.gpu_milli

    @classmethod
    def of(cls, shape: Shape, gpu_types: Iterable[str] = ()) -> TaskType:
        return cls(
            cpu_milli=shape.cpu_milli,
            mem_mib=shape.mem_mib,
            gpus=shape.gpus,
            gpu_milli=shape.gpu_milli if shape.gpus else 0,
            gpu_types=tuple(gpu_types),
        )


@dataclass(frozen=True, slots=True)
class TaskMix:
    """How many tasks of each type are expected: raw counts, in a canonical order."""

    counts: tuple[tuple[TaskType, int], ...] = ()

    @classmethod
    def observe(cls, tasks: Iterable[tuple[Shape, Iterable[str]]]) -> TaskMix:
        """The mix of ``(shape, gpu_types)`` pairs, one per task."""
        counter = Counter(TaskType.of(shape, types) for shape, types in tasks)
        return cls(tuple(sorted(counter.items())))

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)

    def popular(self, coverage: float = 0.95) -> list[tuple[TaskType, float]]:
        """The most frequent types (by count) that together cover ``coverage`` of all
        tasks, with frequencies renormalised to sum to 1. Ties in count are broken by
        the larger request first, so the cut is deterministic."""
        total = self.total
        if not total:
            return []
        ranked = sorted(
            self.counts,
            key=lambda tc: (tc[1], tc[0].cpu_milli, tc[0].gpu_milli, tc[0].gpus, tc[0].gpu_types),
            reverse=True,
        )
        chosen: list[tuple[TaskType, int]] = []
        covered = 0
        for task, n in ranked:
            if covered >= coverage * total:
                break
            chosen.append((task, n))
            covered += n
        return [(task, n / covered) for task, n in chosen]

    def by_count(self) -> list[tuple[TaskType, float]]:
        """Every type weighted by its share of the tasks."""
        total = self.total
        return [(t, n / total) for t, n in self.counts] if total else []

    def by_demand(self) -> list[tuple[TaskType, float]]:
        """Every type weighted by its share of the GPU demand (count x GPUs asked).

        CPU-only tasks ask no GPU, so they get no weight here."""
        demand = {t: n * t.total_gpu_milli for t, n in self.counts if t.total_gpu_milli}
        total = sum(demand.values())
        return [(t, d / total) for t, d in sorted(demand.items())] if total else []
