"""Huawei Ascend NPUs from the ``npu-smi info`` table.

Each device is a pair of rows: an NPU row (``| 0  910B3 | OK | power temp … |``)
and a chip row under it (``| 0  | 0000:C1:00.0 | aicore  used / total  … |``).
Layouts differ by driver and product:

- 910A/910B (npu-smi 23.x-25.x): chip header ``Chip``, memory then HBM pairs;
  the device memory is the HBM total (the last pair).
- 310P (``Chip Device`` header): no HBM column; the chip row's second number is
  the device's logical id.
- Atlas A3 (``Chip Phy-ID`` header): every NPU has two chips, each a device
  of its own, named ``Ascend910``; mosu calls them ``Ascend910C``.

The index a replica gets in ``ASCEND_RT_VISIBLE_DEVICES`` is the logical id: the
``Device`` column where there is one, else the chip's position in the table. The
NPU id is not it (310P cards number NPUs 0, 32, 96 …; a container that sees only
NPU 3 calls it device 0). The process table after the devices is ignored.
"""

from __future__ import annotations

import re

from mosu.agent.discovery.devices import Device, DeviceSet, group, type_name
from mosu.core.accelerators import Vendor

TOOL = "npu-smi"
ARGS = ("info",)

_NPU_ROW = re.compile(r"^(\d+)\s+([A-Za-z0-9][A-Za-z0-9._-]*)$")
_CHIP_ROW = re.compile(r"^(\d+)(?:\s+(\d+|NA|-))?$")
_BUS_ID = re.compile(r"^([0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]|NA)$")
_PAIR = re.compile(r"(\d+)\s*/\s*(\d+)")


def parse(text: str) -> list[DeviceSet]:
    try:
        return group(Vendor.HUAWEI, _devices(text), source=TOOL)
    except (ValueError, IndexError):
        return []


def _devices(text: str) -> list[Device]:
    has_device_column = False
    a3_layout = False
    name: str | None = None
    devices: list[Device] = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or len(cells) < 3:
            continue
        first = cells[0]
        if "Process id" in line or "Process name" in line:
            break  # the process table: no more devices
        if first.startswith("Chip"):
            has_device_column = "Device" in first
            a3_layout = "Phy-ID" in first or "Phy-Id" in first
            continue
        npu = _NPU_ROW.match(first)
        if npu and not _BUS_ID.match(cells[1]) and re.search(r"[A-Za-z]", npu.group(2)):
            name = npu.group(2)
            continue
        chip = _CHIP_ROW.match(first)
        if chip and name is not None and _BUS_ID.match(cells[1]):
            if has_device_column and chip.group(2) and chip.group(2).isdigit():
                index = int(chip.group(2))
            else:
                index = len(devices)
            pairs = _PAIR.findall(cells[2])
            memory = int(pairs[-1][1]) if pairs else 0
            devices.append(Device(index, model_name(name, a3_layout=a3_layout), memory))
            name = None
    return devices


def model_name(name: str, *, a3_layout: bool = False) -> str:
    """npu-smi's ``910B3`` → ``Ascend910B3``; an A3 table's ``Ascend910`` → ``Ascend910C``."""
    model = name if name.lower().startswith("ascend") else f"Ascend{name}"
    if a3_layout and model.lower() == "ascend910":
        return "Ascend910C"
    return type_name(model)
