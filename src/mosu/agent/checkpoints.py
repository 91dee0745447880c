"""Checkpoint reports: a replica says it saved a checkpoint by writing (or touching) the
file ``MOSU_CHECKPOINT_FILE`` names; the platform may ask it for one with a signal.

The file is in the tenant's home (``HOME/.mosu-checkpoints/INSTANCE.JOB.ATTEMPT.REPLICA``),
the one place a replica may write that is the same path inside and outside its sandbox;
the directory is made as the replica's own user before its command runs. Its
modification time is the report. The replica is not trusted, and the supervisor reading
it may be root:

- the file is found without following a link: every directory below the home is opened
  with ``O_NOFOLLOW``, and the file itself is only ``lstat``ed, never opened or read;
- a link, a directory or anything else that is not a regular file, or a file another
  user owns, is no report;
- a time before the attempt began is no report; a time in the future counts as the moment
  it was seen (and is not moved forward again while the file stays as it is).

The supervisor writes what it saw to ``checkpoint.json`` in its run directory (private to
the platform): the latest report, the request it last delivered and whether a report
came after it. A request is ``checkpoint-request.json`` there, written by the starter.

Stdlib only: the supervisor imports this and starts without site-packages.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINT_DIR = ".mosu-checkpoints"
"""The directory of a tenant's home that holds its replicas' checkpoint files."""
REPORT = "checkpoint.json"
"""In a run directory: what the supervisor saw (``at``, ``requested``, ``answered``)."""
REQUEST = "checkpoint-request.json"
"""In a run directory: a request to deliver a checkpoint signal (``id``, ``signal``)."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def checkpoint_file(home: Path, instance: str, job_id: int, attempt: int, replica: int) -> Path:
    """The file one replica of one attempt writes after each checkpoint it saves."""
    return home / CHECKPOINT_DIR / f"{instance}.{job_id}.{attempt}.{replica}"


def _walk(home: Path, parts: Sequence[str], *, create: bool) -> int:
    """A descriptor of ``home/parts...``, each step opened without following a link
    (and made, 0700, when ``create`` and missing)."""
    fd = os.open(home, _DIR_FLAGS)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
            step = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = step
    except BaseException:
        os.close(fd)
        raise
    return fd


def _parts(home: Path, path: Path) -> tuple[str, ...]:
    return path.relative_to(home).parts


def make_directory(home: Path, path: Path) -> None:
    """Create the directory of ``path`` under ``home``; called as the replica's own user,
    so the directory is its own. A failure is left to the job (its write fails)."""
    with contextlib.suppress(OSError, ValueError):
        os.close(_walk(home, _parts(home, path)[:-1], create=True))


def stat_report(home: Path, path: Path, uid: int | None) -> os.stat_result | None:
    """``lstat`` of the checkpoint file, if it is a regular file (owned by ``uid`` when
    given) reached without following a link; None otherwise."""
    try:
        parts = _parts(home, path)
        fd = _walk(home, parts[:-1], create=False)
    except (OSError, ValueError):
        return None
    try:
        found = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not stat.S_ISREG(found.st_mode):
        return None
    if uid is not None and found.st_uid != uid:
        return None
    return found


def remove_report(home: Path, path: Path) -> None:
    """Remove the checkpoint file of an attempt that ended (never through a link)."""
    with contextlib.suppress(OSError, ValueError):
        parts = _parts(home, path)
        fd = _walk(home, parts[:-1], create=False)
        try:
            os.unlink(parts[-1], dir_fd=fd)
        finally:
            os.close(fd)


class CheckpointWatch:
    """One replica's reports, as its supervisor follows them."""

    def __init__(self, home: Path, path: Path, *, uid: int | None, started_at: float) -> None:
        self.home = home
        self.path = path
        self.uid = uid
        self.started_at = started_at
        self._seen: tuple[int, int, int, int] | None = None
        self.at: float | None = None
        """The latest report (seconds since the epoch)."""
        self.requested = 0
        """The id of the last request delivered (0: none)."""
        self.answered = 0
        """The id of the last request a report came after (0: none)."""

    def observe(self, now: float) -> bool:
        """Look at the file once; True when what it reports changed."""
        found = stat_report(self.home, self.path, self.uid)
        key = (
            None
            if found is None
            else (found.st_ino, found.st_mtime_ns, found.st_ctime_ns, found.st_size)
        )
        if key == self._seen:
            return False
        self._seen = key
        if found is None or found.st_mtime < self.started_at:
            return False  # gone, or older than the attempt: nothing new
        self.at = min(found.st_mtime, now)
        if self.requested and self.answered != self.requested:
            self.answered = self.requested
        return True

    def delivered(self, request_id: int) -> None:
        """A request was delivered: a report from now on answers it."""
        self.requested = request_id

    def report(self) -> dict[str, Any]:
        return {"at": self.at, "requested": self.requested, "answered": self.answered}


@dataclass(frozen=True, slots=True)
class GangCheckpoint:
    at: float | None
    requested: bool
    answered: bool


def gang_checkpoint(reports: Sequence[dict[str, Any] | None]) -> GangCheckpoint:
    """A gang's checkpoint from its replicas' reports: the oldest of the latest reports of
    the replicas that report at all (a job whose rank 0 alone saves reports from it alone;
    one whose every rank saves a shard has a checkpoint once each has); asked for one once
    any replica was; answered once every replica that reports has reported since."""
    reporting = [r for r in reports if r and isinstance(r.get("at"), int | float)]
    at = min(float(r["at"]) for r in reporting) if reporting else None
    asked = [int(r.get("requested") or 0) for r in reports if r]
    latest = max(asked, default=0)
    answered = bool(
        latest and reporting and all(int(r.get("answered") or 0) >= latest for r in reporting)
    )
    return GangCheckpoint(at=at, requested=latest > 0, answered=answered)
