"""API models of the platform's history export and what-if replays, shared by the API,
the client and the CLI."""

from __future__ import annotations

from mosu.core.api import OutputModel


class HistoryExportOut(OutputModel):
    """A window of history in mosu's native trace format: ``files`` maps ``jobs.csv``,
    ``tenants.csv`` and ``nodes.csv`` to their text. ``origin`` is the epoch second of
    trace time 0; ``counts`` the jobs per way they ended (``exit``, ``cancelled``,
    ``max-runtime``, ``running``, ``pending``) and ``jobs`` in all; ``profile`` the
    scheduling profile the platform runs
    (and its override of the profile's minimum runtime before a preemption)."""

    origin: float
    since: float | None = None
    until: float
    profile: str
    min_runtime_s: float | None = None
    counts: dict[str, int]
    files: dict[str, str]
