"""GPUs of this machine: from ``nvidia-smi`` when present, otherwise declared by the user."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LocalGpus:
    count: int
    gpu_type: str
    source: str
    """``nvidia-smi`` or ``declared``."""


def discover() -> LocalGpus | None:
    """GPUs reported by ``nvidia-smi``, or None when it is absent or reports none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.splitlines() if line.strip()]
    if not names:
        return None
    return LocalGpus(count=len(names), gpu_type=gpu_type_name(names[0]), source="nvidia-smi")


def gpu_type_name(product: str) -> str:
    """``NVIDIA H800 80GB HBM3`` → ``H800``: the first token that looks like a model."""
    for token in product.replace("NVIDIA", "").split():
        match = re.match(r"^[A-Z]+\d+[A-Za-z]*", token)
        if match:
            return match.group(0)
    return re.sub(r"[^A-Za-z0-9._-]", "-", product.strip())[:64] or "gpu"


def local_node_name() -> str:
    name = re.sub(r"[^a-z0-9._-]", "-", socket.gethostname().lower()).strip("-._")
    return name[:63] or "local"
