"""``DeviceSet``: what discovery reports, and how parsers' per-device rows become sets."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mosu.core.accelerators import Vendor, describe


@dataclass(frozen=True, slots=True)
class Device:
    """One device as a tool printed it: its index for the vendor's visibility variable."""

    index: int
    model: str
    memory_mib: int
    """0 when the tool did not say."""


@dataclass(frozen=True, slots=True)
class DeviceSet:
    """Devices of one model on this machine: one GPU type for the scheduler."""

    vendor: Vendor
    model: str
    indices: tuple[int, ...]
    memory_mib: int
    """Per device: the smallest any of them reported, else the model table's, else 0."""
    source: str
    """The tool that found them (``nvidia-smi``, ``npu-smi`` …) or ``declared``."""

    @property
    def count(self) -> int:
        return len(self.indices)


def group(vendor: Vendor, devices: Iterable[Device], *, source: str) -> list[DeviceSet]:
    """Per-device rows → one ``DeviceSet`` per model, indices ascending, first index first."""
    by_model: dict[str, list[Device]] = {}
    for device in devices:
        by_model.setdefault(device.model, []).append(device)
    sets = []
    for model, members in by_model.items():
        indices = sorted({d.index for d in members})
        reported = [d.memory_mib for d in members if d.memory_mib > 0]
        known = describe(model)
        memory = min(reported) if reported else (known.memory_mib if known else 0)
        sets.append(DeviceSet(vendor, model, tuple(indices), memory, source))
    return sorted(sets, key=lambda s: s.indices[0])


def type_name(text: str) -> str:
    """A product string as a GPU type name: allowed characters only, at most 64."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-")
    return name[:64]
