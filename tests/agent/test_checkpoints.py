"""Checkpoint reports and requests through real supervisors: a replica reports by
touching ``MOSU_CHECKPOINT_FILE``, is asked for a checkpoint by its signal, and cannot
make a link, a future time or a stale time count as a report."""

from __future__ import annotations

import os
import pwd
import stat
import textwrap
import time
from pathlib import Path

import pytest

from mosu.agent.checkpoints import CHECKPOINT_DIR, gang_checkpoint
from mosu.agent.executors.local import LocalExecutor
from mosu.agent.unix_users import user_name
from mosu.core.api import CheckpointReport, JobExit
from tests.agent.conftest import ROOT, launch
from tests.agent.test_local_executor import wait_exits, wait_file
from tests.jobs import JOB_PYTHON

TRAPS = textwrap.dedent(
    """
    import os, signal, sys, time
    WORK, MODE = {work!r}, {mode!r}
    ckpt = os.environ["MOSU_CHECKPOINT_FILE"]
    def save(*_):
        with open(os.path.join(WORK, "signalled-" + os.environ["MOSU_REPLICA"]), "w") as f:
            f.write("x")
        with open(ckpt, "w") as f:
            f.write("step 7\\n")
    signal.signal(signal.SIGUSR1, signal.SIG_IGN if MODE == "ignore" else save)
    with open(os.path.join(WORK, "ready-" + os.environ["MOSU_REPLICA"]), "w") as f:
        f.write(ckpt + "\\n")
    while True:
        time.sleep(0.05)
    """
)


def wait_report(ex: LocalExecutor, job_id: int, check, timeout: float = 30.0) -> CheckpointReport:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = ex.checkpoints().get(job_id)
        if report is not None and check(report):
            return report
        time.sleep(0.05)
    pytest.fail(f"no such checkpoint report in time: {ex.checkpoints().get(job_id)}")


def test_a_replica_asked_for_a_checkpoint_gets_its_signal_and_its_report_is_seen(
    make_executor, tmp_path, work
):
    ex = make_executor()
    began = time.time()
    ex.start(launch(tmp_path, TRAPS.format(work=str(work), mode="trap"), gpus=((0,), (1,))))
    ckpt = Path(wait_file(work / "ready-0").strip())
    wait_file(work / "ready-1")
    assert ckpt.parent.name == CHECKPOINT_DIR and ckpt.name.endswith(".1.1.0")
    before = ex.checkpoints()[1]
    assert (before.at, before.requested, before.answered) == (None, False, False)

    assert ex.request_checkpoint(1, "SIGUSR1")
    report = wait_report(ex, 1, lambda r: r.answered)
    assert (work / "signalled-0").exists() and (work / "signalled-1").exists()
    assert report.requested and report.at is not None and began <= report.at <= time.time()
    if ROOT:  # the directory is the tenant's own, made as its user
        assert ckpt.parent.stat().st_uid == pwd.getpwnam(user_name("acme")).pw_uid
        assert stat.S_IMODE(ckpt.parent.stat().st_mode) == 0o700

    ex.stop(1, grace_s=5.0)
    [ended] = wait_exits(ex)
    assert ended.checkpoint is not None and ended.checkpoint.answered
    assert ended.checkpoint.at == report.at
    assert not ckpt.exists(), "an ended attempt's checkpoint file is removed"
    assert not ex.request_checkpoint(1, "SIGUSR1"), "nothing runs to ask"


def test_a_replica_that_ignores_the_signal_never_answers(make_executor, tmp_path, work):
    ex = make_executor()
    ex.start(launch(tmp_path, TRAPS.format(work=str(work), mode="ignore"), gpus=((0,),)))
    wait_file(work / "ready-0")
    assert ex.request_checkpoint(1, "SIGUSR1")
    wait_report(ex, 1, lambda r: r.requested)
    ex.stop(1, grace_s=0.0)
    [ended] = wait_exits(ex)
    assert ended.checkpoint == CheckpointReport(attempt=1, requested=True)


def test_a_string_command_s_shell_is_spared_the_signal(make_executor, tmp_path, work):
    """``/bin/sh -c`` dies of a SIGUSR1 and would take its command with it: the signal goes
    to the command's processes only."""
    script = work / "traps.py"
    script.write_text(TRAPS.format(work=str(work), mode="trap"))
    script.chmod(0o644)
    ex = make_executor()
    job = launch(tmp_path, "", gpus=((0,),))
    job.argv = ["/bin/sh", "-c", f"{JOB_PYTHON} {script}; echo after"]
    ex.start(job)
    wait_file(work / "ready-0")
    assert ex.request_checkpoint(1, "SIGUSR1")
    assert wait_report(ex, 1, lambda r: r.answered).at is not None
    assert ex.poll() == [], "the shell and its command still run"
    ex.stop(1, grace_s=0.0)
    wait_exits(ex)


HOSTILE = textwrap.dedent(
    """
    import os, time
    ckpt = os.environ["MOSU_CHECKPOINT_FILE"]
    mode, now = {mode!r}, time.time()
    if mode == "symlink":
        with open(ckpt + ".real", "w") as f:
            f.write("x")
        os.symlink(ckpt + ".real", ckpt)
    elif mode == "linked-directory":
        home = os.path.dirname(os.path.dirname(ckpt))
        elsewhere = os.path.join(home, "elsewhere")
        os.makedirs(elsewhere, exist_ok=True)
        with open(os.path.join(elsewhere, os.path.basename(ckpt)), "w") as f:
            f.write("x")
        os.rename(os.path.dirname(ckpt), os.path.join(home, "moved"))
        os.symlink(elsewhere, os.path.dirname(ckpt))
    elif mode == "directory":
        os.mkdir(ckpt)
    else:
        with open(ckpt, "w") as f:
            f.write("x")
        shift = {{"future": 3600, "past": -3600, "now": 0}}[mode]
        os.utime(ckpt, (now + shift, now + shift))
    """
)


@pytest.mark.parametrize(
    "mode", ["symlink", "linked-directory", "directory", "past", "future", "now"]
)
def test_what_counts_as_a_report(make_executor, tmp_path, mode):
    """Deterministic: a supervisor looks at the file one last time once the replica has
    ended, before its exit record, so the exit carries what it made of it."""
    ex = make_executor()
    began = time.time()
    ex.start(launch(tmp_path, HOSTILE.format(mode=mode), gpus=((0,),)))
    [ended] = wait_exits(ex)
    assert ended.exit_code == 0, ended.message
    if mode in ("symlink", "linked-directory", "directory", "past"):
        assert ended.checkpoint is None, "no report"
        return
    assert ended.checkpoint is not None and ended.checkpoint.at is not None
    # A time from the future counts as the moment it was seen.
    assert began <= ended.checkpoint.at <= time.time()


def test_a_gang_s_checkpoint_is_the_oldest_of_its_reporting_replicas():
    def r(at, requested=0, answered=0):
        return {"at": at, "requested": requested, "answered": answered}

    # Rank 0 alone saves: its report is the gang's.
    assert gang_checkpoint([r(100.0), r(None), None]).at == 100.0
    # Every rank saves a shard: the checkpoint is whole once the last has reported.
    assert gang_checkpoint([r(100.0), r(90.0)]).at == 90.0
    assert gang_checkpoint([None, r(None)]).at is None
    # Asked: answered once every replica that reports has reported since.
    asked = gang_checkpoint([r(100.0, 5, 5), r(90.0, 5, 0), r(None, 5, 0)])
    assert asked.requested and not asked.answered
    assert gang_checkpoint([r(100.0, 5, 5), r(101.0, 5, 5), r(None, 5, 0)]).answered
    # A replica that had not yet been given the request holds the answer back.
    assert not gang_checkpoint([r(100.0, 5, 5), r(90.0, 0, 0)]).answered
    assert not gang_checkpoint([r(None, 5, 0)]).answered


def test_exit_reports_carry_nothing_for_a_job_that_never_reports(make_executor, tmp_path):
    ex = make_executor()
    ex.start(launch(tmp_path, "pass", gpus=((0,),)))
    assert wait_exits(ex) == [JobExit(job_id=1, attempt=1, exit_code=0)]


def test_the_job_cannot_set_its_own_checkpoint_file(make_executor, tmp_path, work):
    seen_by_job = f"{str(work)!r} + '/seen'"
    code = f"import os; open({seen_by_job}, 'w').write(os.environ['MOSU_CHECKPOINT_FILE'] + '\\n')"
    ex = make_executor()
    ex.start(launch(tmp_path, code, env={"MOSU_CHECKPOINT_FILE": "/etc/passwd"}))
    wait_exits(ex)
    seen = (work / "seen").read_text().strip()
    assert seen != "/etc/passwd" and os.path.basename(os.path.dirname(seen)) == CHECKPOINT_DIR
