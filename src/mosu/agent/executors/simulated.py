"""A simulated executor: a cluster of declared nodes whose replicas run no process.

Each attempt "runs" for a duration read from its spec and then exits with a code read
from it too, reported through ``poll`` exactly as the local executor reports a real exit.
The service cannot tell the difference: the same starts, exits, stops, preemptions and
lost nodes go through the same code paths, at the scale of a real incubator cluster on
one machine (load tests, demos, dashboards).

How long and how an attempt runs, first match wins:

1. ``SIMULATED_DURATION`` (seconds) and ``SIMULATED_EXIT`` (exit code) in the job's env;
2. a command of the form ``sleep N``, ``sleep N; exit K``, ``sleep N && exit K``,
   ``exit K``, ``true`` or ``false``: its duration and code as a shell would have them;
3. the job's ``estimate``;
4. ``default_duration_s``.

A job that declares a ``checkpoint_signal`` and is asked for a checkpoint (``Checkpoints``)
reports one ``SIMULATED_CHECKPOINT_S`` seconds later (its env; 0 when not set, never when
negative); simulated attempts report no checkpoint unless asked.

Nodes are reported through ``DiscoversNodes`` (the store mirrors them, as for Ray); a
node lost on demand (``lose_node``, or its name as a line of the ``down_file``) goes
``down`` in the store, and the attempts on it are reported lost, so they are requeued.
Nothing outlives the process: a new server is told every attempt it adopts was lost.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mosu.core.api import CheckpointReport, JobExit, JobLaunch
from mosu.core.executor import (
    Adoption,
    AttemptRecord,
    Capability,
    LaunchError,
    NodeReport,
    ReplicaStarted,
)
from mosu.core.models import Node, NodeState

DURATION_ENV = "SIMULATED_DURATION"
EXIT_ENV = "SIMULATED_EXIT"
CHECKPOINT_ENV = "SIMULATED_CHECKPOINT_S"
DEFAULT_DURATION_S = 60.0
SIGTERM = 15

_NUMBER = r"(\d+(?:\.\d+)?)"
_SLEEP_EXIT = re.compile(rf"^\s*sleep\s+{_NUMBER}\s*(?:(?:;|&&)\s*exit\s+(\d+)\s*)?;?\s*$")
_EXIT = re.compile(r"^\s*exit\s+(\d+)\s*;?\s*$")


@dataclass(frozen=True, slots=True)
class SimulatedRun:
    """How long an attempt runs and the code it exits with."""

    duration_s: float
    exit_code: int


def simulated_run(
    launch: JobLaunch, default_duration_s: float = DEFAULT_DURATION_S
) -> SimulatedRun:
    """The duration and exit code of ``launch`` by the convention in the module's doc."""
    env = launch.env
    code = _int(env.get(EXIT_ENV), 0)
    if DURATION_ENV in env:
        return SimulatedRun(max(0.0, _float(env[DURATION_ENV], default_duration_s)), code)
    argv = launch.argv
    command = argv[2] if argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3 else " ".join(argv)
    if (m := _SLEEP_EXIT.match(command)) is not None:
        return SimulatedRun(float(m.group(1)), int(m.group(2) or 0) & 0xFF)
    if (m := _EXIT.match(command)) is not None:
        return SimulatedRun(0.0, int(m.group(1)) & 0xFF)
    if command.strip() in ("true", "false"):
        return SimulatedRun(0.0, 0 if command.strip() == "true" else 1)
    if launch.estimate_s is not None:
        return SimulatedRun(launch.estimate_s, code)
    return SimulatedRun(default_duration_s, code)


def _float(text: str, default: float) -> float:
    try:
        return float(text)
    except ValueError:
        return default


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) & 0xFF if text is not None else default
    except ValueError:
        return default


@dataclass
class _Attempt:
    job_id: int
    attempt: int
    nodes: tuple[str, ...]
    ends_at: float
    exit_code: int | None
    message: str = ""
    stopping: bool = False
    checkpoint_s: float = 0.0
    """How long it takes to save a checkpoint when asked (negative: it never does)."""
    checkpoint_due: float | None = None
    """When the checkpoint it was asked for is saved (the executor's clock)."""
    asked: bool = False

    def checkpoint(self, now: float, wall: float) -> CheckpointReport:
        due = self.checkpoint_due
        done = due is not None and due <= now
        at = wall - (now - due) if done and due is not None else None
        return CheckpointReport(
            attempt=self.attempt, at=at, requested=due is not None or self.asked, answered=done
        )


class SimulatedExecutor:
    """Implements ``core.executor.Executor`` and ``DiscoversNodes`` without processes.

    ``clock`` is the time the simulated runs are measured in (injected by tests)."""

    sandbox = "none"
    capabilities = frozenset({Capability.DISCOVERS_NODES, Capability.CHECKPOINTS})

    def __init__(
        self,
        nodes: Sequence[Node],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        default_duration_s: float = DEFAULT_DURATION_S,
        down_file: Path | None = None,
    ) -> None:
        self._nodes = {n.name: n for n in nodes}
        self._clock = clock
        self._wall = wall
        """The time checkpoint reports are given in (seconds since the epoch)."""
        self._default_s = default_duration_s
        self._down_file = down_file
        self._down: set[str] = set()
        self._down_from_file: set[str] = set()
        self._jobs: dict[int, _Attempt] = {}
        self._ends: list[tuple[float, int, int]] = []
        """(end time, job id, attempt): a heap, so a poll looks only at what ended."""
        self._exited: list[JobExit] = []
        self._pid = 0

    @property
    def running(self) -> int:
        """Attempts running now."""
        return len(self._jobs)

    # ------------------------------------------------------------ nodes

    def cluster_nodes(self) -> list[NodeReport]:
        self._read_down_file()
        down = self._down | self._down_from_file
        return [
            NodeReport(node=replace(n, state=NodeState.DOWN) if n.name in down else n)
            for n in self._nodes.values()
        ]

    def lose_node(self, name: str) -> None:
        """The node goes away: every attempt with a replica on it is reported lost."""
        if name not in self._nodes:
            raise KeyError(name)
        self._down.add(name)
        self._lose_attempts_on({name})

    def restore_node(self, name: str) -> None:
        self._down.discard(name)

    def _read_down_file(self) -> None:
        if self._down_file is None:
            return
        try:
            lines = self._down_file.read_text().split()
        except OSError:
            lines = []
        now_down = {n for n in lines if n in self._nodes}
        newly = now_down - self._down_from_file
        self._down_from_file = now_down
        if newly:
            self._lose_attempts_on(newly)

    def _lose_attempts_on(self, names: set[str]) -> None:
        for job_id in sorted(self._jobs):
            att = self._jobs[job_id]
            hit = [i for i, node in enumerate(att.nodes) if node in names]
            if hit:
                del self._jobs[job_id]
                node = att.nodes[hit[0]]
                self._exited.append(
                    JobExit(
                        job_id=job_id,
                        attempt=att.attempt,
                        exit_code=None,
                        message=f"replica {hit[0]} lost: node {node} is gone",
                        lost=True,
                    )
                )

    # ------------------------------------------------------------ runs

    def start(self, launch: JobLaunch) -> dict[int, ReplicaStarted]:
        replicas = sorted(launch.replicas, key=lambda r: r.replica)
        for r in replicas:
            if r.node not in self._nodes or r.node in self._down | self._down_from_file:
                raise LaunchError(f"node {r.node} is not available", requeue=True)
        run = simulated_run(launch, self._default_s)
        ends_at = self._clock() + run.duration_s
        self._jobs[launch.job_id] = _Attempt(
            launch.job_id,
            launch.attempt,
            tuple(r.node for r in replicas),
            ends_at,
            run.exit_code,
            "" if run.exit_code == 0 else f"exit code {run.exit_code}",
            checkpoint_s=_float(launch.env.get(CHECKPOINT_ENV, "0"), 0.0),
        )
        heapq.heappush(self._ends, (ends_at, launch.job_id, launch.attempt))
        started = {}
        for r in replicas:
            self._pid += 1
            handle = f"sim:{launch.job_id}.{launch.attempt}.{r.replica}"
            started[r.replica] = ReplicaStarted(pid=self._pid, supervisor=handle)
        return started

    def poll(self) -> list[JobExit]:
        self._read_down_file()
        now = self._clock()
        while self._ends and self._ends[0][0] <= now:
            _, job_id, attempt = heapq.heappop(self._ends)
            att = self._jobs.get(job_id)
            if att is None or att.attempt != attempt or att.ends_at > now:
                continue  # lost meanwhile, or its end moved (stopped)
            del self._jobs[job_id]
            self._exited.append(
                JobExit(
                    job_id=job_id,
                    attempt=attempt,
                    exit_code=att.exit_code,
                    message=att.message,
                    checkpoint=att.checkpoint(now, self._wall()) if att.asked else None,
                )
            )
        out, self._exited = self._exited, []
        return out

    def checkpoints(self) -> dict[int, CheckpointReport]:
        now, wall = self._clock(), self._wall()
        return {job_id: att.checkpoint(now, wall) for job_id, att in self._jobs.items()}

    def request_checkpoint(self, job_id: int, signal: str) -> bool:
        """The attempt saves a checkpoint ``SIMULATED_CHECKPOINT_S`` from now (never when
        that is negative)."""
        att = self._jobs.get(job_id)
        if att is None or att.stopping:
            return False
        att.asked = True
        if att.checkpoint_s >= 0 and att.checkpoint_due is None:
            att.checkpoint_due = self._clock() + att.checkpoint_s
        return True

    def stop(self, job_id: int, grace_s: float) -> None:
        """Ends the attempt at once, as a process that dies of the SIGTERM (what a shell
        running ``sleep`` does); its exit is reported by the next poll."""
        att = self._jobs.get(job_id)
        if att is None or att.stopping:
            return
        att.stopping = True
        now = self._clock()
        if att.ends_at > now:
            att.ends_at, att.exit_code, att.message = now, None, "killed by SIGTERM"
            heapq.heappush(self._ends, (now, job_id, att.attempt))

    def adopt(self, attempts: Sequence[AttemptRecord]) -> Adoption:
        """Nothing simulated outlives the server that ran it: every attempt that had
        started is reported lost (requeued); one that never started is the caller's."""
        found = Adoption(running={}, unstarted=[])
        for rec in attempts:
            if rec.job_id in self._jobs:
                continue
            if all(r.supervisor is None for r in rec.replicas):
                found.unstarted.append(rec.job_id)
                continue
            self._exited.append(
                JobExit(
                    job_id=rec.job_id,
                    attempt=rec.attempt,
                    exit_code=None,
                    message="simulated run ended with the previous server",
                    lost=True,
                )
            )
        return found

    def detach(self) -> None:
        self._jobs.clear()
        self._ends.clear()

    def shutdown(self, grace_s: float) -> None:
        for job_id in list(self._jobs):
            self.stop(job_id, grace_s)
        self._exited.extend(self.poll())
