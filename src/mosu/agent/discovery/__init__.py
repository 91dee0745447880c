"""Which accelerators this machine has, from each vendor's own tool.

``discover()`` runs every vendor tool found on the search path (``nvidia-smi``,
``npu-smi info``, ``amd-smi static`` or else ``rocm-smi``, ``cnmon``) and returns
one ``DeviceSet`` per model it reports, so a machine with two vendors is two
GPU types. A tool that is missing, fails, hangs or prints something unreadable
contributes nothing: discovery never raises, and the caller falls back to the
devices the operator declared (``declared_devices``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence

from mosu.agent.discovery import amd, ascend, cambricon, nvidia
from mosu.agent.discovery.devices import Device, DeviceSet
from mosu.core.accelerators import Vendor, describe, vendor_of
from mosu.core.errors import InvalidInput

__all__ = ["TOOLS", "Device", "DeviceSet", "declared_devices", "discover", "run_tool"]

Parser = Callable[[str], list[DeviceSet]]

TOOLS: tuple[tuple[str, tuple[str, ...], Parser], ...] = (
    (nvidia.TOOL, nvidia.ARGS, nvidia.parse),
    (ascend.TOOL, ascend.ARGS, ascend.parse),
    (amd.AMD_SMI, amd.AMD_SMI_ARGS, amd.parse_amd_smi),
    (amd.ROCM_SMI, amd.ROCM_SMI_ARGS, amd.parse_rocm_smi),
    (cambricon.TOOL, cambricon.ARGS, cambricon.parse),
)
"""(executable, arguments, parser) in the order they are tried."""

_FALLBACK_FOR = {amd.ROCM_SMI: amd.AMD_SMI}
"""A tool asked only when the one it stands in for found nothing: rocm-smi is
amd-smi's predecessor and reports the same devices."""


def run_tool(executable: str, args: Sequence[str], *, timeout_s: float) -> str | None:
    """The tool's standard output, or None when it cannot run, fails or outlives ``timeout_s``."""
    try:
        done = subprocess.run(
            [executable, *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def discover(*, search_path: str | None = None, timeout_s: float = 15.0) -> list[DeviceSet]:
    """Device sets of every vendor tool present on ``search_path`` (default: ``PATH``)."""
    found: list[DeviceSet] = []
    found_by: dict[str, bool] = {}
    for tool, args, parse in TOOLS:
        stands_in_for = _FALLBACK_FOR.get(tool)
        if stands_in_for is not None and found_by.get(stands_in_for):
            continue
        executable = shutil.which(tool, path=search_path)
        output = run_tool(executable, args, timeout_s=timeout_s) if executable else None
        sets = parse(output) if output else []
        found_by[tool] = bool(sets)
        found.extend(sets)
    return sorted(found, key=lambda s: (list(Vendor).index(s.vendor), s.indices[0], s.model))


def declared_devices(
    model: str,
    count: int,
    *,
    vendor: str | Vendor | None = None,
    memory_mib: int | None = None,
) -> DeviceSet:
    """Devices the operator declares (``--gpus 8 --gpu-type Ascend910B --gpu-vendor huawei``).

    The vendor is checked against the model table (``InvalidInput`` naming
    ``gpu_vendor``); memory defaults to the table's.
    """
    if count < 0:
        raise InvalidInput("must be 0 or more", field="gpus")
    known = describe(model)
    memory = memory_mib if memory_mib is not None else (known.memory_mib if known else 0)
    return DeviceSet(
        vendor=vendor_of(model, vendor),
        model=known.name if known else model,
        indices=tuple(range(count)),
        memory_mib=memory,
        source="declared",
    )
