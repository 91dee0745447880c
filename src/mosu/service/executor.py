"""What the scheduling loop needs from an executor; ``mosu.agent.executors`` implement it.

The service depends on this protocol only, so executors (local processes, Ray)
are plugged in by whoever builds the app and the service never imports them.
"""

from __future__ import annotations

from typing import Protocol

from mosu.core.api import JobExit, JobLaunch


class ExecutorPort(Protocol):
    def start(self, launch: JobLaunch) -> dict[int, int]:
        """Launch every replica; return replica → pid. Raises ``OSError`` on failure."""
        ...

    def poll(self) -> list[JobExit]:
        """Attempts whose processes have all exited since the last poll."""
        ...

    def stop(self, job_id: int, grace_s: float) -> None:
        """SIGTERM now, SIGKILL after ``grace_s``; the exit is reported by ``poll``."""
        ...

    def terminate_orphans(self, job_id: int, pids: list[int], grace_s: float) -> int:
        """Stop processes a previous server left behind; return how many were found."""
        ...

    def shutdown(self, grace_s: float) -> None:
        """Stop everything still running (used when the server exits)."""
        ...
