"""The executor contract: start a job attempt, poll for exits, stop with a grace period."""

from __future__ import annotations

from abc import ABC, abstractmethod

from mosu.core.api import JobExit, JobLaunch


class Executor(ABC):
    @abstractmethod
    def start(self, launch: JobLaunch) -> dict[int, int]:
        """Launch every replica; return replica → pid. Raises ``OSError`` if one cannot start
        (the others are stopped first)."""

    @abstractmethod
    def poll(self) -> list[JobExit]:
        """Attempts whose processes have all exited since the last poll."""

    @abstractmethod
    def stop(self, job_id: int, grace_s: float) -> None:
        """Ask the job to stop (SIGTERM) and kill it after ``grace_s`` seconds."""

    @abstractmethod
    def terminate_orphans(self, job_id: int, pids: list[int], grace_s: float) -> int:
        """Stop processes of ``job_id`` that a previous server process left behind."""

    @abstractmethod
    def shutdown(self, grace_s: float) -> None:
        """Stop every job and wait (at most ``grace_s`` plus a moment) until they are gone."""
