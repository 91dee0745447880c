"""The replica supervisor: one small process per replica that owns the replica's process
tree and outlives the server (as ``slurmstepd`` outlives ``slurmctld`` and a containerd
shim outlives containerd).

Started by ``mosu.agent.supervised`` (the local executor in the server, or a Ray runner
on its node), it reads its spec as JSON on stdin, and then:

1. becomes a child subreaper, so orphans of the replica's tree (a ``setsid`` + double
   fork) are re-parented to it rather than to init;
2. prepares the sandbox (the tenant's Unix user and home, or bubblewrap) and builds the
   replica's environment from nothing (``mosu.agent.replica_env``);
3. creates the replica's cgroup, forks, moves the child into the cgroup, drops to the
   tenant's identity and execs the command, with output appended to the replica's log;
4. records where it lives (``supervisor.json``) and answers one line on stdout;
5. waits. A stop request (SIGTERM, with ``stop.json`` saying the grace period) sends
   SIGTERM to every process of the replica and SIGKILL to what is left when the grace
   period ends. When the main process ends, whatever it left behind is killed. Meanwhile
   it follows the replica's checkpoint reports and delivers a checkpoint request's signal
   (``mosu.agent.checkpoints``: ``checkpoint.json``, ``checkpoint-request.json``);
6. once the last process of the replica is gone, writes the exit status durably
   (``exit.json``: temporary file, fsync, rename, fsync of the directory), removes the
   cgroup and exits.

Its run directory (private to the server) holds ``lock``, which the server locked before
starting it and whose lock it inherits, so the lock is held exactly while a supervisor
may be alive: a server that finds the lock free and no ``exit.json`` knows the replica
died without one.

Only the standard library and ``mosu.agent`` modules that need nothing else are
imported, so it runs as ``python -I -S`` and starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

from mosu.agent import cgroups, procfs, sandbox
from mosu.agent.checkpoints import (
    REPORT,
    REQUEST,
    CheckpointWatch,
    checkpoint_file,
    make_directory,
    remove_report,
)
from mosu.agent.replica_env import ReplicaContract, build_env

LOCK = "lock"
HANDLE = "supervisor.json"
EXIT = "exit.json"
STOP = "stop.json"
LOG = "supervisor.log"

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
START_FAILED = 127

IDLE_WAIT_S = 1.0
BUSY_WAIT_S = 0.05


def write_durably(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON so that a crash leaves the old file or the
    new one, never a torn one, and the new one survives a power loss once this returns."""
    write_atomically(path, data, sync=True)


def write_atomically(path: Path, data: dict[str, Any], *, sync: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(data).encode())
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class StartFailed(Exception):
    def __init__(self, message: str, *, requeue: bool = False) -> None:
        super().__init__(message)
        self.requeue = requeue


class Supervisor:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.run_dir = Path(spec["run_dir"])
        self.contract = ReplicaContract.from_json(spec["contract"])
        self.config = sandbox.SandboxConfig.from_json(spec["sandbox"])
        self.default_grace_s = float(spec.get("grace_s", 30.0))
        self.watch_fd: int | None = spec.get("watch_fd")
        """Read end of a pipe whose write end the starter holds: EOF means it is gone."""
        self.group: cgroups.ReplicaCgroup | None = None
        self.job_pid = 0
        self.status: int | None = None
        """The main process's wait status once it has ended."""
        self.kill_at: float | None = None
        self.stopped = False
        self.adopted_codes: list[int] = []
        """Exit codes of the replica's other processes reaped once a stop began (orphans
        this subreaper adopted), in the order they ended."""
        self.term = False
        self.checkpoints: CheckpointWatch | None = None
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- start ----------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        self._libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        log_fd = -1
        try:
            try:
                identity, home = sandbox.prepare(self.config, self.spec["tenant"])
            except (OSError, ValueError) as exc:
                raise StartFailed(f"sandbox {self.config.mode}: {exc}", requeue=True) from None
            c = self.contract
            report = checkpoint_file(home, c.instance, c.job_id, c.attempt, c.replica)
            env = build_env(
                c,
                job_env=self.spec.get("job_env") or {},
                home=str(home),
                checkpoint_file=str(report),
            )
            workdir = Path(self.spec.get("workdir") or home)
            log_fd = self._open_log()
            self.group = self._cgroup()
            argv = sandbox.wrap(self.config, list(self.spec["argv"]), home=home, workdir=workdir)
            uid = identity.uid if identity is not None else os.geteuid()
            self.checkpoints = CheckpointWatch(home, report, uid=uid, started_at=time.time())
            self.job_pid = self._spawn(argv, env, workdir, identity, log_fd)
        except StartFailed as exc:
            self._cleanup_group()
            record = {"code": START_FAILED, "message": f"could not start: {exc}"}
            write_durably(self.run_dir / EXIT, {**record, "ended_at": time.time()})
            return {"ok": False, "error": str(exc), "requeue": exc.requeue}
        finally:
            if log_fd >= 0:
                os.close(log_fd)
        handle = {
            "pid": os.getpid(),
            "start": procfs.start_ticks(os.getpid()),
            "boot": procfs.boot_id(),
            "job_pid": self.job_pid,
            "cgroup": str(self.group.path) if self.group else None,
            "sandbox": self.config.mode,
            "starter": self.spec.get("starter"),
        }
        # Needed only while this machine is up: atomic, but not worth an fsync.
        write_atomically(self.run_dir / HANDLE, handle)
        return {"ok": True, "job_pid": self.job_pid, "supervisor": handle}

    def _on_term(self, *_: object) -> None:
        self.term = True

    def _open_log(self) -> int:
        log = Path(self.spec["log_path"])
        missing = []
        path = log.parent
        while not path.exists():
            missing.append(path)
            path = path.parent
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=0o700)
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.write(fd, str(self.spec.get("header", "")).encode())
        return fd

    def _cgroup(self) -> cgroups.ReplicaCgroup | None:
        try:
            found = cgroups.detect(str(self.spec.get("cgroup", "auto")))
        except ValueError:
            found = None
        if found is None:
            return None
        c = self.contract
        name = f"{c.job_id}.{c.attempt}.{c.replica}"
        try:
            group = found.create(c.instance, name)
        except OSError as exc:
            print(f"no cgroup for the replica ({exc}); tracking by process tree", file=sys.stderr)
            return None
        stale = group.pids()
        if stale:  # an earlier supervisor of this very replica left processes: end them
            group.kill()
        return group

    def _spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        workdir: Path,
        identity: Any,
        log_fd: int,
    ) -> int:
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        in_sandbox = self.config.mode == "bwrap"
        pid = os.fork()
        if pid == 0:  # the child: set up, drop privileges, exec; never return
            step = "start"
            try:
                os.close(err_r)
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                os.setsid()
                os.umask(0o022)  # the usual for the job's own files; its home is 0700
                if self.group is not None:
                    step = "cgroup"
                    self.group.join(os.getpid())
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
                if identity is not None:
                    step = f"user {identity.user}"
                    os.setgroups([])
                    os.setresgid(identity.gid, identity.gid, identity.gid)
                    os.setresuid(identity.uid, identity.uid, identity.uid)
                # After the identity change, which clears it: die with the supervisor.
                self._libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() != parent:
                    os._exit(START_FAILED)
                self._libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
                if self.checkpoints is not None:  # as the replica's user: its directory
                    make_directory(self.checkpoints.home, self.checkpoints.path)
                step = f"workdir {workdir}"
                os.chdir("/" if in_sandbox else workdir)
                os.closerange(3, err_w)
                os.closerange(err_w + 1, 1 << 16)
                step = argv[0]
                os.execvpe(argv[0], argv, env)
            except BaseException as exc:  # report why to the supervisor, whatever it was
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                with contextlib.suppress(OSError):
                    os.write(err_w, f"{step}: {reason}".encode()[:4000])
            os._exit(START_FAILED)
        os.close(err_w)
        chunks = []
        while chunk := os.read(err_r, 4096):
            chunks.append(chunk)
        os.close(err_r)
        if chunks:
            os.waitpid(pid, 0)
            raise StartFailed(b"".join(chunks).decode(errors="replace"))
        return pid

    # -- watch ----------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            self._reap()
            now = time.monotonic()
            if self.kill_at is None and self._stop_requested():
                self._begin_stop(now)
            asking = self._follow_checkpoints()
            # A normal end takes what the main process left behind along; a stop lets
            # the rest finish (say, a checkpoint) until the grace period ends.
            overdue = self.kill_at is not None and now >= self.kill_at
            if overdue or (self.status is not None and self.kill_at is None):
                self._kill_all()
            if self.status is not None and not self._members():
                break
            busy = self.status is not None or self.kill_at is not None or asking
            self._sleep(BUSY_WAIT_S if busy else IDLE_WAIT_S)
        # A process that ended after this turn's reap is gone from the members but still
        # a zombie here: collect its exit too (an adopted command's, under `sh -c`).
        self._reap()
        self._finish()

    def _follow_checkpoints(self) -> bool:
        """Deliver a new checkpoint request and record new reports; True while a request
        waits for its answer (the file is then looked at often)."""
        watch = self.checkpoints
        if watch is None:
            return False
        changed = watch.observe(time.time())
        request = read_json(self.run_dir / REQUEST)
        if request is not None and self.kill_at is None and self.status is None:
            request_id = request.get("id")
            sig = request.get("signal")
            if isinstance(request_id, int) and request_id > watch.requested and sig in _ASKS:
                procfs.kill_all(self._checkpoint_targets(), sig)
                watch.delivered(request_id)
                changed = True
        if changed:
            with contextlib.suppress(OSError):
                write_atomically(self.run_dir / REPORT, watch.report())
        return bool(watch.requested) and watch.answered != watch.requested

    def _checkpoint_targets(self) -> list[int]:
        """Who gets a checkpoint signal: every process of the replica but those that would
        die of it without passing it on: namespace inits, the bubblewrap launcher, and the
        ``/bin/sh -c`` mosu runs a string command under (while it is still that shell)."""
        skip = {self.job_pid} if self.config.mode == "bwrap" else set()
        argv = list(self.spec["argv"])
        wrapper = argv[:2] == ["/bin/sh", "-c"]
        return [
            p
            for p in self._members()
            if p not in skip
            and not procfs.is_namespace_init(p)
            and not (wrapper and _cmdline_is(p, argv))
        ]

    def _sleep(self, timeout_s: float) -> None:
        watched = [self._wake_r] if self.watch_fd is None else [self._wake_r, self.watch_fd]
        if self.kill_at is not None:
            watched = [self._wake_r]  # the starter's end is known already
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select(watched, [], [], timeout_s)
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 512):
                        pass

    def _reap(self) -> None:
        """Collect every ended child: the main process and adopted orphans alike."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.job_pid and self.status is None:
                self.status = status
            elif self.stopped:
                self.adopted_codes.append(os.waitstatus_to_exitcode(status))

    def _stop_requested(self) -> bool:
        return self.term or self._starter_gone() or (self.run_dir / STOP).exists()

    def _starter_gone(self) -> bool:
        """Whether the process that started us (a Ray runner) has ended."""
        if self.watch_fd is None:
            return False
        ready, _, _ = select.select([self.watch_fd], [], [], 0)
        return bool(ready)

    def _begin_stop(self, now: float) -> None:
        request = read_json(self.run_dir / STOP) or {}
        grace = float(request.get("grace_s", self.default_grace_s))
        self.stopped = True
        self.kill_at = now + max(0.0, grace)
        # Namespace inits (bubblewrap's) and the sandbox launcher itself pass the signal
        # on to nobody, and ending them would end the replica at once.
        skip = {self.job_pid} if self.config.mode == "bwrap" else set()
        targets = [p for p in self._members() if p not in skip and not procfs.is_namespace_init(p)]
        procfs.kill_all(targets, signal.SIGTERM)

    def _members(self) -> set[int]:
        """Every live process of the replica."""
        if self.group is not None:
            found = {p for p in self.group.pids() if procfs.is_running(p)}
        else:
            found = procfs.descendants(os.getpid())
            found |= procfs.with_environment(self.contract.markers())
        found.discard(os.getpid())
        return found

    def _kill_all(self) -> None:
        if self.group is not None:
            self.group.kill()
        procfs.kill_all(self._members())

    def _finish(self) -> None:
        status = self.status if self.status is not None else 0
        code = os.waitstatus_to_exitcode(status)  # negative: killed by that signal
        if self.stopped and code == -signal.SIGTERM and self._shell_wrapped():
            # A string command runs under `sh -c`, which the stop's SIGTERM kills at once
            # and which says nothing of how the command ended; the command's processes,
            # adopted when the shell died, do (a checkpoint and exit 0, say).
            code = next(
                (c for c in self.adopted_codes if c != 0), 0 if self.adopted_codes else code
            )
        if self.checkpoints is not None:
            # The last word on checkpoints is in place before the exit record is.
            with contextlib.suppress(OSError):
                self.checkpoints.observe(time.time())
                write_atomically(self.run_dir / REPORT, self.checkpoints.report())
            remove_report(self.checkpoints.home, self.checkpoints.path)
        record = {"code": code, "stopped": self.stopped, "ended_at": time.time()}
        write_durably(self.run_dir / EXIT, record)
        self._cleanup_group()

    def _shell_wrapped(self) -> bool:
        return self.config.mode != "bwrap" and list(self.spec["argv"][:2]) == ["/bin/sh", "-c"]

    def _cleanup_group(self) -> None:
        if self.group is None:
            return
        for _ in range(100):
            if not self.group.pids():
                break
            self.group.kill()
            time.sleep(0.01)
        self.group.remove()


_ASKS = {int(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGINT)}
"""Signals a checkpoint request may deliver (``core.api.CHECKPOINT_SIGNALS``)."""


def _cmdline_is(pid: int, argv: list[str]) -> bool:
    """Whether ``pid`` runs exactly ``argv`` (read no further than ``argv`` is long)."""
    want = b"".join(a.encode() + b"\0" for a in argv)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read(len(want) + 1) == want
    except OSError:
        return False


def main() -> None:
    os.umask(0o077)
    text = sys.stdin.buffer.read()
    if not text:
        return  # a waiting supervisor whose starter has gone (or needs it no longer)
    spec = json.loads(text)
    spec["starter"] = os.getppid()
    if spec.get("daemonize") and os.fork() > 0:
        # The starter's child exits at once: we are nobody's child it could take down
        # with it (Ray kills a worker's children when the worker exits).
        os._exit(0)
    supervisor = Supervisor(spec)
    ack = supervisor.start()
    with contextlib.suppress(OSError):
        sys.stdout.write(json.dumps(ack) + "\n")
        sys.stdout.flush()
        sys.stdout.close()
    if ack["ok"]:
        supervisor.run()


if __name__ == "__main__":
    main()
