"""``mosu usage``: GPU-seconds per tenant, GPU type and day."""

from __future__ import annotations

from typing import Annotated

import typer

from mosu.cli import config
from mosu.cli.render import Output, OutputOpt, emit, table


def usage(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """GPU usage per tenant, GPU type and UTC day (running jobs counted up to now)."""
    with config.client() as c:
        records = c.usage(tenant=tenant)
    rows = [
        (r.day, r.tenant, r.gpu_type, f"{r.gpu_seconds / 3600:.3f}", f"{r.gpu_seconds:.0f}")
        for r in records
    ]
    cols = ["day", "tenant", "gpu type", "gpu-hours", "gpu-seconds"]
    emit(output, records, lambda: table(None, cols, rows) if rows else "no usage yet")
