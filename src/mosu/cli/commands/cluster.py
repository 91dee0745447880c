"""``mosu cluster``: the cluster in aggregate, for anyone (a tenant too): GPUs per type,
in use and free, and the guarantees promised on them (over-commitment shown)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from mosu.cli import config
from mosu.cli.render import Output, OutputOpt, emit, gpus, table
from mosu.core.api import ClusterOut


def render(cluster: ClusterOut) -> RenderableType:
    rows = [
        (
            t.gpu_type,
            t.nodes,
            t.gpus,
            gpus(t.allocated),
            gpus(t.free),
            gpus(t.guaranteed),
            f"+{gpus(t.overcommitted)}" if t.overcommitted else "-",
        )
        for t in cluster.gpu_types
    ]
    columns = ["gpu type", "nodes", "gpus", "used", "free", "guaranteed", "over"]
    jobs = f"jobs: {cluster.jobs_running} running, {cluster.jobs_pending} pending"
    grid = table(jobs, columns, rows) if rows else None
    over = [t for t in cluster.gpu_types if t.overcommitted]
    notes = [
        f"{t.gpu_type}: {gpus(t.guaranteed)} GPUs guaranteed on {t.gpus}: not every "
        "tenant can have its guarantee at once"
        for t in over
    ]
    if grid is None:
        return "no nodes yet\n" + jobs
    if not notes:
        return grid
    return Group(grid, *(Text(n) for n in notes))


def cluster(output: OutputOpt = Output.TABLE) -> None:
    """GPUs per type: in use, free, and guaranteed to tenants (over-commitment shown)."""
    with config.client() as c:
        summary = c.cluster()
    emit(output, summary, lambda: render(summary))
