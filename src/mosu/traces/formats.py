"""The registry of trace formats ``mosu sim replay`` reads (``--trace FORMAT:PATH``).

Each format is a class implementing ``loader.TraceFormat`` in its own module; adding
one is that module and one line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from mosu.core.errors import InvalidInput
from mosu.traces.loader import TraceFormat, TraceRequest, Workload
from mosu.traces.native import NativeTrace
from mosu.traces.openb import OpenbTrace
from mosu.traces.philly import PhillyTrace

FORMATS: Mapping[str, TraceFormat] = {
    "philly": PhillyTrace(),
    "mosu": NativeTrace(),
    "openb": OpenbTrace(),
}
"""Every trace format, by the prefix of ``--trace FORMAT:PATH``."""


def load_trace(spec: str, request: TraceRequest) -> Workload:
    """The workload of ``FORMAT:PATH`` (``request.path`` is replaced by PATH)."""
    fmt, sep, path = spec.partition(":")
    trace_format = FORMATS.get(fmt)
    if not sep or trace_format is None or not path:
        raise InvalidInput(
            f"bad trace {spec!r}: expected FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}",
            field="trace",
        )
    if not request.scale > 0:
        raise InvalidInput(f"must be > 0, got {request.scale}", field="cluster-scale")
    workload = trace_format.load(replace(request, path=Path(path)))
    if not workload.jobs:
        raise InvalidInput(f"{path}: no job in the chosen window", field="window")
    return workload
