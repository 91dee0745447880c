"""How a replica is kept from the platform's identity: the sandbox modes.

- ``users`` (the server runs as root): each tenant's replicas run as that tenant's own
  unprivileged Unix user (``mosu.agent.unix_users``), with no supplementary groups,
  ``no_new_privs`` set and their own ``HOME`` (0700). The data directory (0700, root),
  the server's environment and its processes are out of reach by plain Unix
  permissions.
- ``bwrap`` (the server is not root): replicas run under bubblewrap in a new user, pid,
  IPC and UTS namespace, with the data directory, the server user's ``HOME``, the client
  config's directory and every other tenant's home hidden under empty tmpfs mounts, and
  a private ``/tmp``. They share the server's uid, so only what the mounts hide is hidden.
- ``none``: replicas run as the server's user. Never chosen unless asked for by name.

``auto`` picks ``users`` as root and ``bwrap`` otherwise, and refuses to start when
bubblewrap cannot run, rather than fall back to ``none``.

Stdlib only: the supervisor imports this and starts without site-packages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mosu.agent.unix_users import Identity, ensure_user, user_name

MODES = ("auto", "users", "bwrap", "none")
USERS_HOME_ROOT = Path("/var/lib/mosu/homes")
"""Where tenants' homes live in ``users`` mode (a machine-wide place, as the users are)."""


class SandboxUnavailable(Exception):
    """The requested sandbox cannot run here; the message says what to do."""


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    mode: str
    """``users``, ``bwrap`` or ``none`` (resolved, never ``auto``)."""
    home_root: str
    """Tenants' homes are ``home_root/<user name>``."""
    hide: tuple[str, ...] = field(default=())
    """``bwrap``: paths replaced by an empty tmpfs inside the sandbox."""

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "home_root": self.home_root, "hide": list(self.hide)}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SandboxConfig:
        hide = data.get("hide") or []
        assert isinstance(hide, list)
        return cls(mode=str(data["mode"]), home_root=str(data["home_root"]), hide=tuple(hide))

    def describe(self) -> str:
        if self.mode == "users":
            return (
                f"users (each tenant runs as its own Unix user mosu-<tenant>, "
                f"homes under {self.home_root})"
            )
        if self.mode == "bwrap":
            return "bwrap (user, pid and mount namespaces hide the data directory and HOME)"
        return "none (UNSAFE: jobs run as the server's own user and can read its data)"


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def bwrap_works() -> bool:
    """Whether bubblewrap is installed and may create the namespaces we use here."""
    exe = bwrap_path()
    if exe is None:
        return False
    probe = [exe, "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/"]
    probe += ["--proc", "/proc", "--dev", "/dev", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def resolve(
    requested: str,
    *,
    home_root: Path | None,
    fallback_home_root: Path,
    hide: tuple[str, ...] = (),
    euid: int | None = None,
) -> SandboxConfig:
    """The sandbox to run replicas in. ``home_root`` overrides where homes live (by
    default ``USERS_HOME_ROOT`` as root, ``fallback_home_root`` otherwise)."""
    if requested not in MODES:
        raise SandboxUnavailable(f"unknown sandbox {requested!r}; use one of {', '.join(MODES)}")
    root = (os.geteuid() if euid is None else euid) == 0
    mode = requested
    if mode == "auto":
        if root:
            mode = "users"
        elif bwrap_works():
            mode = "bwrap"
        else:
            raise SandboxUnavailable(
                "no sandbox can run here: run the server as root (a Unix user per tenant) "
                "or install bubblewrap (apt-get install bubblewrap) with unprivileged user "
                "namespaces enabled; --sandbox none runs jobs as the server's own user"
            )
    elif mode == "users" and not root:
        raise SandboxUnavailable("sandbox users needs a server running as root")
    elif mode == "bwrap":
        if root:
            raise SandboxUnavailable(
                "sandbox bwrap as root would leave jobs root-owned files; use --sandbox users"
            )
        if not bwrap_works():
            raise SandboxUnavailable(
                "bubblewrap cannot run here: install it (apt-get install bubblewrap) and "
                "enable unprivileged user namespaces"
            )
    homes = home_root or (USERS_HOME_ROOT if mode == "users" else fallback_home_root)
    return SandboxConfig(mode=mode, home_root=str(homes), hide=hide if mode == "bwrap" else ())


def prepare(config: SandboxConfig, tenant: str) -> tuple[Identity | None, Path]:
    """The identity a tenant's replica runs as (None: the current one) and its home,
    both created if needed. Runs in the supervisor."""
    home_root = Path(config.home_root)
    if config.mode == "users":
        identity = ensure_user(tenant, home_root)
        return identity, identity.home
    home = home_root / user_name(tenant)
    missing = []
    path = home
    while not path.exists():
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
    return None, home


def wrap(config: SandboxConfig, argv: list[str], *, home: Path, workdir: Path) -> list[str]:
    """The command line that runs ``argv`` in ``workdir`` inside the sandbox."""
    if config.mode != "bwrap":
        return argv
    exe = bwrap_path() or "bwrap"
    args = [exe, "--die-with-parent", "--new-session", "--unshare-user", "--unshare-pid"]
    args += ["--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    args += ["--bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc"]
    hidden = ["/tmp"]
    args += ["--tmpfs", "/tmp"]
    for path in (*config.hide, config.home_root):
        if any(path == h or path.startswith(h.rstrip("/") + "/") for h in hidden):
            continue
        if os.path.exists(path):
            hidden.append(path)
            args += ["--tmpfs", path]
    args += ["--bind", str(home), str(home), "--chdir", str(workdir), "--"]
    return args + argv
