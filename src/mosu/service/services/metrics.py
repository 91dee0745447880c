"""The store's side of ``/metrics``: read at scrape time, a few grouped counts."""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mosu.core.api import JobState
from mosu.core.models import GPU_MILLI
from mosu.service.db.rows import AllocationRow, JobRow, NodeRow

UNSCHEDULED = "unscheduled"
"""Pending reason of a job no scheduling cycle has looked at yet."""


def store_metrics(session: Session) -> list[GaugeMetricFamily]:
    by_state = dict.fromkeys((s.value for s in JobState), 0)
    for state, n in session.execute(select(JobRow.state, func.count()).group_by(JobRow.state)):
        by_state[state] = n
    pending = session.execute(
        select(JobRow.pending_reason, func.count())
        .where(JobRow.state == JobState.PENDING.value)
        .group_by(JobRow.pending_reason)
    )
    by_reason: dict[str, int] = defaultdict(int)
    for reason, n in pending:
        by_reason[reason or UNSCHEDULED] += n
    allocated: dict[tuple[str, str], float] = defaultdict(float)
    active = select(AllocationRow).where(AllocationRow.released_at.is_(None))
    for a in session.scalars(active):
        devices = len(a.gpu_indices.split(",")) if a.gpu_indices else 0
        allocated[(a.tenant, a.gpu_type)] += devices * a.gpu_milli / GPU_MILLI
    capacity: dict[tuple[str, str], int] = defaultdict(int)
    for gpu_type, state, gpus in session.execute(
        select(NodeRow.gpu_type, NodeRow.state, func.sum(NodeRow.gpus)).group_by(
            NodeRow.gpu_type, NodeRow.state
        )
    ):
        capacity[(gpu_type, state)] += int(gpus or 0)
    depth = session.execute(
        select(JobRow.tenant, func.count())
        .where(JobRow.state == JobState.PENDING.value)
        .group_by(JobRow.tenant)
    )
    return [
        _gauge(
            "mosu_jobs",
            "Jobs in the store by state.",
            ["state"],
            [((s,), n) for s, n in sorted(by_state.items())],
        ),
        _gauge(
            "mosu_jobs_pending",
            "Pending jobs by the reason the last scheduling cycle gave.",
            ["reason"],
            [((r,), n) for r, n in sorted(by_reason.items())],
        ),
        _gauge(
            "mosu_queue_depth",
            "Pending jobs by tenant.",
            ["tenant"],
            [((t,), n) for t, n in sorted(depth)],
        ),
        _gauge(
            "mosu_gpus_allocated",
            "GPUs held by running or starting jobs, by tenant and GPU type.",
            ["tenant", "gpu_type"],
            [((t, g), v) for (t, g), v in sorted(allocated.items())],
        ),
        _gauge(
            "mosu_gpus",
            "GPUs registered, by GPU type and node state.",
            ["gpu_type", "node_state"],
            [((g, s), n) for (g, s), n in sorted(capacity.items())],
        ),
    ]


def _gauge(
    name: str, help_text: str, labels: list[str], samples: list[tuple[tuple[str, ...], float]]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family
