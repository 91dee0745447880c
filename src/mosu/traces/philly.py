"""Loader for the Microsoft Philly job trace and the Helios VC configuration.

``philly.csv`` (columns ``timestamp,duration,num_gpus,gpu_time,cluster``) is the
Pollux artifact's derived subset of the Philly trace; ``philly_vc.csv`` (columns
``vc,node num``) is the Helios authors' model of each virtual cluster's size.
See ``docs/traces.md`` for the format and the choices made here:

- Rows are not sorted in the file; jobs come back sorted by submit time, ties
  broken by the original row. The id is ``philly-<row>`` (0-based data row).
- ``timestamp`` has no zone; it is read as UTC so that ``submit_s`` is seconds
  since 1970 and differences between jobs are exact.
- Tenant = virtual cluster (``cluster``).
- Philly nodes have 8 GPUs, so a job of n <= 8 GPUs is one replica of n GPUs and
  a larger job is a gang of r replicas of n / r GPUs, r being the smallest count
  >= ceil(n / 8) that divides n (16 -> 2x8, 12 -> 2x6, 24 -> 3x8). The trace
  records no CPU or memory, so shapes ask for GPUs only.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from mosu.core.errors import TraceFormatError
from mosu.core.models import GPU_MILLI, JobKind, Node, Quota, Shape, Tenant
from mosu.traces.loader import TraceRequest, Workload, refuse, require
from mosu.traces.schema import TraceJob

PHILLY_GPUS_PER_NODE = 8
DEFAULT_GPU_TYPE = "P100"
NODE_CPU_MILLI = 96_000
"""The Helios simulator models a Philly node as 8 GPUs and 96 CPUs."""
NODE_MEM_MIB = 1_048_576
"""The trace has no memory figures; a node gets far more than any job asks."""

_JOB_COLUMNS = ("timestamp", "duration", "num_gpus", "cluster")
_VC_COLUMNS = ("vc", "node num")


def gang_shape(num_gpus: int, gpus_per_node: int = PHILLY_GPUS_PER_NODE) -> tuple[int, int]:
    """(replicas, GPUs per replica) for a job of ``num_gpus`` GPUs on such nodes."""
    if num_gpus <= gpus_per_node:
        return 1, num_gpus
    replicas = math.ceil(num_gpus / gpus_per_node)
    while num_gpus % replicas:
        replicas += 1
    return replicas, num_gpus // replicas


def parse_timestamp(text: str) -> float:
    """Seconds since 1970 of a naive ``YYYY-MM-DD HH:MM:SS`` read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _check_header(path: str, header: list[str] | None, want: Iterable[str]) -> None:
    if header is None:
        raise TraceFormatError(path, 1, None, "empty file, expected a header line")
    missing = [c for c in want if c not in header]
    if missing:
        raise TraceFormatError(path, 1, missing[0], f"missing column (header is {header})")


def load_jobs(path: str | Path, *, gpu_type: str = DEFAULT_GPU_TYPE) -> list[TraceJob]:
    """Every job of ``philly.csv``, sorted by submit time then original row."""
    name = str(path)
    rows: list[tuple[float, int, TraceJob]] = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        _check_header(name, reader.fieldnames, _JOB_COLUMNS)
        for index, row in enumerate(reader):
            line = reader.line_num
            column = "timestamp"
            try:
                submit_s = parse_timestamp(row["timestamp"])
                column = "duration"
                duration_s = float(row["duration"])
                if not math.isfinite(duration_s) or duration_s < 0:
                    raise ValueError("must be a finite number >= 0")
                column = "num_gpus"
                num_gpus = int(row["num_gpus"])
                if num_gpus < 1:
                    raise ValueError("must be >= 1")
                column = "cluster"
                tenant = row["cluster"]
                if not tenant:
                    raise ValueError("empty virtual cluster")
            except (TypeError, ValueError) as e:
                raise TraceFormatError(name, line, column, _reason(row.get(column), e)) from None
            replicas, per_replica = gang_shape(num_gpus)
            job = TraceJob(
                id=f"philly-{index}",
                tenant=tenant,
                submit_s=submit_s,
                duration_s=duration_s,
                shape=Shape(gpus=per_replica),
                replicas=replicas,
                gpu_types=(gpu_type,),
                kind=JobKind.TRAIN,
            )
            rows.append((submit_s, index, job))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [job for _, _, job in rows]


def _reason(value: str | None, error: Exception) -> str:
    if value is None:
        return "missing value"
    return f"bad value {value!r}: {error}"


def load_vcs(path: str | Path) -> dict[str, int]:
    """``philly_vc.csv``: node count per virtual cluster, in file order."""
    name = str(path)
    vcs: dict[str, int] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        _check_header(name, reader.fieldnames, _VC_COLUMNS)
        for row in reader:
            line = reader.line_num
            vc = (row["vc"] or "").strip()
            if not vc:
                raise TraceFormatError(name, line, "vc", "empty virtual cluster name")
            if vc in vcs:
                raise TraceFormatError(name, line, "vc", f"duplicate virtual cluster {vc!r}")
            try:
                nodes = int(row["node num"])
                if nodes < 0:
                    raise ValueError("must be >= 0")
            except (TypeError, ValueError) as e:
                raise TraceFormatError(
                    name, line, "node num", _reason(row["node num"], e)
                ) from None
            vcs[vc] = nodes
    return vcs


def build_cluster(
    vcs: Mapping[str, int],
    *,
    scale: float = 1.0,
    gpus_per_node: int = PHILLY_GPUS_PER_NODE,
    gpu_type: str = DEFAULT_GPU_TYPE,
) -> tuple[list[Tenant], list[Node]]:
    """One tenant per VC guaranteed its own nodes' GPUs, and those nodes.

    Each VC gets ``ceil(nodes * scale)`` nodes named ``<vc>-nNN`` in a rack named
    after the VC; its guarantee is all their GPUs, with no limit and weight 1.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    tenants: list[Tenant] = []
    nodes: list[Node] = []
    for vc, count in vcs.items():
        scaled = math.ceil(count * scale)
        quota = Quota(guaranteed_milli=scaled * gpus_per_node * GPU_MILLI, limit_milli=None)
        tenants.append(Tenant(name=vc, quotas=((gpu_type, quota),), weight=1.0))
        width = max(2, len(str(scaled - 1)))
        nodes.extend(
            Node(
                name=f"{vc}-n{i:0{width}d}",
                gpu_type=gpu_type,
                gpus=gpus_per_node,
                cpu_milli=NODE_CPU_MILLI,
                mem_mib=NODE_MEM_MIB,
                rack=vc,
            )
            for i in range(scaled)
        )
    return tenants, nodes


TimeBound = float | str | datetime | None


def _bound_s(bound: TimeBound) -> float | None:
    if bound is None:
        return None
    if isinstance(bound, datetime):
        if bound.tzinfo is None:
            bound = bound.replace(tzinfo=UTC)
        return bound.timestamp()
    if isinstance(bound, str):
        return parse_timestamp(bound)
    return float(bound)


def select(
    jobs: Iterable[TraceJob],
    *,
    vcs: Mapping[str, int] | Iterable[str],
    start: TimeBound = None,
    end: TimeBound = None,
) -> tuple[list[TraceJob], dict[str, int]]:
    """Jobs submitted in [start, end) whose VC is in ``vcs``.

    Bounds are seconds since 1970, ``datetime`` (naive = UTC) or a
    ``YYYY-MM-DD[ HH:MM:SS]`` string. Also returns how many in-window jobs of
    each unknown VC were dropped.
    """
    known = set(vcs)
    lo, hi = _bound_s(start), _bound_s(end)
    kept: list[TraceJob] = []
    dropped: Counter[str] = Counter()
    for job in jobs:
        if lo is not None and job.submit_s < lo:
            continue
        if hi is not None and job.submit_s >= hi:
            continue
        if job.tenant in known:
            kept.append(job)
        else:
            dropped[job.tenant] += 1
    return kept, dict(sorted(dropped.items()))


class PhillyTrace:
    """``philly:philly.csv`` with ``--tenants philly_vc.csv``: one tenant per VC on its
    own nodes (``--cluster-scale`` multiplies each VC's node count, rounding up); jobs
    of VCs without a quota are dropped and counted."""

    name = "philly"
    help = "Philly philly.csv; needs --tenants philly_vc.csv"

    def load(self, request: TraceRequest) -> Workload:
        tenants_path = require(request.tenants, "--tenants", "philly_vc.csv", self.name)
        refuse(request.nodes, "--nodes", self.name)
        vcs = load_vcs(tenants_path)
        jobs, dropped = select(
            load_jobs(request.path), vcs=vcs, start=request.start_s, end=request.end_s
        )
        tenants, nodes = build_cluster(vcs, scale=request.scale)
        notes: tuple[str, ...] = ()
        if dropped:
            counts = ", ".join(f"{vc} ({n})" for vc, n in dropped.items())
            notes = (f"dropped jobs of VCs without a quota: {counts}",)
        return Workload(jobs, tenants, nodes, notes)
