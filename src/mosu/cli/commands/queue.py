"""``mosu queue``: pending jobs in scheduling order, with reason and estimated start
(likely start and late bound)."""

from __future__ import annotations

from mosu.cli import config
from mosu.cli.render import Output, OutputOpt, emit, gpus, start_range, table


def queue(output: OutputOpt = Output.TABLE) -> None:
    """Pending jobs with their position, why they wait and when they may start."""
    with config.client() as c:
        entries = c.queue()
    rows = [
        (
            e.position if e.position is not None else "-",
            e.job_id,
            e.tenant,
            e.name,
            f"{e.replicas}x{gpus(e.gpus)}",
            e.reason or "new",
            start_range(e.estimated_start, e.estimated_start_late, known=e.reason is not None),
            e.message or "",
        )
        for e in entries
    ]
    cols = ["#", "job", "tenant", "name", "gpus", "reason", "starts", "why"]
    # The sentence ('why') is what `mosu job why N` says; it fits 80 columns only alone.
    narrow = [r[:-1] for r in rows]
    emit(
        output,
        entries,
        lambda: table(None, cols[:-1], narrow) if rows else "the queue is empty",
        lambda: table(None, cols, rows) if rows else "the queue is empty",
    )
