"""The task mix a fragmentation-aware policy expects to arrive: given up front (the
fill experiment), or learned from the jobs a scheduler sees (``RecentMix``)."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mosu.core.models import Job, RunningJob, Shape


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


LEARN_WINDOW = 2_000
"""Jobs a learned mix remembers: the most recent distinct jobs seen."""
RELEARN_SHARE = 0.1
"""A learned mix is handed on again once this share of its window has turned over
(or at once when a task type never seen before arrives): the mix moves slowly, and
each hand-over re-tabulates the policy's fragmentation table."""


class RecentMix:
    """The task mix of the jobs a scheduler saw most recently: each distinct job once,
    counted by its replicas, over the last ``window`` jobs."""

    def __init__(self, window: int = LEARN_WINDOW) -> None:
        self.window = window
        self._seen: OrderedDict[str, tuple[TaskType, int]] = OrderedDict()
        self._counts: Counter[TaskType] = Counter()
        self._turned = 0
        self._new_type = False

    def observe(self, jobs: Iterable[Job]) -> bool:
        """Remember ``jobs``; True when the mix moved enough to be handed on."""
        jobs = list(jobs)
        # More jobs than the window: most are new, and one step beats one per job.
        if len(jobs) <= self.window or not self._observe_many(jobs):
            self._observe_each(jobs)
        if self._new_type or self._turned >= max(1.0, RELEARN_SHARE * len(self._seen)):
            self._new_type = False
            self._turned = 0
            return True
        return False

    def _observe_each(self, jobs: Iterable[Job]) -> None:
        seen, counts = self._seen, self._counts
        for job in jobs:
            if job.id in seen:
                continue
            task = TaskType.of(job.shape, job.gpu_types)
            seen[job.id] = (task, job.replicas)
            if task not in counts:
                self._new_type = True
            counts[task] += job.replicas
            self._turned += 1
            if len(seen) > self.window:
                _, (old, n) = seen.popitem(last=False)
                counts[old] -= n
                if counts[old] <= 0:
                    del counts[old]

    def _observe_many(self, jobs: list[Job]) -> bool:
        """``_observe_each`` when enough jobs are new that the mix is handed on anyway
        (so which types were new does not matter), without a step per job: only the
        ``window`` most recent additions are kept. False, changing nothing, otherwise
        (or when an id repeats, which the one-by-one walk alone gets right)."""
        seen, window = self._seen, self.window
        ids = [job.id for job in jobs]
        if len(set(ids)) != len(ids):
            return False
        # An id already seen is skipped unless additions before it evicted it first
        # (oldest first); every other job is an addition.
        old = {job_id: k for k, job_id in enumerate(seen)}
        kept = len(seen)
        skipped: set[int] = set()
        for k in [k for k, job_id in enumerate(ids) if job_id in old]:
            if old[ids[k]] >= kept + (k - len(skipped)) - window:
                skipped.add(k)
        added = len(ids) - len(skipped)
        after = min(window, kept + added)
        if not added or self._turned + added < max(1.0, RELEARN_SHARE * after):
            return False
        # The window after: the additions' tail, behind what is left of the old window.
        tail: list[Job] = []
        for k in range(len(jobs) - 1, -1, -1):
            if len(tail) == window:
                break
            if k not in skipped:
                tail.append(jobs[k])
        tail.reverse()
        left = after - len(tail)
        survivors = list(seen.items())[len(seen) - left :] if left else []
        seen.clear()
        seen.update(survivors)
        for job in tail:
            seen[job.id] = (TaskType.of(job.shape, job.gpu_types), job.replicas)
        counts: Counter[TaskType] = Counter()
        for task, n in seen.values():
            counts[task] += n
        self._counts = counts
        self._turned += added
        return True

    def observe_cycle(self, pending: Sequence[Job], running: Sequence[RunningJob]) -> bool:
        """``observe`` a cycle's jobs: the pending ones, and the running ones only while
        nothing has been seen yet (a scheduler started with work running). Every
        other job was pending, and seen, before it ran; reading the running ones every
        cycle would cost a lookup per running job for nothing."""
        if not self._seen and running:
            self.observe(run.job for run in running)
        return self.observe(pending)

    def mix(self) -> TaskMix:
        return TaskMix(tuple(sorted(self._counts.items())))
