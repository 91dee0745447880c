"""What tests need to run real jobs as the tenants' own Unix users.

A replica runs as an unprivileged user (``users`` sandbox, the server being root), so
its command must be something that user may execute and its files must go where that
user may write. The test interpreter may live under a private home (``/root/.pyenv``):
jobs use the system's ``python3`` instead (they need the standard library only), and
write into a sticky world-writable directory created for the test.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mosu.agent.replica_env import DEFAULT_PATH
from mosu.agent.supervised import stop_supervisors_under


def _open_to_all(path: Path) -> bool:
    """Whether any user may run ``path``: it and each directory above it are open."""
    try:
        if not path.stat().st_mode & stat.S_IXOTH:
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)
    except OSError:
        return False


def job_python() -> str:
    """A Python interpreter every user can run (standard library only)."""
    real = Path(sys.executable).resolve()
    if _open_to_all(real):
        return sys.executable
    found = shutil.which("python3", path=DEFAULT_PATH)
    if found is None:
        raise RuntimeError("no python3 on the replicas' PATH: install it to run job tests")
    return found


JOB_PYTHON = job_python()


@contextmanager
def shared_dir(prefix: str = "mosu-test-") -> Iterator[Path]:
    """A directory every tenant's user may write in (sticky, like /tmp), removed after."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        os.chmod(path, 0o1777)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def shared_copy(script: Path, into: Path) -> Path:
    """A copy of ``script`` that every user may read."""
    target = into / script.name
    shutil.copyfile(script, target)
    os.chmod(target, 0o644)
    return target


def stop_leftover_replicas(root: Path) -> int:
    """End every replica whose supervisor keeps its state below ``root`` (a test's data
    directories): servers leave their replicas running by design."""
    return stop_supervisors_under(root, grace_s=0.0)
