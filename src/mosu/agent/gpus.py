"""This machine's accelerators for ``mosu up``: the largest set discovery finds, else None.

A thin view over ``mosu.agent.discovery``, which reports every vendor's devices
(one set per model); callers that register one node per GPU type use it directly.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from mosu.agent.discovery import discover as discover_sets
from mosu.agent.discovery.nvidia import model_name
from mosu.core.accelerators import Vendor


@dataclass(frozen=True, slots=True)
class LocalGpus:
    count: int
    gpu_type: str
    source: str
    """The tool that found them (``nvidia-smi``, ``npu-smi`` …) or ``declared``."""
    vendor: Vendor = Vendor.NVIDIA
    memory_mib: int = 0


def discover() -> LocalGpus | None:
    """The set with the most devices any vendor tool reports, or None when no tool finds any."""
    sets = discover_sets()
    if not sets:
        return None
    best = max(sets, key=lambda s: s.count)  # max keeps the first of equals: vendor order
    return LocalGpus(
        count=best.count,
        gpu_type=best.model,
        source=best.source,
        vendor=best.vendor,
        memory_mib=best.memory_mib,
    )


def gpu_type_name(product: str) -> str:
    """``NVIDIA H800 80GB HBM3`` → ``H800``: the first token that looks like a model."""
    return model_name(product)


def local_node_name() -> str:
    name = re.sub(r"[^a-z0-9._-]", "-", socket.gethostname().lower()).strip("-._")
    return name[:63] or "local"
