"""One unprivileged Unix user per tenant, created on first use, with its own home.

The name is derived from the tenant alone, so it is the same on every node and after
every restart: ``mosu-<tenant>`` when that is a valid Linux user name of at most 32
characters, else ``mosu_<tenant, shortened>-<8 hex of its SHA-256>`` (tenant names may
hold ``.`` and run to 63 characters; the ``_`` after ``mosu`` keeps the two forms from
ever colliding). Creation takes a lock and tolerates another process creating the same
user at the same moment, so concurrent starts on one machine are safe.

Stdlib only: the supervisor imports this and starts without site-packages.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_NAME = 32
_VALID = re.compile(r"^[a-z][a-z0-9_-]*$")
USERADD_NAME_IN_USE = 9


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    uid: int
    gid: int
    home: Path


def user_name(tenant: str) -> str:
    """The Unix user of ``tenant``'s replicas."""
    plain = f"mosu-{tenant}"
    if len(plain) <= MAX_NAME and _VALID.match(plain):
        return plain
    digest = hashlib.sha256(tenant.encode()).hexdigest()[:8]
    short = re.sub(r"[^a-z0-9_-]", "-", tenant.lower())[: MAX_NAME - len("mosu_") - 9]
    return f"mosu_{short}-{digest}"


def private_home_root(home_root: Path) -> None:
    """Create ``home_root`` (and missing parents) owned by root, mode 0711: a tenant may
    enter its own home but not list the others. Call only single-threaded (the umask is
    cleared for the moment)."""
    missing = []
    path = home_root
    while not path.exists():
        missing.append(path)
        path = path.parent
    old = os.umask(0)
    try:
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=0o711)
    finally:
        os.umask(old)


@contextlib.contextmanager
def _locked(home_root: Path) -> Iterator[None]:
    fd = os.open(home_root / ".users.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_user(tenant: str, home_root: Path) -> Identity:
    """The tenant's user, created (with its home, mode 0700) if it does not exist yet."""
    name = user_name(tenant)
    home = home_root / name
    private_home_root(home_root)
    with _locked(home_root):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            _useradd(name, tenant, home)
            entry = pwd.getpwnam(name)
        if not home.exists():
            home.mkdir(mode=0o700)
            os.chown(home, entry.pw_uid, entry.pw_gid)
    owner = home.stat().st_uid
    if owner != entry.pw_uid:
        raise PermissionError(f"home {home} of user {name} belongs to uid {owner}, not to it")
    return Identity(user=name, uid=entry.pw_uid, gid=entry.pw_gid, home=home)


def _useradd(name: str, tenant: str, home: Path) -> None:
    exe = shutil.which("useradd") or "/usr/sbin/useradd"
    done = subprocess.run(
        [
            exe,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            str(home),
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            f"mosu tenant {tenant}",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in (0, USERADD_NAME_IN_USE):
        raise OSError(f"useradd {name} failed: {done.stderr.strip() or done.returncode}")
