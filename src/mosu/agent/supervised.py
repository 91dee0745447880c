"""Replica supervisors seen from whoever starts them (the local executor in the server, a
Ray runner on its node): start them, find them again after a restart, ask them to stop,
read how the replica ended, and clean up after one that died without saying.

A supervisor is found by its run directory. Its ``lock`` is locked by the starter
before the supervisor exists and by the supervisor (which inherits it) while it lives,
so the lock being free means no supervisor is alive there; ``exit.json`` then says how
the replica ended, and its absence that it died with its supervisor (``lost``). The
handle in ``supervisor.json`` (pid, start time, boot id) lets a stop request reach the
supervisor without ever signalling a process that merely reused its pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mosu
from mosu.agent import cgroups, procfs
from mosu.agent.checkpoints import REPORT, REQUEST
from mosu.agent.supervisor import (
    EXIT,
    HANDLE,
    LOCK,
    LOG,
    STOP,
    read_json,
    write_atomically,
    write_durably,
)

_SOURCE_ROOT = str(Path(mosu.__file__).resolve().parents[1])
_BOOT = """import sys
sys.path.insert(0, sys.argv[1])
from mosu.agent.supervisor import main
main()
"""


def supervisor_argv(run_dir: Path | None, python: str = sys.executable) -> list[str]:
    """Isolated and without site-packages: the supervisor needs only the standard library
    and mosu's own source, and starts several times faster so. The run directory, when
    known at the start, is on its command line (it is no secret) for ``ps`` to show."""
    return [python, "-I", "-S", "-c", _BOOT, _SOURCE_ROOT, str(run_dir or "-")]


def supervisors_under(root: Path) -> dict[int, Path]:
    """Live supervisors whose run directory is below ``root``: pid → run directory (found
    by the run directory's ``lock``, which a supervisor holds open all its life)."""
    found: dict[int, Path] = {}
    prefix = str(root.absolute()).rstrip("/") + "/"
    for pid in procfs.pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if len(argv) < 6 or argv[4] != _BOOT.encode() or not procfs.is_running(pid):
                continue
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        for link in links:
            if link.startswith(prefix) and link.endswith(f"/{LOCK}"):
                found[pid] = Path(link).parent
    return found


def _locked(path: Path) -> int:
    """Create (if need be) and exclusively lock ``path``; its descriptor."""
    lock = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise SupervisorStartError(f"a supervisor already runs in {path.parent}") from None
    return lock


def _start(
    python: str, run_dir: Path | None, keep: tuple[int, ...], log: Path
) -> subprocess.Popen[bytes]:
    err = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        return subprocess.Popen(
            supervisor_argv(run_dir, python),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            pass_fds=keep,
            start_new_session=True,
            close_fds=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
    finally:
        os.close(err)


class SupervisorPool:
    """Supervisors started ahead of need, so a replica's start does not wait for an
    interpreter to start and import: each waits for its spec, holding the lock of a file
    in ``directory`` that is renamed into the replica's run directory when it is taken
    (the lock follows the file, so it is held without a gap). Idle ones end when their
    starter does (their spec pipe closes)."""

    def __init__(self, directory: Path, *, size: int = 2, python: str = sys.executable) -> None:
        private_dir(directory)
        self.directory = directory
        self.size = size
        self.python = python
        self._idle: list[tuple[subprocess.Popen[bytes], int, Path]] = []
        for stale in self.directory.glob("*.lock"):  # left by a starter that died
            with contextlib.suppress(OSError, SupervisorStartError):
                os.close(_locked(stale))
                stale.unlink()
                stale.with_suffix(".log").unlink(missing_ok=True)

    def fill(self) -> None:
        while len(self._idle) < self.size:
            path = self.directory / f"{os.getpid()}-{time.monotonic_ns():x}.lock"
            lock = _locked(path)
            try:
                proc = _start(self.python, None, (lock,), path.with_suffix(".log"))
            except OSError:
                os.close(lock)
                path.unlink(missing_ok=True)
                return
            self._idle.append((proc, lock, path))

    def take(self, run_dir: Path) -> tuple[subprocess.Popen[bytes], int] | None:
        """An idle supervisor, now owning ``run_dir`` (None when there is none)."""
        while self._idle:
            proc, lock, path = self._idle.pop(0)
            try:
                if proc.poll() is not None:
                    raise OSError("it ended")
                os.rename(path.with_suffix(".log"), run_dir / LOG)
                os.rename(path, run_dir / LOCK)
            except OSError:  # dead, or another filesystem: let it go
                self._end(proc, lock, path)
                continue
            return proc, lock
        return None

    def close(self) -> None:
        for proc, lock, path in self._idle:
            self._end(proc, lock, path)
        self._idle = []

    @staticmethod
    def _end(proc: subprocess.Popen[bytes], lock: int, path: Path) -> None:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # it reads an empty spec and leaves
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        os.close(lock)
        path.unlink(missing_ok=True)
        path.with_suffix(".log").unlink(missing_ok=True)


def stop_supervisors_under(root: Path, *, grace_s: float = 0.0, timeout_s: float = 30.0) -> int:
    """Stop every replica whose supervisor runs below ``root`` and wait until the
    supervisors are gone; returns how many there were."""
    found = supervisors_under(root)
    for pid, run_dir in found.items():
        SupervisedReplica.attach(run_dir).request_stop(grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(procfs.is_running(p) for p in found):
        time.sleep(0.05)
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return len(found)


def private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700 (never widened later)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)


class SupervisorStartError(OSError):
    def __init__(self, message: str, *, requeue: bool = False) -> None:
        super().__init__(message)
        self.requeue = requeue


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a replica ended. ``code`` follows ``subprocess``: negative for a signal."""

    code: int | None
    message: str = ""
    lost: bool = False
    stopped: bool = False


class SupervisedReplica:
    """One replica's supervisor, started here or found again."""

    def __init__(
        self,
        run_dir: Path,
        *,
        proc: subprocess.Popen[bytes] | None = None,
        handle: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.proc = proc
        """Set when we started it (it is our child, reaped by us)."""
        self.handle = handle
        self._lock_fd: int | None = None
        self._watch_fd: int | None = None

    # -- start ----------------------------------------------------------------------------

    @classmethod
    def spawn(
        cls,
        spec: dict[str, Any],
        *,
        python: str = sys.executable,
        tied: bool = False,
        pool: SupervisorPool | None = None,
    ) -> SupervisedReplica:
        """Start the supervisor of ``spec`` (its ``run_dir``), or hand ``spec`` to one
        waiting in ``pool``; ``confirm`` waits for it.

        ``tied``: the supervisor detaches from us (it is not our child) but stops its
        replica when this process ends: a Ray runner's replica must not outlive the
        runner, and Ray kills a dead worker's children, which would leave the replica's
        remains to nobody."""
        run_dir = Path(spec["run_dir"])
        private_dir(run_dir)
        for name in (EXIT, STOP, HANDLE, REPORT, REQUEST):
            with contextlib.suppress(FileNotFoundError):
                (run_dir / name).unlink()
        if (run_dir / LOCK).exists():
            os.close(_locked(run_dir / LOCK))  # raises if a supervisor holds it
        warm = pool.take(run_dir) if pool is not None and not tied else None
        watch_r = watch_w = -1
        if warm is not None:
            proc, lock = warm
        else:
            lock = _locked(run_dir / LOCK)
            keep: tuple[int, ...] = (lock,)
            if tied:
                watch_r, watch_w = os.pipe2(os.O_CLOEXEC)
                keep = (lock, watch_r)
                spec = {**spec, "daemonize": True, "watch_fd": watch_r}
            try:
                proc = _start(python, run_dir, keep, run_dir / LOG)
            except OSError:
                os.close(lock)
                if tied:
                    os.close(watch_r)
                    os.close(watch_w)
                raise
        replica = cls(run_dir, proc=proc)
        replica._lock_fd = lock
        if tied:
            os.close(watch_r)
            replica._watch_fd = watch_w  # held for as long as this process lives
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(spec).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        return replica

    def confirm(self, deadline: float) -> int:
        """Wait (until the monotonic ``deadline``) for the supervisor to start the replica;
        return the replica's main pid. Raises ``SupervisorStartError``."""
        assert self.proc is not None and self.proc.stdout is not None
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(timeout=left):
                    self.abort()
                    raise SupervisorStartError("the replica's supervisor did not answer in time")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        self._release_lock()
        self.proc.stdout.close()
        try:
            ack = json.loads(line)
        except ValueError:
            self.proc.wait(timeout=10)
            log = (self.run_dir / LOG).read_text(errors="replace").strip().splitlines()
            raise SupervisorStartError(
                f"the replica's supervisor failed: {log[-1] if log else 'no answer'}"
            ) from None
        if not ack.get("ok"):
            self.proc.wait(timeout=10)
            raise SupervisorStartError(str(ack.get("error")), requeue=bool(ack.get("requeue")))
        self.handle = ack["supervisor"]
        if self._watch_fd is not None:
            # Detached: the process we started has exited; the supervisor is its child.
            self.proc.wait(timeout=10)
            self.proc = None
        return int(ack["job_pid"])

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the supervisor holds the lock from now on
            self._lock_fd = None

    def abort(self) -> None:
        """A supervisor that never confirmed: end it and whatever it started."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        self._release_lock()

    # -- find again -----------------------------------------------------------------------

    @classmethod
    def attach(cls, run_dir: Path, handle: dict[str, Any] | None = None) -> SupervisedReplica:
        return cls(run_dir, handle=handle or read_json(run_dir / HANDLE))

    def job_pid(self) -> int | None:
        return int(self.handle["job_pid"]) if self.handle else None

    def alive(self) -> bool:
        """Whether a supervisor may still be alive in the run directory."""
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return False  # never started
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    # -- end ------------------------------------------------------------------------------

    def outcome(self) -> Outcome | None:
        """How the replica ended, or None while it runs."""
        record = read_json(self.run_dir / EXIT)
        if record is None or self.proc is not None:
            if self.alive():
                return None
            record = read_json(self.run_dir / EXIT)
        if record is None:
            return Outcome(None, "its supervisor ended without an exit record", lost=True)
        code = record.get("code")
        return Outcome(
            code=int(code) if code is not None else None,
            message=str(record.get("message", "")),
            stopped=bool(record.get("stopped")),
        )

    def request_stop(self, grace_s: float) -> None:
        """Ask the supervisor to stop the replica: SIGTERM now, SIGKILL after ``grace_s``.
        The request is a file too, so a supervisor never misses it."""
        with contextlib.suppress(OSError):
            write_durably(self.run_dir / STOP, {"grace_s": grace_s})
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGTERM)
        elif self.handle and self.handle.get("boot") == procfs.boot_id():
            procfs.signal_process(int(self.handle["pid"]), self.handle.get("start"), signal.SIGTERM)

    def request_checkpoint(self, signal_number: int, request_id: int) -> None:
        """Ask the supervisor to deliver ``signal_number`` to the replica, asking it for a
        checkpoint; it picks the request up within a second (``request_id`` grows with each
        request, so a request is delivered once)."""
        with contextlib.suppress(OSError):
            write_atomically(self.run_dir / REQUEST, {"id": request_id, "signal": signal_number})

    def checkpoint_report(self) -> dict[str, Any] | None:
        """What the supervisor last saw of the replica's checkpoint reports."""
        return read_json(self.run_dir / REPORT)

    def reap(self) -> bool:
        """Collect our child once it exited; True when there is nothing left to collect."""
        return self.proc is None or self.proc.poll() is not None


def kill_remains(
    *, instance: str, name: str, markers: Sequence[str], timeout_s: float = 10.0
) -> int:
    """End what is left of a replica whose supervisor died: its cgroup (in any hierarchy)
    and every process marked as its own. Returns how many processes were found."""
    groups = [
        d.group(instance, name)
        for d in (cgroups.driver("v1"), cgroups.driver("v2"))
        if d is not None
    ]
    found: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        live: set[int] = set()
        for g in groups:
            live |= {p for p in g.pids() if procfs.is_running(p)}
            g.kill()
        live |= procfs.with_environment(markers)
        procfs.kill_all(live)
        found |= live
        if not live or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for g in groups:
        g.remove()
    return len(found)
