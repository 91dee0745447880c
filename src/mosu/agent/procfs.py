"""What ``/proc`` says about processes: start times (to tell a process from a later one
that reused its pid), parents, environment markers, and signals that cannot hit a
reused pid.

Stdlib only: the supervisor imports this and starts without site-packages.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name: [state, ppid, pgrp, ...]."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (field 22 of its stat)."""
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def boot_id() -> str:
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def is_running(pid: int, ticks: int | None = None) -> bool:
    """Whether ``pid`` is a live (not zombie) process, and the same one if ``ticks`` is
    given."""
    fields = _stat(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return ticks is None or (len(fields) > 19 and int(fields[19]) == ticks)


def pids() -> list[int]:
    try:
        return [int(e) for e in os.listdir(PROC) if e.isdigit()]
    except OSError:
        return []


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` in the parent tree (a subreaper adopts the
    orphans of its tree, so a double fork stays below it)."""
    children: dict[int, list[int]] = {}
    for pid in pids():
        fields = _stat(pid)
        if fields and len(fields) > 1 and fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def with_environment(markers: Iterable[str]) -> set[int]:
    """Live processes whose environment holds every ``NAME=value`` of ``markers``."""
    wanted = [m.encode() for m in markers]
    found: set[int] = set()
    for pid in pids():
        try:
            env = (PROC / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(m in env for m in wanted) and is_running(pid):
            found.add(pid)
    return found


def is_namespace_init(pid: int) -> bool:
    """Whether ``pid`` is process 1 of a pid namespace below ours (e.g. bubblewrap's)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("NSpid:"):
                ids = line.split()[1:]
                return len(ids) > 1 and ids[-1] == "1"
    except OSError:
        pass
    return False


def signal_process(pid: int, ticks: int | None, sig: int) -> bool:
    """Send ``sig`` to ``pid`` only if it is still the process that started at ``ticks``:
    the pid is pinned with a pidfd first, so a pid reused after the check is never hit."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if ticks is not None and start_ticks(pid) != ticks:
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def kill_all(pids_: Iterable[int], sig: int = signal.SIGKILL) -> int:
    sent = 0
    for pid in pids_:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            sent += 1
    return sent
