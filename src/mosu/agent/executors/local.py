"""Runs each replica on this machine under its own supervisor (``mosu.agent.supervisor``).

The supervisor owns the replica's process tree and cgroup, runs it in the sandbox
(the tenant's Unix user, or bubblewrap) with the environment built by
``mosu.agent.replica_env``, and outlives the server: a server that stops or dies leaves
replicas running, and the next one adopts them from the run directories the store
recorded. A replica that fails stops its siblings: a gang lives and dies together.
Replicas report their checkpoints and are asked for one through their supervisors
(``Capability.CHECKPOINTS``, ``mosu.agent.checkpoints``).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mosu.agent import cgroups, procfs
from mosu.agent.checkpoints import gang_checkpoint
from mosu.agent.replica_env import ReplicaSlot, gang_contracts, marker_entries
from mosu.agent.sandbox import SandboxConfig
from mosu.agent.supervised import (
    Outcome,
    SupervisedReplica,
    SupervisorPool,
    SupervisorStartError,
    kill_remains,
)
from mosu.agent.supervisor import LOCK
from mosu.core.api import CheckpointReport, JobExit, JobLaunch
from mosu.core.executor import Adoption, AttemptRecord, Capability, LaunchError, ReplicaStarted

GANG_FAILURE_GRACE_S = 10.0
START_TIMEOUT_S = 60.0


@dataclass
class _Replica:
    index: int
    supervised: SupervisedReplica
    outcome: Outcome | None = None


@dataclass
class _Attempt:
    job_id: int
    attempt: int
    replicas: list[_Replica]
    stopping: bool = False
    first_failed: int | None = None
    """The replica that ended badly first, before the gang was being stopped."""
    order: list[int] = field(default_factory=list)


class LocalExecutor:
    """Implements ``core.executor.Executor`` with processes on this machine; nodes are
    registered (``mosu up`` registers this machine's), not discovered."""

    capabilities: frozenset[Capability] = frozenset({Capability.CHECKPOINTS})

    def __init__(
        self,
        *,
        instance: str,
        sandbox: SandboxConfig,
        cgroup: str = "auto",
        runs_dir: Path | None = None,
        pool_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``instance`` names the store this executor serves (``MOSU_INSTANCE``), so
        nothing of another mosu on the same machine is ever touched. ``runs_dir`` holds
        supervisors' run directories when a launch names none (tests). With ``pool_dir``
        (on the run directories' filesystem) two supervisors wait there ready, so a start
        does not wait for an interpreter."""
        self._instance = instance
        self._pool = SupervisorPool(pool_dir) if pool_dir is not None else None
        if self._pool is not None:
            self._pool.fill()
        self._sandbox = sandbox
        self._cgroup = cgroup
        self._runs_dir = runs_dir
        self._clock = clock
        self._jobs: dict[int, _Attempt] = {}
        self._exited: list[JobExit] = []
        self._detached: list[SupervisedReplica] = []

    @property
    def sandbox(self) -> str:
        return self._sandbox.mode

    def tracking(self) -> str:
        """How a replica's processes are found (banner)."""
        found = cgroups.detect(self._cgroup)
        fallback = "process tree (child subreaper) and environment marker"
        return found.describe() if found is not None else fallback

    # ------------------------------------------------------------ start

    def start(self, launch: JobLaunch) -> dict[int, ReplicaStarted]:
        replicas = sorted(launch.replicas, key=lambda r: r.replica)
        contracts = gang_contracts(
            instance=self._instance,
            job_id=launch.job_id,
            attempt=launch.attempt,
            slots=[
                ReplicaSlot(r.replica, r.node, tuple(r.gpu_indices), r.gpu_milli, r.vendor)
                for r in replicas
            ],
            master_addr="127.0.0.1",  # every replica runs on this machine
            master_port=_free_port(),
        )
        started: list[SupervisedReplica] = []
        try:
            for r, contract in zip(replicas, contracts, strict=True):
                gpus = ",".join(str(g) for g in r.gpu_indices) or "none"
                header = f"--- mosu: attempt {launch.attempt}, node {r.node}, GPUs {gpus} ---\n"
                spec = {
                    "run_dir": r.run_dir or str(self._run_dir(launch, r.replica)),
                    "log_path": r.log_path,
                    "header": header,
                    "argv": launch.argv,
                    "workdir": launch.workdir,
                    "job_env": launch.env,
                    "tenant": launch.tenant,
                    "contract": contract.to_json(),
                    "sandbox": self._sandbox.to_json(),
                    "cgroup": self._cgroup,
                }
                started.append(SupervisedReplica.spawn(spec, pool=self._pool))
            # Every supervisor starts at once; then each one's answer is read.
            deadline = time.monotonic() + START_TIMEOUT_S
            pids = [s.confirm(deadline) for s in started]
        except SupervisorStartError as exc:
            self._abandon(started)
            raise LaunchError(f"could not start: {exc}", requeue=exc.requeue) from None
        except OSError:
            self._abandon(started)
            raise
        self._jobs[launch.job_id] = _Attempt(
            launch.job_id,
            launch.attempt,
            [_Replica(r.replica, s) for r, s in zip(replicas, started, strict=True)],
        )
        return {
            r.replica: ReplicaStarted(pid=pid, supervisor=_handle_text(s))
            for r, s, pid in zip(replicas, started, pids, strict=True)
        }

    def _run_dir(self, launch: JobLaunch, replica: int) -> Path:
        if self._runs_dir is None:
            raise LaunchError("the launch names no run directory for its replicas")
        return self._runs_dir / str(launch.job_id) / f"{launch.attempt}.{replica}"

    def _abandon(self, started: list[SupervisedReplica]) -> None:
        """Stop supervisors of a start that failed half-way, and wait until they are gone."""
        for s in started:
            if s.handle is None:
                s.abort()
            else:
                s.request_stop(0.0)
        deadline = time.monotonic() + 15
        for s in started:
            while s.proc is not None and s.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)

    # ------------------------------------------------------------ poll

    def poll(self) -> list[JobExit]:
        if self._pool is not None:
            self._pool.fill()  # replace supervisors taken since, off the start's path
        self._detached = [s for s in self._detached if not s.reap()]
        for job_id in sorted(self._jobs):
            att = self._jobs[job_id]
            for r in att.replicas:
                if r.outcome is None:
                    r.outcome = r.supervised.outcome()
                    bad = r.outcome is not None and _bad(r.outcome)
                    if bad and att.first_failed is None and not att.stopping:
                        att.first_failed = r.index
            if att.first_failed is not None and not att.stopping:
                self._stop_attempt(att, GANG_FAILURE_GRACE_S)
            if all(r.outcome is not None for r in att.replicas):
                del self._jobs[job_id]
                report = _exit_report(att)
                checkpoint = _checkpoint_report(att)
                if checkpoint.at is not None or checkpoint.requested:
                    report.checkpoint = checkpoint
                self._exited.append(report)
        out, self._exited = self._exited, []
        return out

    # ------------------------------------------------------------ checkpoints

    def checkpoints(self) -> dict[int, CheckpointReport]:
        return {job_id: _checkpoint_report(att) for job_id, att in self._jobs.items()}

    def request_checkpoint(self, job_id: int, signal: str) -> bool:
        att = self._jobs.get(job_id)
        if att is None or att.stopping or att.first_failed is not None:
            return False
        number = int(_signal_number(signal))
        request_id = time.time_ns()
        for r in att.replicas:
            if r.outcome is None:
                r.supervised.request_checkpoint(number, request_id)
        return True

    # ------------------------------------------------------------ stop

    def stop(self, job_id: int, grace_s: float) -> None:
        att = self._jobs.get(job_id)
        if att is not None and not att.stopping:
            self._stop_attempt(att, grace_s)

    def _stop_attempt(self, att: _Attempt, grace_s: float) -> None:
        att.stopping = True
        for r in att.replicas:
            if r.outcome is None:
                r.supervised.request_stop(grace_s)

    def shutdown(self, grace_s: float) -> None:
        """Stop every replica and wait until each supervisor has recorded its end."""
        for job_id in list(self._jobs):
            self.stop(job_id, grace_s)
        deadline = self._clock() + grace_s + 10
        while self._jobs and self._clock() < deadline:
            self._exited.extend(self.poll())  # exits are handed out by the next poll
            time.sleep(0.05)
        # Supervisors we started and let go of are still ours to reap once they end.
        while True:
            self._detached = [s for s in self._detached if not s.reap()]
            if not self._detached or self._clock() >= deadline:
                break
            time.sleep(0.05)
        if self._pool is not None:
            self._pool.close()

    def detach(self) -> None:
        """Forget every replica; their supervisors keep running (a graceful server stop)."""
        for att in self._jobs.values():
            self._detached.extend(r.supervised for r in att.replicas if r.supervised.proc)
        self._jobs.clear()
        if self._pool is not None:
            self._pool.close()

    # ------------------------------------------------------------ adopt

    def adopt(self, attempts: Sequence[AttemptRecord]) -> Adoption:
        found = Adoption(running={}, unstarted=[])
        for rec in attempts:
            if rec.job_id in self._jobs:
                continue
            dirs = [Path(r.run_dir) if r.run_dir else None for r in rec.replicas]
            if all(d is None or not (d / LOCK).exists() for d in dirs):
                found.unstarted.append(rec.job_id)  # the server died before starting it
                continue
            att = _Attempt(rec.job_id, rec.attempt, [])
            for r in sorted(rec.replicas, key=lambda x: x.replica):
                if r.run_dir is None:
                    supervised = SupervisedReplica(Path("/nonexistent"))
                else:
                    supervised = _attach(Path(r.run_dir))
                replica = _Replica(r.replica, supervised)
                replica.outcome = supervised.outcome()
                if replica.outcome is not None and replica.outcome.lost:
                    kill_remains(
                        instance=self._instance,
                        name=f"{rec.job_id}.{rec.attempt}.{r.replica}",
                        markers=marker_entries(self._instance, rec.job_id, rec.attempt, r.replica),
                    )
                elif replica.outcome is None and supervised.job_pid() is not None:
                    found.running.setdefault(rec.job_id, {})[r.replica] = ReplicaStarted(
                        pid=int(supervised.job_pid() or 0), supervisor=_handle_text(supervised)
                    )
                if replica.outcome is not None and _bad(replica.outcome):
                    att.first_failed = r.replica if att.first_failed is None else att.first_failed
                att.replicas.append(replica)
            self._jobs[rec.job_id] = att
        self._sweep(attempts)
        return found

    def _sweep(self, attempts: Sequence[AttemptRecord]) -> None:
        """End processes of this store's replicas that belong to no running attempt."""
        keep = {(a.job_id, a.attempt) for a in attempts}
        for kind in ("v1", "v2"):
            found = cgroups.driver(kind)
            if found is None:
                continue
            for name, group in found.groups(self._instance).items():
                job, attempt, _replica = (int(x) for x in name.split("."))
                if (job, attempt) not in keep:
                    group.kill()
                    deadline = time.monotonic() + 5
                    while group.pids() and time.monotonic() < deadline:
                        time.sleep(0.02)
                    group.remove()
        owner = f"MOSU_INSTANCE={self._instance}"
        strays = []
        for pid in procfs.with_environment([owner]):
            ids = _marker_ids(pid)
            if ids is not None and ids not in keep:
                strays.append(pid)
        procfs.kill_all(strays, signal.SIGKILL)


def _attach(run_dir: Path, timeout_s: float = START_TIMEOUT_S) -> SupervisedReplica:
    """Find the supervisor in ``run_dir`` again. One caught in the middle of its start
    (the previous server died while starting it) is given the time to finish it."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = SupervisedReplica.attach(run_dir)
        if found.handle is not None or not found.alive() or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _marker_ids(pid: int) -> tuple[int, int] | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    values = dict(e.split(b"=", 1) for e in env if b"=" in e)
    with contextlib.suppress(KeyError, ValueError):
        return int(values[b"MOSU_JOB_ID"]), int(values[b"MOSU_ATTEMPT"])
    return None


def _handle_text(s: SupervisedReplica) -> str:
    import json

    h = s.handle or {}
    keep = {k: h.get(k) for k in ("pid", "start", "boot")}
    return json.dumps({"run_dir": str(s.run_dir), **keep}, sort_keys=True)


def _checkpoint_report(att: _Attempt) -> CheckpointReport:
    gang = gang_checkpoint([r.supervised.checkpoint_report() for r in att.replicas])
    return CheckpointReport(
        attempt=att.attempt, at=gang.at, requested=gang.requested, answered=gang.answered
    )


def _signal_number(name: str) -> signal.Signals:
    return signal.Signals[name]


def _bad(outcome: Outcome) -> bool:
    return outcome.lost or outcome.code != 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _exit_report(att: _Attempt) -> JobExit:
    outcomes = {r.index: r.outcome for r in att.replicas}
    lost = [k for k, o in sorted(outcomes.items()) if o is not None and o.lost]
    if lost:
        o = outcomes[lost[0]]
        assert o is not None
        message = f"replica {lost[0]} lost: {o.message}"
        return JobExit(
            job_id=att.job_id, attempt=att.attempt, exit_code=None, message=message, lost=True
        )
    codes = {k: o.code for k, o in outcomes.items() if o is not None}
    failed = [k for k in sorted(codes) if codes[k] != 0]
    if not failed:
        return JobExit(job_id=att.job_id, attempt=att.attempt, exit_code=0)
    first = att.first_failed if att.first_failed in failed else failed[0]
    code = codes[first]
    o = outcomes[first]
    if o is not None and o.message:
        return JobExit(job_id=att.job_id, attempt=att.attempt, exit_code=code, message=o.message)
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return JobExit(
            job_id=att.job_id, attempt=att.attempt, exit_code=None, message=f"killed by {name}"
        )
    return JobExit(
        job_id=att.job_id, attempt=att.attempt, exit_code=code, message=f"exit code {code}"
    )
