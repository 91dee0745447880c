"""Cambricon MLUs from the ``cnmon`` table.

Each card is a pair of rows: ``| 0  /  MLU370-X8  v1.1.6 | … |`` (card, virtual
function, name, firmware) and under it ``| 0%  32C  106 W/ 250 W | 0 MiB/ 23374
MiB | … |``. Driver 4.x puts ``Inited Driver`` in the second column and adds a
``vMemory-Usage`` column; 5.x puts the bus id there. The first ``MiB`` pair is
the device memory. The card number is the index ``MLU_VISIBLE_DEVICES`` takes.
The process table after the cards is ignored.
"""

from __future__ import annotations

import re

from mosu.agent.discovery.devices import Device, DeviceSet, group, type_name
from mosu.core.accelerators import Vendor, model_from_product

TOOL = "cnmon"
ARGS: tuple[str, ...] = ()

_CARD_ROW = re.compile(r"^(\d+)\s+(\S+)\s+(MLU\S*)(?:\s+\S+)?$", re.IGNORECASE)
_MEMORY = re.compile(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB", re.IGNORECASE)


def parse(text: str) -> list[DeviceSet]:
    try:
        return group(Vendor.CAMBRICON, _devices(text), source=TOOL)
    except (ValueError, IndexError):
        return []


def _devices(text: str) -> list[Device]:
    devices: list[Device] = []
    card: tuple[int, str] | None = None
    for line in text.splitlines():
        if "Processes:" in line:
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or len(cells) < 2:
            continue
        row = _CARD_ROW.match(cells[0])
        if row:
            card = (int(row.group(1)), row.group(3))
            continue
        if card is not None:
            memory = _MEMORY.search(cells[1])
            index, name = card
            model = model_from_product(name) or type_name(name)
            devices.append(Device(index, model, int(memory.group(2)) if memory else 0))
            card = None
    return devices
