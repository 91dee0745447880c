"""A stand-in training job that saves checkpoints when asked.

Usage: checkpoint_worker.py OUT_DIR RELEASE_NAME MODE. Appends what happens to it to
OUT_DIR/journal-JOB (``start``, ``asked``, ``saved``, ``term``, each with its attempt and
the time). MODE ``trap``: on SIGUSR1 it saves a checkpoint (OUT_DIR/state-JOB) and then
touches ``MOSU_CHECKPOINT_FILE``; on SIGTERM it exits 0. MODE ``deaf``: it ignores SIGUSR1
and SIGTERM alike (only SIGKILL ends it). It exits 0 by itself once OUT_DIR/RELEASE_NAME
exists (or after 120 s, so nothing outlives a broken test).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def main() -> None:
    out, release, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    job, attempt = os.environ["MOSU_JOB_ID"], os.environ["MOSU_ATTEMPT"]
    journal = out / f"journal-{job}"
    state = out / f"state-{job}"
    report = Path(os.environ["MOSU_CHECKPOINT_FILE"])

    def note(what: str) -> None:
        with journal.open("a") as f:
            f.write(f"{what} {attempt} {time.time():.6f}\n")

    def on_usr1(_signum: int, _frame: object) -> None:
        note("asked")
        state.write_text(f"attempt {attempt}\n")
        report.write_text("saved\n")  # after the checkpoint is whole
        note("saved")

    def on_term(_signum: int, _frame: object) -> None:
        note("term")
        sys.exit(0)

    if mode == "deaf":
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGUSR1, on_usr1)
        signal.signal(signal.SIGTERM, on_term)
    note("resumed" if state.exists() else "start")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / release).exists():
        time.sleep(0.05)


if __name__ == "__main__":
    main()
