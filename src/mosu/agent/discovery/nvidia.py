"""NVIDIA GPUs from ``nvidia-smi --query-gpu=index,name,memory.total --format=csv``.

The header row says which column is which, so output with more columns (or in
another order) parses too; without a header the columns are taken in the order
queried. ``[N/A]`` memory reads as unknown.
"""

from __future__ import annotations

import re

from mosu.agent.discovery.devices import Device, DeviceSet, group, type_name
from mosu.core.accelerators import Vendor

TOOL = "nvidia-smi"
ARGS = ("--query-gpu=index,name,memory.total", "--format=csv")
_COLUMNS = ("index", "name", "memory.total")


def parse(text: str) -> list[DeviceSet]:
    try:
        return group(Vendor.NVIDIA, _devices(text), source=TOOL)
    except (ValueError, IndexError):
        return []


def _devices(text: str) -> list[Device]:
    rows = [[cell.strip() for cell in line.split(",")] for line in text.splitlines()]
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    columns = dict(zip(_COLUMNS, range(len(_COLUMNS)), strict=True))
    header = [cell.lower() for cell in rows[0]]
    if "index" in header and any(cell.startswith("name") for cell in header):
        columns = {
            key: next((i for i, cell in enumerate(header) if cell.split(" ")[0] == key), -1)
            for key in _COLUMNS
        }
        rows = rows[1:]
    if columns["index"] < 0 or columns["name"] < 0:
        return []
    devices = []
    for row in rows:
        if len(row) <= max(columns.values()) or not row[columns["index"]].isdigit():
            continue
        memory = row[columns["memory.total"]] if columns["memory.total"] >= 0 else ""
        devices.append(
            Device(
                index=int(row[columns["index"]]),
                model=model_name(row[columns["name"]]),
                memory_mib=_mib(memory),
            )
        )
    return devices


def _mib(cell: str) -> int:
    match = re.match(r"^(\d+)\s*(MiB)?$", cell)
    return int(match.group(1)) if match else 0


def model_name(product: str) -> str:
    """``NVIDIA H800 80GB HBM3`` → ``H800``: the first token that looks like a model."""
    for token in product.replace("NVIDIA", "").split():
        match = re.match(r"^[A-Z]+\d+[A-Za-z]*", token)
        if match:
            return match.group(0)
    return type_name(product) or "gpu"
