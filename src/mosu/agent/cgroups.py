"""One cgroup per replica, so every process a job starts is found and ended, whatever it
does to escape (``setsid``, double forks, a cleared environment).

A process cannot leave its cgroup without write access to another cgroup's
``cgroup.procs``, which only root has. Two kernels' ways are supported:

- cgroup v2 (``cgroup2`` mounted at ``/sys/fs/cgroup``, or beside v1 at
  ``/sys/fs/cgroup/unified``): ``cgroup.kill`` ends every member at once (Linux 5.14+;
  older kernels freeze with ``cgroup.freeze`` and kill the members one by one);
- cgroup v1 with the ``freezer`` controller (``/sys/fs/cgroup/freezer``): the group is
  frozen, so nothing in it can fork, every member gets SIGKILL, and it is thawed.

A replica's group is ``mosu/<instance>/<job>.<attempt>.<replica>`` under the hierarchy,
a name any server of the same store can compute, so remains of a replica whose
supervisor died are found without it.

Stdlib only: the supervisor imports this and starts without site-packages.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
TOP = "mosu"
KINDS = ("auto", "v2", "v1", "none")


def _read_pids(path: Path) -> set[int]:
    try:
        return {int(x) for x in path.read_text().split()}
    except (OSError, ValueError):
        return set()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class ReplicaCgroup:
    """One replica's group in one hierarchy."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path

    def __repr__(self) -> str:
        return f"ReplicaCgroup({self.kind}, {self.path})"

    def join(self, pid: int = 0) -> None:
        """Move ``pid`` (0: the caller) into the group; its future children follow."""
        _write(self.path / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        return _read_pids(self.path / "cgroup.procs")

    def exists(self) -> bool:
        return self.path.is_dir()

    def kill(self) -> None:
        """SIGKILL every member, including any forked meanwhile."""
        if not self.exists():
            return
        if self.kind == "v2" and (self.path / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(self.path / "cgroup.kill", "1")
            return
        freeze, frozen, thawed = (
            ("cgroup.freeze", "1", "0")
            if self.kind == "v2"
            else ("freezer.state", "FROZEN", "THAWED")
        )
        with contextlib.suppress(OSError):
            _write(self.path / freeze, frozen)
            self._wait_frozen()
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            _write(self.path / freeze, thawed)

    def _wait_frozen(self, timeout_s: float = 1.0) -> None:
        # A member in uninterruptible sleep keeps the group FREEZING; killing it then is
        # still right, and the caller repeats until the group is empty.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.kind == "v2":
                    events = (self.path / "cgroup.events").read_text()
                    if "frozen 1" in events:
                        return
                elif (self.path / "freezer.state").read_text().strip() == "FROZEN":
                    return
            except OSError:
                return
            time.sleep(0.005)

    def remove(self) -> bool:
        """Delete the (empty) group, and its instance directory if that is empty too."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            return False
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()
        return True


class CgroupDriver:
    """Creates and finds replica groups in one hierarchy mounted at ``base``."""

    def __init__(self, kind: str, base: Path) -> None:
        self.kind = kind
        self.base = base

    def __repr__(self) -> str:
        return f"CgroupDriver({self.kind}, {self.base})"

    def describe(self) -> str:
        how = "cgroup.kill" if self.kind == "v2" else "freezer"
        return f"cgroup {self.kind} ({how}, {self.base})"

    def group(self, instance: str, name: str) -> ReplicaCgroup:
        return ReplicaCgroup(self.kind, self.base / TOP / instance / name)

    def create(self, instance: str, name: str) -> ReplicaCgroup:
        group = self.group(instance, name)
        # Another supervisor may remove the (empty) instance directory between our
        # mkdirs: try again.
        for _ in range(5):
            try:
                for path in (group.path.parent.parent, group.path.parent, group.path):
                    with contextlib.suppress(FileExistsError):
                        path.mkdir(mode=0o755)
                return group
            except FileNotFoundError:
                continue
        raise OSError(errno.ENOENT, f"could not create cgroup {group.path}")

    def groups(self, instance: str) -> dict[str, ReplicaCgroup]:
        """Every replica group of ``instance`` that exists, by name."""
        top = self.base / TOP / instance
        try:
            names = sorted(e.name for e in os.scandir(top) if e.is_dir())
        except OSError:
            return {}
        return {n: ReplicaCgroup(self.kind, top / n) for n in names}


def _usable(driver: CgroupDriver) -> bool:
    """Whether we may create groups there (root, or a delegated hierarchy)."""
    top = driver.base / TOP
    try:
        top.mkdir(mode=0o755, exist_ok=True)
    except OSError:
        return False
    return os.access(top, os.W_OK)


def _v2_base(root: Path) -> Path | None:
    if (root / "cgroup.controllers").exists():
        return root  # the unified hierarchy alone
    unified = root / "unified"
    return unified if (unified / "cgroup.controllers").exists() else None


def driver(kind: str, root: Path = ROOT) -> CgroupDriver | None:
    """The driver of ``kind`` (``v2`` or ``v1``) if this machine offers it to us."""
    if kind == "v2":
        base = _v2_base(root)
        found = CgroupDriver("v2", base) if base is not None else None
    elif kind == "v1":
        freezer = root / "freezer"  # the root group has no freezer.state of its own
        found = CgroupDriver("v1", freezer) if (freezer / "tasks").exists() else None
    else:
        return None
    return found if found is not None and _usable(found) else None


def _kills_at_once(found: CgroupDriver | None) -> bool:
    return found is not None and (found.base / TOP / "cgroup.kill").exists()


def detect(preference: str = "auto", root: Path = ROOT) -> CgroupDriver | None:
    """The hierarchy to use: ``auto`` prefers cgroup v2 with ``cgroup.kill`` (alone or
    mounted beside v1: an atomic kill that never leaves a group frozen), then v1's
    freezer, then v2 without ``cgroup.kill``; ``none`` uses no cgroup."""
    if preference not in KINDS:
        raise ValueError(f"unknown cgroup kind {preference!r}; use one of {', '.join(KINDS)}")
    if preference == "none":
        return None
    if preference != "auto":
        return driver(preference, root)
    v2 = driver("v2", root)
    if _kills_at_once(v2):
        return v2
    return driver("v1", root) or v2
