"""Loader for the Alibaba "openb" GPU cluster lists (Weng et al., ATC'23).

Two kinds of file, both CSV with a header:

- node lists (``openb_node_list_gpu_node.csv``): ``sn,cpu_milli,memory_mib,gpu,model``
  → one :class:`Node` per row, named by ``sn``, GPU type ``model``;
- pod lists (``openb_pod_list_*.csv``): ``name,cpu_milli,memory_mib,num_gpu,gpu_milli``
  and optionally ``gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time``
  → one single-replica :class:`TraceJob` per row.

Choices, so that a fill experiment matches the paper's simulator:

- A pod asks ``num_gpu`` GPUs of ``gpu_milli`` thousandths each; a multi-GPU pod
  always takes whole GPUs (the files say 1000 there). A CPU-only pod has
  ``num_gpu == 0`` and its ``gpu_milli`` is ignored.
- ``gpu_spec`` is a ``|``-separated list of GPU models the pod may run on; empty
  means any model.
- ``submit_s`` is ``creation_time`` when the file has it, else 0. Pod lists are
  replayed as "submit until full", so times are kept only as information and
  ``duration_s`` is ``deletion_time - creation_time`` when both are present.
- There is no tenant in the trace; every pod belongs to tenant ``openb``.
- Node rows with ``gpu == 0`` (CPU-only nodes of the all-node list) load with an
  empty GPU type.

Over time (``OpenbTrace``, ``mosu sim replay --trace openb:PODS.csv --nodes
NODES.csv``): a pod is submitted at its ``creation_time`` and runs from when it is
placed for ``deletion_time - scheduled_time`` (what it ran in the trace); pods the
trace never scheduled (no ``scheduled_time``, ``pod_phase`` Pending) have no run
time and are left out and counted. One tenant, ``openb``, is guaranteed the whole
cluster. ``--cluster-scale`` samples that share of each GPU model's nodes (seeded,
file order kept) so that the cluster queues; above 1 it adds copies.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from mosu.core.errors import TraceFormatError
from mosu.core.models import GPU_MILLI, Node, Quota, Shape, Tenant
from mosu.traces.loader import TraceRequest, Workload, refuse, require, scaled_copies
from mosu.traces.schema import TraceJob

TENANT = "openb"
NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
TIME_COLUMNS = ("creation_time", "deletion_time", "scheduled_time")
SAMPLE_SEED = 0
"""Seed of the node sample ``--cluster-scale`` below 1 draws."""

_T = TypeVar("_T")


def _rows(path: str | Path, want: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file whose header holds every column of ``want``."""
    name = str(path)
    try:
        f = open(path, newline="")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise TraceFormatError(name, None, None, f"cannot open: {exc.strerror or exc}") from None
    with f:
        try:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            if header is None:
                raise TraceFormatError(name, 1, None, "empty file, expected a header line")
            missing = [c for c in want if c not in header]
            if missing:
                raise TraceFormatError(name, 1, missing[0], f"missing column (header is {header})")
            for row in reader:
                if None in row or any(row.get(c) is None for c in want):
                    raise TraceFormatError(
                        name, reader.line_num, None, f"expected {len(header)} fields"
                    )
                yield reader.line_num, row
        except UnicodeDecodeError as exc:
            raise TraceFormatError(name, None, None, f"not a text file: {exc.reason}") from None
        except csv.Error as exc:
            raise TraceFormatError(name, None, None, f"malformed CSV: {exc}") from None


def _field(
    path: str | Path, line: int, row: dict[str, str], column: str, parse: Callable[[str], _T]
) -> _T:
    text = row[column].strip()
    try:
        return parse(text)
    except ValueError:
        raise TraceFormatError(str(path), line, column, f"bad value {text!r}") from None


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _optional_float(text: str) -> float | None:
    return float(text) if text else None


def load_nodes(path: str | Path) -> list[Node]:
    """Every node of an openb node list, in file order."""
    nodes: list[Node] = []
    seen: set[str] = set()
    for line, row in _rows(path, NODE_COLUMNS):
        name = row["sn"].strip()
        if not name:
            raise TraceFormatError(str(path), line, "sn", "empty node name")
        if name in seen:
            raise TraceFormatError(str(path), line, "sn", f"duplicate node name {name!r}")
        seen.add(name)
        gpus = _field(path, line, row, "gpu", _count)
        model = row["model"].strip()
        if gpus > 0 and not model:
            raise TraceFormatError(str(path), line, "model", "a GPU node needs a GPU model")
        nodes.append(
            Node(
                name=name,
                gpu_type=model,
                gpus=gpus,
                cpu_milli=_field(path, line, row, "cpu_milli", _count),
                mem_mib=_field(path, line, row, "memory_mib", _count),
            )
        )
    return nodes


def load_pods(path: str | Path) -> list[TraceJob]:
    """Every pod of an openb pod list as a one-replica job, in file order."""
    jobs: list[TraceJob] = []
    for line, row in _rows(path, POD_COLUMNS):
        name = row["name"].strip()
        if not name:
            raise TraceFormatError(str(path), line, "name", "empty pod name")
        gpus = _field(path, line, row, "num_gpu", _count)
        milli = _field(path, line, row, "gpu_milli", _count) if gpus else 0
        if gpus and not 0 < milli <= GPU_MILLI:
            raise TraceFormatError(str(path), line, "gpu_milli", f"must be in 1..{GPU_MILLI}")
        if gpus > 1 and milli != GPU_MILLI:
            raise TraceFormatError(
                str(path), line, "gpu_milli", "a multi-GPU pod must take whole GPUs"
            )
        shape = Shape(
            gpus=gpus,
            gpu_milli=milli,
            cpu_milli=_field(path, line, row, "cpu_milli", _count),
            mem_mib=_field(path, line, row, "memory_mib", _count),
        )
        spec = (row.get("gpu_spec") or "").strip()
        gpu_types = tuple(t.strip() for t in spec.split("|") if t.strip()) if spec else ()
        created = (
            _field(path, line, row, "creation_time", _optional_float)
            if "creation_time" in row
            else None
        )
        deleted = (
            _field(path, line, row, "deletion_time", _optional_float)
            if "deletion_time" in row
            else None
        )
        duration = deleted - created if created is not None and deleted is not None else None
        jobs.append(
            TraceJob(
                id=name,
                tenant=TENANT,
                submit_s=created or 0.0,
                duration_s=duration,
                shape=shape,
                gpu_types=gpu_types,
            )
        )
    return jobs


def load_pod_runs(path: str | Path) -> tuple[list[TraceJob], int]:
    """The pods of a pod list with times, as jobs that run ``deletion_time -
    scheduled_time`` from their start, and how many the trace never scheduled (left
    out: they have no run time)."""
    scheduled: dict[str, float | None] = {}
    for line, row in _rows(path, (*POD_COLUMNS, *TIME_COLUMNS)):
        scheduled[row["name"].strip()] = _field(path, line, row, "scheduled_time", _optional_float)
    jobs: list[TraceJob] = []
    never = 0
    for job in load_pods(path):
        start = scheduled.get(job.id)
        if start is None:
            never += 1
            continue
        # deletion - creation (load_pods) less the wait the trace saw before scheduling
        waited = start - job.submit_s
        ran = (job.duration_s or 0.0) - waited
        if ran < 0:
            raise TraceFormatError(
                str(path),
                None,
                "deletion_time",
                f"pod {job.id!r} is deleted before it is scheduled",
            )
        jobs.append(replace(job, duration_s=ran))
    return jobs, never


def sample_nodes(nodes: Sequence[Node], scale: float, seed: int = SAMPLE_SEED) -> list[Node]:
    """``ceil(n * scale)`` of each GPU model's ``n`` nodes drawn with ``seed``, in file
    order; above 1, every node and copies (``scaled_copies``)."""
    if scale >= 1.0:
        return scaled_copies(nodes, scale)
    rng = random.Random(seed)
    by_model: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        by_model.setdefault(node.gpu_type, []).append(i)
    keep: set[int] = set()
    for model in sorted(by_model):
        members = by_model[model]
        keep.update(rng.sample(members, math.ceil(len(members) * scale)))
    return [n for i, n in enumerate(nodes) if i in keep]


def cluster_tenant(nodes: Sequence[Node]) -> Tenant:
    """The one tenant of an openb replay, guaranteed every GPU of every model."""
    capacity: dict[str, int] = {}
    for node in nodes:
        capacity[node.gpu_type] = capacity.get(node.gpu_type, 0) + node.gpus * GPU_MILLI
    quotas = tuple((model, Quota(milli, None)) for model, milli in sorted(capacity.items()))
    return Tenant(name=TENANT, quotas=quotas, weight=1.0)


class OpenbTrace:
    """``openb:PODS.csv`` with ``--nodes NODES.csv``: pods over time on the node list."""

    name = "openb"
    help = "openb pod list with times; needs --nodes NODE_LIST.csv"

    def load(self, request: TraceRequest) -> Workload:
        nodes_path = require(request.nodes, "--nodes", "NODE_LIST.csv", self.name)
        refuse(request.tenants, "--tenants", self.name)
        runs, never = load_pod_runs(request.path)
        jobs = [j for j in runs if request.in_window(j.submit_s)]
        nodes = sample_nodes(load_nodes(nodes_path), request.scale)
        notes = (f"left out {never} pods the trace never scheduled (no run time)",) if never else ()
        return Workload(jobs, [cluster_tenant(nodes)], nodes, notes)
