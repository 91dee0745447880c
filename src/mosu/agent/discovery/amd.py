"""AMD GPUs from ``amd-smi static`` (ROCm 6+) or, on older stacks, ``rocm-smi``.

``amd-smi static`` prints one indented block per device (``GPU: 0``, then
sections such as ``ASIC:``, ``BOARD:``, ``VRAM:``) and, on APUs, ``CPU: n``
blocks too; only ``ASIC/MARKET_NAME``, ``BOARD/PRODUCT_NAME`` and ``VRAM/SIZE``
are read, and a ``SIZE`` in another section (``CACHE_INFO``) is not memory.
Market names are sometimes generic or decorated (``MI300X-O``), so the model is
the known one named in the market name, else in the board's product name.

``rocm-smi --showproductname --showmeminfo vram --json`` prints ``{"card0":
{…}, "system": {…}}``; the key was ``Card series`` before ROCm 6 and ``Card
Series`` after, and the memory is in bytes. Card numbers are DRM minors, which
skip numbers on hosts with another display device, so the index is the card's
position in order.

Both tools count devices in their own enumeration order, which ROCm does not
promise to equal HIP's order on every host; docs/accelerators.md says how to
check.
"""

from __future__ import annotations

import json
import re

from mosu.agent.discovery.devices import Device, DeviceSet, group, type_name
from mosu.core.accelerators import Vendor, model_from_product

AMD_SMI = "amd-smi"
AMD_SMI_ARGS = ("static",)
ROCM_SMI = "rocm-smi"
ROCM_SMI_ARGS = ("--showproductname", "--showmeminfo", "vram", "--json")

_BLOCK = re.compile(r"^(GPU|CPU)\s*:\s*(\d+)\s*$")
_LINE = re.compile(r"^(\s*)([A-Z0-9_ ]+?)\s*:\s*(.*?)\s*$")
_SIZE = re.compile(r"^(\d+)\s*(MB|MiB)?$", re.IGNORECASE)


def parse_amd_smi(text: str) -> list[DeviceSet]:
    try:
        return group(Vendor.AMD, _amd_smi_devices(text), source=AMD_SMI)
    except (ValueError, IndexError):
        return []


def _amd_smi_devices(text: str) -> list[Device]:
    blocks: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    section = ""
    for raw in text.splitlines():
        block = _BLOCK.match(raw)
        if block:
            current = (
                blocks.setdefault(int(block.group(2)), {}) if block.group(1) == "GPU" else None
            )
            section = ""
            continue
        line = _LINE.match(raw)
        if current is None or line is None:
            continue
        indent, key, value = len(line.group(1)), line.group(2), line.group(3)
        if indent <= 4 and not value:
            section = key
        elif section in ("ASIC", "BOARD", "VRAM"):
            current.setdefault(f"{section}/{key}", value)
    devices = []
    for index, fields in blocks.items():
        market = fields.get("ASIC/MARKET_NAME", "")
        product = fields.get("BOARD/PRODUCT_NAME", "")
        size = _SIZE.match(fields.get("VRAM/SIZE", ""))
        devices.append(Device(index, _model(market, product), int(size.group(1)) if size else 0))
    return [d for d in devices if d.model]


def parse_rocm_smi(text: str) -> list[DeviceSet]:
    try:
        return group(Vendor.AMD, _rocm_smi_devices(text), source=ROCM_SMI)
    except (ValueError, IndexError, TypeError, AttributeError):
        return []


def _rocm_smi_devices(text: str) -> list[Device]:
    start = text.find("{")
    if start < 0:
        return []
    # Warnings may come before the JSON and a log line after it.
    data, _ = json.JSONDecoder().raw_decode(text[start:])
    if not isinstance(data, dict):
        return []
    cards = sorted(
        (int(key[4:]), value)
        for key, value in data.items()
        if re.fullmatch(r"card\d+", key) and isinstance(value, dict)
    )
    devices = []
    for position, (_, fields) in enumerate(cards):
        series = str(fields.get("Card Series") or fields.get("Card series") or "")
        name = str(fields.get("Device Name") or "")
        total = str(fields.get("VRAM Total Memory (B)", ""))
        memory = int(total) // (1024 * 1024) if total.isdigit() else 0
        devices.append(Device(position, _model(series, name), memory))
    return [d for d in devices if d.model]


def _model(*names: str) -> str:
    for name in names:
        model = model_from_product(name)
        if model is not None:
            return model
    for name in names:
        if name and name.upper() != "N/A":
            return type_name(name)
    return ""
