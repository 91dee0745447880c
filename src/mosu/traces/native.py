"""mosu's own workload format: a jobs CSV and a tenants CSV.

Jobs file, one job per line, header required (column order free)::

    job_id,tenant,submit_s,duration_s,replicas,gpus,gpu_type,priority,kind[,estimate_s]

- ``submit_s``, ``duration_s``: seconds (finite, >= 0); ``duration_s`` is the
  true run time, which only the simulator sees.
- ``replicas``: gang size (int >= 1). ``gpus``: GPUs per replica, an integer or,
  for a single replica only, a fraction in (0, 1) (kept to 1/1000 of a GPU).
- ``gpu_type``: empty for any type, or one or more types joined by ``|``.
- ``priority``: int. ``kind``: train, finetune, eval, batch, inference or dev.
- ``estimate_s``: optional column; empty for no estimate.
- ``checkpoint_every_s``: optional column, seconds (> 0) between the job's own
  checkpoints; empty for none declared (a replay then uses its default).
- ``cpu_milli``, ``mem_mib``, ``topology``: optional columns, each replica's CPU
  (thousandths of a core) and memory, and how close replicas must be
  (``none``, ``same-node``, ``same-rack``); empty for 0 / ``none``.
- ``ended``, ``start_s``, ``attempts_s``: optional columns a platform's history
  export writes (``mosu history export``): how the job ended (``exit``,
  ``cancelled``, ``max-runtime``, ``running``, ``pending``), its real first start
  and the real run time of each attempt joined by ``|``. A job with an empty
  ``ended`` has no history.

Tenants file, one line per (tenant, GPU type), header required (column order free)::

    tenant,gpu_type,guaranteed,limit,weight[,cohort]

- ``gpu_type``: a type or ``*`` for every type without its own line.
- ``guaranteed``/``limit``: GPUs (fractions allowed); an empty ``limit`` means
  no cap. ``weight``: > 0, the same on every line of one tenant.
- ``cohort``: optional column; tenants of one cohort lend idle guaranteed GPUs to
  each other. Empty (or no column) for the default cohort that every tenant
  without one shares; the same on every line of one tenant.

Nodes file, one line per node, header required (column order free)::

    name,gpu_type,gpus,cpu_milli,mem_mib[,gpu_mem_mib,zone,rack,state]

Changes file (optional; what a history export writes of the quota and node changes
made during its window), one change per line, in force from ``time_s`` on::

    time_s,kind,subject,value

- ``kind`` ``quota``: ``subject`` a tenant, ``value`` ``TYPE:GUARANTEED[:LIMIT]``
  (GPUs; ``*`` for any type; no ``LIMIT`` for no cap);
- ``weight``: a tenant, its weight (> 0); ``cohort``: a tenant, its cohort (empty
  for the default one);
- ``node``: a node of the nodes file, its state: ``ready`` (added or back),
  ``draining`` (nothing new starts there) or ``down`` (what runs there is requeued).
  A node added during the window is in the nodes file as ``down`` until its change.

Errors raise ``TraceFormatError`` naming file, line, column and reason.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from mosu.core.errors import InvalidInput, TraceFormatError
from mosu.core.models import (
    ANY_GPU_TYPE,
    GPU_MILLI,
    JobKind,
    Node,
    NodeState,
    Quota,
    Shape,
    Tenant,
    Topology,
)
from mosu.traces.loader import TraceRequest, Workload, require, scaled_copies
from mosu.traces.schema import ChangeKind, Ended, JobHistory, TimedChange, TraceJob

JOB_COLUMNS = (
    "job_id",
    "tenant",
    "submit_s",
    "duration_s",
    "replicas",
    "gpus",
    "gpu_type",
    "priority",
    "kind",
)
OPTIONAL_JOB_COLUMNS = ("estimate_s",)
CHECKPOINT_COLUMN = "checkpoint_every_s"
"""Written only when some job declares a checkpoint interval, so workloads without
one keep their exact bytes."""
RESOURCE_JOB_COLUMNS = ("cpu_milli", "mem_mib", "topology")
HISTORY_JOB_COLUMNS = ("ended", "start_s", "attempts_s")
NODE_COLUMNS = ("name", "gpu_type", "gpus", "cpu_milli", "mem_mib")
OPTIONAL_NODE_COLUMNS = ("gpu_mem_mib", "zone", "rack", "state")
TENANT_COLUMNS = ("tenant", "gpu_type", "guaranteed", "limit", "weight")
CHANGE_COLUMNS = ("time_s", "kind", "subject", "value")
OPTIONAL_TENANT_COLUMNS = ("cohort",)

NODE_CPU_MILLI = 96_000
NODE_MEM_MIB = 1_048_576
NODES_PER_RACK = 16
"""Generated clusters put this many nodes in one rack."""

_KINDS = ", ".join(k.value for k in JobKind)
_ENDED = ", ".join(e.value for e in Ended)
_TOPOLOGIES = ", ".join(t.value for t in Topology)


class _Field(ValueError):
    """A bad value in ``column``; turned into a TraceFormatError with the line."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column


def _number(row: dict[str, str], column: str) -> float:
    text = (row.get(column) or "").strip()
    if not text:
        raise _Field(column, "missing value")
    try:
        value = float(text)
    except ValueError:
        raise _Field(column, f"bad number {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise _Field(column, f"must be a finite number >= 0, got {text!r}")
    return value


def _integer(row: dict[str, str], column: str, *, minimum: int | None = None) -> int:
    text = (row.get(column) or "").strip()
    if not text:
        raise _Field(column, "missing value")
    try:
        value = int(text)
    except ValueError:
        raise _Field(column, f"bad integer {text!r}") from None
    if minimum is not None and value < minimum:
        raise _Field(column, f"must be >= {minimum}, got {value}")
    return value


def _milli(gpus: float) -> int:
    return round(gpus * GPU_MILLI)


@contextmanager
def _rows(path: str | Path, want: Iterable[str]) -> Iterator[csv.DictReader]:
    """A reader over ``path`` whose header has every ``want`` column."""
    name = str(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        if header is None:
            raise TraceFormatError(name, 1, None, "empty file, expected a header line")
        missing = [c for c in want if c not in header]
        if missing:
            raise TraceFormatError(
                name, 1, missing[0], f"missing column (header is {list(header)})"
            )
        yield reader


def _optional_integer(row: dict[str, str], column: str) -> int:
    return _integer(row, column, minimum=0) if (row.get(column) or "").strip() else 0


def _shape(row: dict[str, str], replicas: int) -> Shape:
    gpus = _number(row, "gpus")
    cpu, mem = _optional_integer(row, "cpu_milli"), _optional_integer(row, "mem_mib")
    if gpus == int(gpus):
        return Shape(gpus=int(gpus), cpu_milli=cpu, mem_mib=mem)
    if gpus > 1:
        raise _Field("gpus", f"a fraction is only valid below one GPU, got {gpus:g}")
    if replicas > 1:
        raise _Field("gpus", "a fractional GPU is only valid for a single replica")
    milli = _milli(gpus)
    if milli < 1:
        raise _Field("gpus", f"below the smallest share of 1/{GPU_MILLI} GPU, got {gpus:g}")
    return Shape(gpus=1, gpu_milli=milli, cpu_milli=cpu, mem_mib=mem)


def _choice(row: dict[str, str], column: str, kind: type[Any], allowed: str, default: Any) -> Any:
    text = (row.get(column) or "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise _Field(column, f"unknown value {text!r}, expected one of {allowed}") from None


def _history(row: dict[str, str]) -> JobHistory | None:
    ended = _choice(row, "ended", Ended, _ENDED, None)
    if ended is None:
        for column in ("start_s", "attempts_s"):
            if (row.get(column) or "").strip():
                raise _Field(column, "set for a job without 'ended'")
        return None
    start = _number(row, "start_s") if (row.get("start_s") or "").strip() else None
    attempts: list[float] = []
    for part in (row.get("attempts_s") or "").split("|"):
        if part.strip():
            attempts.append(_number({"attempts_s": part}, "attempts_s"))
    if attempts and start is None:
        raise _Field("start_s", "missing value for a job that ran")
    return JobHistory(ended=ended, start_s=start, attempts_s=tuple(attempts))


def _job(row: dict[str, str], has_estimate: bool, has_checkpoint: bool = False) -> TraceJob:
    """One job; optional columns absent from the header read as empty."""
    job_id = (row.get("job_id") or "").strip()
    if not job_id:
        raise _Field("job_id", "missing value")
    tenant = (row.get("tenant") or "").strip()
    if not tenant:
        raise _Field("tenant", "missing value")
    replicas = _integer(row, "replicas", minimum=1)
    kind_text = (row.get("kind") or "").strip()
    try:
        kind = JobKind(kind_text)
    except ValueError:
        raise _Field("kind", f"unknown kind {kind_text!r}, expected one of {_KINDS}") from None
    gpu_type = (row.get("gpu_type") or "").strip()
    estimate = None
    if has_estimate and (row.get("estimate_s") or "").strip():
        estimate = _number(row, "estimate_s")
    checkpoint = None
    if has_checkpoint and (row.get(CHECKPOINT_COLUMN) or "").strip():
        checkpoint = _number(row, CHECKPOINT_COLUMN)
        if checkpoint <= 0:
            raise _Field(CHECKPOINT_COLUMN, f"must be > 0 (or empty for none), got {checkpoint:g}")
    return TraceJob(
        id=job_id,
        tenant=tenant,
        submit_s=_number(row, "submit_s"),
        duration_s=_number(row, "duration_s"),
        shape=_shape(row, replicas),
        replicas=replicas,
        gpu_types=tuple(t.strip() for t in gpu_type.split("|") if t.strip()),
        priority=_integer(row, "priority"),
        kind=kind,
        estimate_s=estimate,
        checkpoint_every_s=checkpoint,
        topology=_choice(row, "topology", Topology, _TOPOLOGIES, Topology.NONE),
        history=_history(row),
    )


def load_jobs(path: str | Path) -> list[TraceJob]:
    """Jobs of a native jobs CSV, sorted by submit time then file order."""
    name = str(path)
    jobs: list[TraceJob] = []
    seen: dict[str, int] = {}
    with _rows(path, JOB_COLUMNS) as reader:
        has_estimate = "estimate_s" in (reader.fieldnames or ())
        has_checkpoint = CHECKPOINT_COLUMN in (reader.fieldnames or ())
        for row in reader:
            line = reader.line_num
            if None in row:
                raise TraceFormatError(name, line, None, "more values than header columns")
            try:
                job = _job(row, has_estimate, has_checkpoint)
            except _Field as e:
                raise TraceFormatError(name, line, e.column, str(e)) from None
            if job.id in seen:
                raise TraceFormatError(
                    name, line, "job_id", f"duplicate id {job.id!r} (first on line {seen[job.id]})"
                )
            seen[job.id] = line
            jobs.append(job)
    jobs.sort(key=lambda j: j.submit_s)
    return jobs


def load_tenants(path: str | Path) -> list[Tenant]:
    """Tenants of a native tenants CSV, in order of first appearance."""
    name = str(path)
    quotas: dict[str, list[tuple[str, Quota]]] = {}
    weights: dict[str, tuple[float, int]] = {}
    cohorts: dict[str, tuple[str | None, int]] = {}
    with _rows(path, TENANT_COLUMNS) as reader:
        for row in reader:
            line = reader.line_num
            if None in row:
                raise TraceFormatError(name, line, None, "more values than header columns")
            try:
                tenant = (row.get("tenant") or "").strip()
                if not tenant:
                    raise _Field("tenant", "missing value")
                gpu_type = (row.get("gpu_type") or "").strip()
                if not gpu_type:
                    raise _Field("gpu_type", f"missing value (use {ANY_GPU_TYPE!r} for any)")
                guaranteed = _milli(_number(row, "guaranteed"))
                limit = None
                if (row.get("limit") or "").strip():
                    limit = _milli(_number(row, "limit"))
                    if limit < guaranteed:
                        raise _Field("limit", "must be >= guaranteed")
                weight = _number(row, "weight")
                if weight <= 0:
                    raise _Field("weight", "must be > 0")
                cohort = (row.get("cohort") or "").strip() or None
            except _Field as e:
                raise TraceFormatError(name, line, e.column, str(e)) from None
            if any(key == gpu_type for key, _ in quotas.get(tenant, ())):
                raise TraceFormatError(
                    name, line, "gpu_type", f"duplicate GPU type {gpu_type!r} for {tenant!r}"
                )
            _same_on_every_line(weights, tenant, weight, (name, line, "weight"), "{:g}".format)
            _same_on_every_line(cohorts, tenant, cohort, (name, line, "cohort"), _cohort_text)
            quotas.setdefault(tenant, []).append((gpu_type, Quota(guaranteed, limit)))
    return [
        Tenant(
            name=tenant,
            quotas=tuple(entries),
            weight=weights[tenant][0],
            cohort=cohorts[tenant][0],
        )
        for tenant, entries in quotas.items()
    ]


def _same_on_every_line(
    seen: dict[str, tuple[Any, int]],
    tenant: str,
    value: Any,
    where: tuple[str, int, str],
    show: Callable[[Any], str],
) -> None:
    """A per-tenant column must repeat its first line's value; ``where`` is (file,
    line, column)."""
    name, line, column = where
    if tenant in seen and seen[tenant][0] != value:
        first, first_line = seen[tenant]
        raise TraceFormatError(
            name, line, column, f"{show(value)} differs from {show(first)} on line {first_line}"
        )
    seen.setdefault(tenant, (value, line))


def _cohort_text(cohort: str | None) -> str:
    return "the default cohort (empty)" if cohort is None else repr(cohort)


def _gpus_text(milli: int) -> str:
    return str(milli // GPU_MILLI) if milli % GPU_MILLI == 0 else f"{milli / GPU_MILLI:g}"


def _seconds_text(value: float) -> str:
    return repr(float(value))


def write_jobs(path: str | Path | TextIO, jobs: Iterable[TraceJob]) -> None:
    """Write jobs so that ``load_jobs`` reads them back equal.

    Only fields of the native format are kept. The CPU, memory and topology columns
    are written when some job has them, the history columns when some job has a
    history. ``path`` may be an open text stream.
    """
    jobs = list(jobs)
    checkpoints = any(job.checkpoint_every_s is not None for job in jobs)
    resources = any(
        j.shape.cpu_milli or j.shape.mem_mib or j.topology != Topology.NONE for j in jobs
    )
    history = any(j.history is not None for j in jobs)
    columns = (
        *JOB_COLUMNS,
        *OPTIONAL_JOB_COLUMNS,
        *((CHECKPOINT_COLUMN,) if checkpoints else ()),
        *(RESOURCE_JOB_COLUMNS if resources else ()),
        *(HISTORY_JOB_COLUMNS if history else ()),
    )
    with _writing(path) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for job in jobs:
            shape = job.shape
            gpus = _gpus_text(shape.gpu_milli) if shape.fractional else str(shape.gpus)
            extra: tuple[object, ...] = ()
            if resources:
                extra += (shape.cpu_milli, shape.mem_mib, job.topology.value)
            if history:
                h = job.history
                extra += (
                    ("", "", "")
                    if h is None
                    else (
                        h.ended.value,
                        "" if h.start_s is None else _seconds_text(h.start_s),
                        "|".join(_seconds_text(a) for a in h.attempts_s),
                    )
                )
            writer.writerow(
                (
                    job.id,
                    job.tenant,
                    _seconds_text(job.submit_s),
                    "" if job.duration_s is None else _seconds_text(job.duration_s),
                    job.replicas,
                    gpus,
                    "|".join(job.gpu_types),
                    job.priority,
                    job.kind.value,
                    "" if job.estimate_s is None else _seconds_text(job.estimate_s),
                    *(
                        (
                            ""
                            if job.checkpoint_every_s is None
                            else _seconds_text(job.checkpoint_every_s),
                        )
                        if checkpoints
                        else ()
                    ),
                    *extra,
                )
            )


@contextmanager
def _writing(path: str | Path | TextIO) -> Iterator[TextIO]:
    if isinstance(path, str | Path):
        with open(path, "w", newline="") as f:
            yield f
    else:
        yield path


def write_tenants(path: str | Path | TextIO, tenants: Iterable[Tenant]) -> None:
    """Write tenants so that ``load_tenants`` reads them back equal.

    A tenant without quotas is written with a zero guarantee for ``*``; one in the
    default cohort with an empty ``cohort``. ``path`` may be an open text stream.
    """
    with _writing(path) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow((*TENANT_COLUMNS, *OPTIONAL_TENANT_COLUMNS))
        for tenant in tenants:
            quotas = tenant.quotas or ((ANY_GPU_TYPE, Quota()),)
            for gpu_type, quota in quotas:
                limit = "" if quota.limit_milli is None else _gpus_text(quota.limit_milli)
                writer.writerow(
                    (
                        tenant.name,
                        gpu_type,
                        _gpus_text(quota.guaranteed_milli),
                        limit,
                        f"{tenant.weight:g}",
                        tenant.cohort or "",
                    )
                )


def load_nodes(path: str | Path) -> list[Node]:
    """Nodes of a native nodes CSV, in file order."""
    name = str(path)
    nodes: list[Node] = []
    seen: dict[str, int] = {}
    with _rows(path, NODE_COLUMNS) as reader:
        for row in reader:
            line = reader.line_num
            if None in row:
                raise TraceFormatError(name, line, None, "more values than header columns")
            try:
                node = _node(row)
            except _Field as e:
                raise TraceFormatError(name, line, e.column, str(e)) from None
            if node.name in seen:
                raise TraceFormatError(
                    name,
                    line,
                    "name",
                    f"duplicate node {node.name!r} (first on line {seen[node.name]})",
                )
            seen[node.name] = line
            nodes.append(node)
    return nodes


def _node(row: dict[str, str]) -> Node:
    node_name = (row.get("name") or "").strip()
    if not node_name:
        raise _Field("name", "missing value")
    gpu_type = (row.get("gpu_type") or "").strip()
    gpus = _integer(row, "gpus", minimum=0)
    if gpus and not gpu_type:
        raise _Field("gpu_type", "missing value for a node with GPUs")
    return Node(
        name=node_name,
        gpu_type=gpu_type,
        gpus=gpus,
        cpu_milli=_integer(row, "cpu_milli", minimum=0),
        mem_mib=_integer(row, "mem_mib", minimum=0),
        gpu_mem_mib=_optional_integer(row, "gpu_mem_mib"),
        zone=(row.get("zone") or "").strip() or "zone-0",
        rack=(row.get("rack") or "").strip() or "rack-0",
        state=_choice(row, "state", NodeState, ", ".join(NodeState), NodeState.READY),
    )


def write_nodes(path: str | Path | TextIO, nodes: Iterable[Node]) -> None:
    """Write nodes so that ``load_nodes`` reads them back equal (labels are not kept)."""
    with _writing(path) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow((*NODE_COLUMNS, *OPTIONAL_NODE_COLUMNS))
        for n in nodes:
            writer.writerow(
                (
                    n.name,
                    n.gpu_type,
                    n.gpus,
                    n.cpu_milli,
                    n.mem_mib,
                    n.gpu_mem_mib,
                    n.zone,
                    n.rack,
                    n.state.value,
                )
            )


def load_changes(path: str | Path) -> list[TimedChange]:
    """Timed changes of a native changes CSV, by time (file order within one time)."""
    name = str(path)
    changes: list[TimedChange] = []
    with _rows(path, CHANGE_COLUMNS) as reader:
        for row in reader:
            line = reader.line_num
            if None in row:
                raise TraceFormatError(name, line, None, "more values than header columns")
            try:
                changes.append(_change(row))
            except _Field as e:
                raise TraceFormatError(name, line, e.column, str(e)) from None
    return sorted(changes, key=lambda c: c.time_s)


def _change(row: dict[str, str]) -> TimedChange:
    time_s = _number(row, "time_s")
    kind = _choice(row, "kind", ChangeKind, ", ".join(ChangeKind), None)
    if kind is None:
        raise _Field("kind", "missing value")
    subject = (row.get("subject") or "").strip()
    if not subject:
        raise _Field("subject", "missing value")
    value = (row.get("value") or "").strip()
    if kind is ChangeKind.QUOTA:
        parts = value.split(":")
        if len(parts) not in (2, 3) or not parts[0]:
            raise _Field("value", f"expected TYPE:GUARANTEED[:LIMIT], got {value!r}")
        guaranteed = _milli(_number({"value": parts[1]}, "value"))
        limit = _milli(_number({"value": parts[2]}, "value")) if len(parts) == 3 else None
        if limit is not None and limit < guaranteed:
            raise _Field("value", "the limit must be >= the guarantee")
        quota = Quota(guaranteed, limit)
        return TimedChange(time_s, kind, subject, gpu_type=parts[0], quota=quota)
    if kind is ChangeKind.WEIGHT:
        weight = _number(row, "value")
        if weight <= 0:
            raise _Field("value", "a weight must be > 0")
        return TimedChange(time_s, kind, subject, weight=weight)
    if kind is ChangeKind.COHORT:
        return TimedChange(time_s, kind, subject, cohort=value or None)
    state = _choice(row, "value", NodeState, ", ".join(NodeState), None)
    if state is None:
        raise _Field("value", "missing value")
    return TimedChange(time_s, kind, subject, node_state=state)


def change_value(change: TimedChange) -> str:
    """The ``value`` column of ``change``."""
    if change.kind is ChangeKind.QUOTA:
        quota = change.quota or Quota()
        limit = "" if quota.limit_milli is None else f":{_gpus_text(quota.limit_milli)}"
        return f"{change.gpu_type}:{_gpus_text(quota.guaranteed_milli)}{limit}"
    if change.kind is ChangeKind.WEIGHT:
        return f"{change.weight:g}"
    if change.kind is ChangeKind.COHORT:
        return change.cohort or ""
    return "" if change.node_state is None else change.node_state.value


def write_changes(path: str | Path | TextIO, changes: Iterable[TimedChange]) -> None:
    """Write timed changes so that ``load_changes`` reads them back equal."""
    with _writing(path) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CHANGE_COLUMNS)
        for c in changes:
            writer.writerow((_seconds_text(c.time_s), c.kind.value, c.subject, change_value(c)))


def _nodes(count: int, gpus: int, gpu_type: str, prefix: str) -> list[Node]:
    width = max(3, len(str(count - 1)))
    return [
        Node(
            name=f"{prefix}-n{i:0{width}d}",
            gpu_type=gpu_type,
            gpus=gpus,
            cpu_milli=NODE_CPU_MILLI,
            mem_mib=NODE_MEM_MIB,
            rack=f"{prefix}-r{i // NODES_PER_RACK:02d}",
        )
        for i in range(count)
    ]


def _prefix(gpu_type: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in gpu_type.lower())


def default_cluster(tenants: Iterable[Tenant], gpus_per_node: int = 8) -> list[Node]:
    """Just enough nodes for every guarantee: per GPU type, the summed guarantees
    in ``gpus_per_node``-GPU nodes, rounded up; racks of ``NODES_PER_RACK`` nodes."""
    if gpus_per_node < 1:
        raise InvalidInput(f"must be >= 1, got {gpus_per_node}", field="gpus_per_node")
    totals: dict[str, int] = {}
    for tenant in tenants:
        for gpu_type, quota in tenant.quotas:
            if gpu_type == ANY_GPU_TYPE and quota.guaranteed_milli > 0:
                raise InvalidInput(
                    f"tenant {tenant.name!r} has a guarantee for any GPU type; "
                    "a default cluster needs named types, so give the cluster explicitly",
                    field="cluster",
                )
            totals[gpu_type] = totals.get(gpu_type, 0) + quota.guaranteed_milli
    nodes: list[Node] = []
    for gpu_type, milli in totals.items():
        count = math.ceil(milli / (gpus_per_node * GPU_MILLI))
        nodes.extend(_nodes(count, gpus_per_node, gpu_type, _prefix(gpu_type)))
    return nodes


def parse_cluster_spec(spec: str) -> list[Node]:
    """Nodes from ``COUNTxGPUS:TYPE[,COUNTxGPUS:TYPE...]``, e.g. ``128x8:A100``.

    Node names are ``<type>-nNNN`` (a suffix keeps names unique when a type
    repeats), in racks of ``NODES_PER_RACK``.
    """
    nodes: list[Node] = []
    used: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        try:
            size, gpu_type = part.split(":")
            count_text, gpus_text = size.lower().split("x")
            count, gpus = int(count_text), int(gpus_text)
            gpu_type = gpu_type.strip()
            if count < 1 or gpus < 0 or not gpu_type:
                raise ValueError
        except ValueError:
            raise InvalidInput(
                f"bad cluster spec {part!r}, expected COUNTxGPUS:TYPE such as 128x8:A100",
                field="cluster",
            ) from None
        prefix = _prefix(gpu_type)
        used[prefix] = used.get(prefix, 0) + 1
        if used[prefix] > 1:
            prefix = f"{prefix}-{used[prefix]}"
        nodes.extend(_nodes(count, gpus, gpu_type, prefix))
    return nodes


class NativeTrace:
    """``mosu:jobs.csv`` with ``--tenants tenants.csv`` and optionally ``--nodes
    nodes.csv``: without a nodes file the cluster just holds every guarantee
    (``default_cluster``); ``--cluster-scale`` multiplies its nodes per GPU type,
    rounding up."""

    name = "mosu"
    help = "mosu's jobs CSV; needs --tenants tenants.csv, takes --nodes nodes.csv"

    def load(self, request: TraceRequest) -> Workload:
        tenants_path = require(request.tenants, "--tenants", "TENANTS.csv", self.name)
        tenants = load_tenants(tenants_path)
        jobs = [j for j in load_jobs(request.path) if request.in_window(j.submit_s)]
        # A nodes file (what `mosu history export` writes) is the cluster as it was.
        nodes = load_nodes(request.nodes) if request.nodes else default_cluster(tenants)
        if request.scale != 1.0:
            nodes = scaled_copies(nodes, request.scale)
        return Workload(jobs, tenants, nodes)
