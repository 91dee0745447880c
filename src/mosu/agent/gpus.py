"""This machine's accelerators as the nodes ``mosu up`` registers.

The node model holds one GPU type per node, so a machine with two vendors (or two
models of one vendor) is registered as one node per device set: the first under the
machine's name, each other under ``<name>-<type>``. The local executor runs every
replica on this machine either way; each node's vendor decides which variable shows
a replica its devices.

Devices come from ``--gpus`` when the operator declares them, else from every vendor
tool discovery finds (``mosu.agent.discovery``), else a declared default.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from mosu.agent.discovery import DeviceSet, declared_devices
from mosu.agent.discovery import discover as discover_sets
from mosu.agent.discovery.nvidia import model_name
from mosu.core.accelerators import Vendor, vendor_of
from mosu.core.errors import InvalidInput

DEFAULT_GPU_TYPE = "H800"
DEFAULT_GPUS = 8


@dataclass(frozen=True, slots=True)
class LocalGpus:
    """One node's worth of this machine's devices: one GPU type."""

    name: str
    count: int
    gpu_type: str
    source: str
    """The tool that found them (``nvidia-smi``, ``npu-smi`` …) or ``declared``."""
    vendor: Vendor = Vendor.NVIDIA
    memory_mib: int = 0


def local_gpus(
    *,
    node_name: str,
    gpus: int | None = None,
    gpu_type: str | None = None,
    gpu_vendor: str | None = None,
    search_path: str | None = None,
) -> tuple[list[LocalGpus], list[str]]:
    """The nodes this machine is, and notes on device sets left out.

    - ``gpus`` given: that many devices of ``gpu_type`` (default H800), declared;
    - else every set discovery finds, one node each; with ``gpu_type`` (or
      ``gpu_vendor``), only the largest set of that type's vendor, registered under
      ``gpu_type`` (several models pooled under one name is the operator's choice);
    - else the declared default, 8 x ``gpu_type`` (default H800).

    An unknown vendor, or one that contradicts the type, is ``InvalidInput`` naming
    ``--gpu-vendor``. A discovered set whose indices do not start at 0 (a second model of
    one vendor, numbered after the first) is left out with a note: a node's devices are
    0..n-1, so it must be declared on a node of its own.
    """
    if gpus is not None:
        if gpus < 0:
            raise InvalidInput("must be 0 or more", field="--gpus")
        declared = declared_devices(
            gpu_type or DEFAULT_GPU_TYPE, gpus, vendor=_vendor(gpu_type, gpu_vendor)
        )
        return [_node(node_name, declared, declared.model)], []
    found = discover_sets(search_path=search_path)
    if gpu_type is not None or gpu_vendor is not None:
        wanted = vendor_of(gpu_type or "", gpu_vendor, field="--gpu-vendor")
        found = [s for s in found if s.vendor is wanted]
        if found:
            best = max(found, key=lambda s: s.count)  # max keeps the first of equals
            found = [best]
    notes: list[str] = []
    usable: list[DeviceSet] = []
    for device_set in found:
        if device_set.indices != tuple(range(device_set.count)):
            first, last = device_set.indices[0], device_set.indices[-1]
            notes.append(
                f"{device_set.count} x {device_set.model} ({device_set.source}, devices "
                f"{first}-{last}) left out: declare them on a node of their own"
            )
            continue
        usable.append(device_set)
    if not usable:
        declared = declared_devices(
            gpu_type or DEFAULT_GPU_TYPE, DEFAULT_GPUS, vendor=_vendor(gpu_type, gpu_vendor)
        )
        return [_node(node_name, declared, declared.model)], notes
    nodes = []
    for i, device_set in enumerate(usable):
        kind = gpu_type or device_set.model
        name = node_name if i == 0 else _suffixed(node_name, kind)
        nodes.append(_node(name, device_set, kind))
    return nodes, notes


def _vendor(gpu_type: str | None, gpu_vendor: str | None) -> Vendor | None:
    """The vendor of declared devices; the default type is NVIDIA's, so another vendor
    needs its type named."""
    if gpu_vendor is None:
        return None
    if gpu_type is None:
        vendor = vendor_of("", gpu_vendor, field="--gpu-vendor")
        if vendor is not Vendor.NVIDIA:
            raise InvalidInput(
                f"name the type of these {vendor.value} devices, e.g. --gpu-type "
                f"{_EXAMPLES[vendor]}",
                field="--gpu-type",
            )
    return vendor_of(gpu_type or DEFAULT_GPU_TYPE, gpu_vendor, field="--gpu-vendor")


_EXAMPLES = {
    Vendor.NVIDIA: DEFAULT_GPU_TYPE,
    Vendor.HUAWEI: "Ascend910B",
    Vendor.AMD: "MI300X",
    Vendor.CAMBRICON: "MLU370-X8",
}


def _node(name: str, devices: DeviceSet, gpu_type: str) -> LocalGpus:
    return LocalGpus(
        name=name,
        count=devices.count,
        gpu_type=gpu_type,
        source=devices.source,
        vendor=devices.vendor,
        memory_mib=devices.memory_mib,
    )


def _suffixed(base: str, gpu_type: str) -> str:
    suffix = re.sub(r"[^a-z0-9]+", "-", gpu_type.lower()).strip("-") or "gpu"
    return f"{base[: 62 - len(suffix)]}-{suffix}".strip("-._")


def gpu_type_name(product: str) -> str:
    """``NVIDIA H800 80GB HBM3`` → ``H800``: the first token that looks like a model."""
    return model_name(product)


def local_node_name() -> str:
    name = re.sub(r"[^a-z0-9._-]", "-", socket.gethostname().lower()).strip("-._")
    return name[:63] or "local"
