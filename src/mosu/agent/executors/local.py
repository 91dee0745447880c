"""Runs each replica as a process on this machine.

Every replica gets its own process group (so a stop reaches the whole tree),
``CUDA_VISIBLE_DEVICES`` set to its GPU indices, ``MOSU_GPU_FRACTION`` when it
shares a GPU, and ``MOSU_JOB_ID``/``MOSU_REPLICA``/``MOSU_NUM_REPLICAS``;
stdout and stderr go to one log file per replica, appended across attempts.
A replica that fails stops its siblings: a gang lives and dies together.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mosu.agent.executors.base import Executor
from mosu.core.api import JobExit, JobLaunch


@dataclass
class _Attempt:
    job_id: int
    attempt: int
    procs: dict[int, subprocess.Popen[bytes]]
    codes: dict[int, int] = field(default_factory=dict)
    """Exit code of each replica's leader process."""
    done: set[int] = field(default_factory=set)
    """Replicas whose whole process group is gone."""
    kill_at: float | None = None
    """When SIGKILL follows the SIGTERM already sent; None while not stopping."""


class LocalExecutor(Executor):
    def __init__(self, *, instance: str, clock: Callable[[], float] = time.monotonic) -> None:
        """``instance`` names the store this executor serves (set as ``MOSU_INSTANCE``), so
        orphan cleanup never touches jobs of another mosu on the same machine."""
        self._instance = instance
        self._clock = clock
        self._jobs: dict[int, _Attempt] = {}
        self._exited: list[JobExit] = []

    # ------------------------------------------------------------ start

    def start(self, launch: JobLaunch) -> dict[int, int]:
        procs: dict[int, subprocess.Popen[bytes]] = {}
        try:
            for r in launch.replicas:
                procs[r.replica] = self._spawn(launch, r.replica)
        except OSError:
            for p in procs.values():
                _signal_group(p.pid, signal.SIGKILL)
                p.wait()
            raise
        self._jobs[launch.job_id] = _Attempt(launch.job_id, launch.attempt, procs)
        return {k: p.pid for k, p in procs.items()}

    def _spawn(self, launch: JobLaunch, replica: int) -> subprocess.Popen[bytes]:
        r = next(x for x in launch.replicas if x.replica == replica)
        # The server's own MOSU_* settings (tokens, database URL) never leak into jobs.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOSU_")}
        env.update(launch.env)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in r.gpu_indices)
        env["MOSU_INSTANCE"] = self._instance
        env["MOSU_JOB_ID"] = str(launch.job_id)
        env["MOSU_ATTEMPT"] = str(launch.attempt)
        env["MOSU_REPLICA"] = str(r.replica)
        env["MOSU_NUM_REPLICAS"] = str(len(launch.replicas))
        if r.gpu_indices and r.gpu_fraction < 1:
            env["MOSU_GPU_FRACTION"] = f"{r.gpu_fraction:g}"
        log = Path(r.log_path)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            gpus = env["CUDA_VISIBLE_DEVICES"] or "none"
            header = f"--- mosu: attempt {launch.attempt}, node {r.node}, GPUs {gpus} ---\n"
            out.write(header.encode())
            out.flush()
            return subprocess.Popen(
                launch.argv,
                cwd=launch.workdir or None,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    # ------------------------------------------------------------ poll

    def poll(self) -> list[JobExit]:
        self._collect()
        out, self._exited = self._exited, []
        return out

    def _collect(self) -> None:
        now = self._clock()
        done = self._exited
        for job_id in sorted(self._jobs):
            att = self._jobs[job_id]
            for k, p in att.procs.items():
                if k in att.done:
                    continue
                if k not in att.codes:
                    code = p.poll()
                    if code is None:
                        continue
                    att.codes[k] = code
                # The leader is gone. On a normal end take what it left behind along; while
                # stopping, let the rest of its group (e.g. the child of a shell) finish its
                # checkpoint until the grace period ends.
                if att.kill_at is None or now >= att.kill_at or not _group_alive(p.pid):
                    _signal_group(p.pid, signal.SIGKILL)
                    att.done.add(k)
            failed = [c for c in att.codes.values() if c != 0]
            if failed and att.kill_at is None and len(att.codes) < len(att.procs):
                self._terminate(att, grace_s=10.0, now=now)
            if att.kill_at is not None and now >= att.kill_at:
                for k, p in att.procs.items():
                    if k not in att.codes:
                        _signal_group(p.pid, signal.SIGKILL)
            if len(att.done) == len(att.procs):
                del self._jobs[job_id]
                done.append(_exit_report(att))

    # ------------------------------------------------------------ stop

    def stop(self, job_id: int, grace_s: float) -> None:
        att = self._jobs.get(job_id)
        if att is not None and att.kill_at is None:
            self._terminate(att, grace_s=grace_s, now=self._clock())

    def _terminate(self, att: _Attempt, *, grace_s: float, now: float) -> None:
        att.kill_at = now + grace_s
        for k, p in att.procs.items():
            if k not in att.done:
                _signal_group(p.pid, signal.SIGTERM)

    def shutdown(self, grace_s: float) -> None:
        for job_id in list(self._jobs):
            self.stop(job_id, grace_s)
        deadline = self._clock() + grace_s + 5
        while self._jobs and self._clock() < deadline:
            self._collect()  # exits are handed out by the next poll
            time.sleep(0.05)

    # ------------------------------------------------------------ orphans

    def terminate_orphans(self, job_id: int, pids: list[int], grace_s: float) -> int:
        groups = _job_groups(self._instance, job_id)
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while groups and time.monotonic() < deadline:
            if not _job_groups(self._instance, job_id):
                break
            time.sleep(0.05)
        for pgid in _job_groups(self._instance, job_id):
            _signal_group(pgid, signal.SIGKILL)
        return len(groups)


def _exit_report(att: _Attempt) -> JobExit:
    codes = [att.codes[k] for k in sorted(att.codes)]
    failed = [c for c in codes if c != 0]
    if not failed:
        return JobExit(job_id=att.job_id, attempt=att.attempt, exit_code=0)
    code = failed[0]
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else code
        return JobExit(
            job_id=att.job_id, attempt=att.attempt, exit_code=None, message=f"killed by {name}"
        )
    return JobExit(
        job_id=att.job_id, attempt=att.attempt, exit_code=code, message=f"exit code {code}"
    )


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (zombies do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) >= 3 and fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _job_groups(instance: str, job_id: int) -> list[int]:
    """Process groups on this machine holding a process of ``job_id``: found by the
    environment it was started with, so a recycled pid is never mistaken for the job."""
    marker = f"MOSU_JOB_ID={job_id}".encode()
    owner = f"MOSU_INSTANCE={instance}".encode()
    groups: set[int] = set()
    proc = Path("/proc")
    if not proc.exists():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        variables = environ.split(b"\0")
        if marker not in variables or owner not in variables:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) < 3 or fields[0] == "Z":
            continue
        groups.add(int(fields[2]))
    return sorted(groups)
