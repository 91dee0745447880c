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
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from mosu.core.errors import TraceFormatError
from mosu.core.models import GPU_MILLI, Node, Shape
from mosu.traces.schema import TraceJob

TENANT = "openb"
NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")

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
