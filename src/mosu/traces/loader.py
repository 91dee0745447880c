"""The loader protocol every trace format of ``mosu sim replay`` implements.

A format turns a ``TraceRequest`` (the trace path and the options ``mosu sim replay``
takes: tenants file, node list, cluster scale, submit window) into a ``Workload``:
the jobs, the tenants and the cluster to replay them on, plus notes for the user
(jobs dropped and why). Each format lives in its own module next to its parser
(``philly.PhillyTrace``, ``native.NativeTrace``, ``openb.OpenbTrace``); adding one is
that module's class and one line in ``formats.FORMATS``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from mosu.core.errors import InvalidInput
from mosu.core.models import Node, Tenant
from mosu.traces.schema import TraceJob


@dataclass(frozen=True)
class TraceRequest:
    """What the user gave for one trace."""

    path: Path
    tenants: Path | None = None
    nodes: Path | None = None
    scale: float = 1.0
    """Multiplies the cluster (each format says how: nodes per VC, nodes sampled ...)."""
    start_s: float | None = None
    end_s: float | None = None
    """Submit window [start, end); None is open."""

    def in_window(self, submit_s: float) -> bool:
        return (self.start_s is None or submit_s >= self.start_s) and (
            self.end_s is None or submit_s < self.end_s
        )


@dataclass(frozen=True)
class Workload:
    jobs: list[TraceJob]
    tenants: list[Tenant]
    nodes: list[Node]
    notes: tuple[str, ...] = field(default=())


class TraceFormat(Protocol):
    name: str
    help: str
    """One line: the files it reads and which options it needs."""

    def load(self, request: TraceRequest) -> Workload: ...


def require(path: Path | None, option: str, what: str, fmt: str) -> Path:
    """``path``, or ``InvalidInput`` saying that ``fmt`` needs ``option``."""
    if path is None:
        raise InvalidInput(f"a {fmt} trace needs {option} {what}", field=option.lstrip("-"))
    return path


def refuse(path: Path | None, option: str, fmt: str) -> None:
    if path is not None:
        raise InvalidInput(f"a {fmt} trace takes no {option}", field=option.lstrip("-"))


def scaled_copies(nodes: Sequence[Node], scale: float) -> list[Node]:
    """Per GPU type, the first ``ceil(n * scale)`` nodes (copies of the last one, with
    new names, when ``scale`` > 1)."""
    by_type: dict[str, list[Node]] = {}
    for n in nodes:
        by_type.setdefault(n.gpu_type, []).append(n)
    out: list[Node] = []
    for group in by_type.values():
        count = math.ceil(len(group) * scale)
        out.extend(group[:count])
        for k in range(len(group), count):
            out.append(replace(group[-1], name=f"{group[-1].name}-x{k}"))
    return out
