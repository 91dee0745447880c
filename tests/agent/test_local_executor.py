"""The local executor with real processes: environment, logs, exit codes, stops."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mosu.agent.executors.local import LocalExecutor
from mosu.agent.gpus import gpu_type_name
from mosu.core.api import JobExit, JobLaunch, ReplicaLaunch


def launch(tmp: Path, code: str, *, job_id: int = 1, gpus=((0, 1),), fraction: float = 1.0):
    return JobLaunch(
        job_id=job_id,
        attempt=1,
        argv=[sys.executable, "-c", code],
        env={"GREETING": "hi"},
        workdir=str(tmp),
        replicas=[
            ReplicaLaunch(
                replica=k,
                node="n0",
                gpu_indices=list(g),
                gpu_fraction=fraction,
                log_path=str(tmp / "logs" / f"replica-{k}.log"),
            )
            for k, g in enumerate(gpus)
        ],
    )


def wait_exits(ex: LocalExecutor, timeout: float = 10.0) -> list[JobExit]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exits = ex.poll()
        if exits:
            return exits
        time.sleep(0.02)
    pytest.fail("no exit reported in time")


ENV_DUMP = (
    "import os; print(*[f'{k}={os.environ.get(k)}' for k in "
    "('CUDA_VISIBLE_DEVICES','MOSU_JOB_ID','MOSU_REPLICA','MOSU_NUM_REPLICAS',"
    "'MOSU_GPU_FRACTION','GREETING','MOSU_OPERATOR_TOKEN')], os.getcwd(), sep='\\n')"
)


def test_each_replica_gets_its_gpus_and_identity_and_logs_to_its_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSU_OPERATOR_TOKEN", "secret")
    ex = LocalExecutor(instance="t1")
    pids = ex.start(launch(tmp_path, ENV_DUMP, job_id=7, gpus=((0, 1), (2, 3))))
    assert sorted(pids) == [0, 1]
    assert wait_exits(ex) == [JobExit(job_id=7, attempt=1, exit_code=0)]
    log1 = (tmp_path / "logs" / "replica-1.log").read_text()
    assert "CUDA_VISIBLE_DEVICES=2,3" in log1
    assert "MOSU_JOB_ID=7\nMOSU_REPLICA=1\nMOSU_NUM_REPLICAS=2" in log1
    assert "MOSU_GPU_FRACTION=None" in log1
    assert "GREETING=hi" in log1
    assert "MOSU_OPERATOR_TOKEN=None" in log1, "server settings never leak into jobs"
    assert str(tmp_path) in log1


def test_a_fractional_replica_gets_its_share(tmp_path):
    ex = LocalExecutor(instance="t1")
    ex.start(launch(tmp_path, ENV_DUMP, gpus=((3,),), fraction=0.25))
    wait_exits(ex)
    log = (tmp_path / "logs" / "replica-0.log").read_text()
    assert "CUDA_VISIBLE_DEVICES=3" in log
    assert "MOSU_GPU_FRACTION=0.25" in log


def test_a_failing_replica_fails_the_job_and_stops_its_siblings(tmp_path):
    code = "import os,sys,time\nif os.environ['MOSU_REPLICA']=='0': sys.exit(3)\ntime.sleep(60)"
    ex = LocalExecutor(instance="t1")
    ex.start(launch(tmp_path, code, gpus=((0,), (1,))))
    [got] = wait_exits(ex)
    assert (got.exit_code, got.message) == (3, "exit code 3")


def test_stop_sends_sigterm_then_sigkill_after_the_grace_period(tmp_path):
    graceful = (
        "import signal,sys,time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (open('ckpt','w').write('x'), sys.exit(0)))\n"
        "print('ready', flush=True)\ntime.sleep(60)"
    )
    stubborn = (
        "import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(60)"
    )
    for code, want_code, want_ckpt in ((graceful, 0, True), (stubborn, None, False)):
        work = tmp_path / str(want_code)
        work.mkdir()
        ex = LocalExecutor(instance="t1")
        ex.start(launch(work, code))
        log = work / "logs" / "replica-0.log"
        deadline = time.monotonic() + 10
        while "ready" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        ex.stop(1, grace_s=0.5)
        [got] = wait_exits(ex)
        assert got.exit_code == want_code
        assert (work / "ckpt").exists() == want_ckpt
        if not want_ckpt:
            assert time.monotonic() - started >= 0.5
            assert got.message == "killed by SIGKILL"


def test_orphans_of_this_instance_are_found_by_their_environment(tmp_path):
    env = {"MOSU_INSTANCE": "inst-a", "MOSU_JOB_ID": "5", "PATH": "/usr/bin:/bin"}
    other = {**env, "MOSU_INSTANCE": "inst-b"}
    mine = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
    theirs = subprocess.Popen(["sleep", "30"], env=other, start_new_session=True)
    try:
        found = LocalExecutor(instance="inst-a").terminate_orphans(5, [mine.pid], grace_s=2)
        assert found == 1
        assert mine.wait(timeout=5) != 0
        assert theirs.poll() is None, "another instance's job is left alone"
    finally:
        for p in (mine, theirs):
            p.kill()
            p.wait()


def test_a_command_that_does_not_exist_raises_oserror(tmp_path):
    ex = LocalExecutor(instance="t1")
    bad = launch(tmp_path, "").model_copy(update={"argv": ["/nonexistent/binary"]})
    with pytest.raises(OSError):
        ex.start(bad)


@pytest.mark.parametrize(
    ("product", "want"),
    [
        ("NVIDIA H800 80GB HBM3", "H800"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA L40S", "L40S"),
        ("Tesla V100", "V100"),
    ],
)
def test_gpu_type_names_from_nvidia_smi(product, want):
    assert gpu_type_name(product) == want


def test_a_shell_wrapped_job_may_finish_its_checkpoint_after_the_shell_dies(tmp_path):
    """``/bin/sh -c`` dies on SIGTERM at once; its child still gets the grace period."""
    child = (
        "import signal,sys,time\n"
        "def on_term(*a):\n"
        "    time.sleep(0.3); open('ckpt','w').write('x'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "print('ready', flush=True)\ntime.sleep(60)"
    )
    script = tmp_path / "child.py"
    script.write_text(child)
    shell = launch(tmp_path, "").model_copy(
        update={"argv": ["/bin/sh", "-c", f"{sys.executable} {script}; echo after"]}
    )
    ex = LocalExecutor(instance="t1")
    ex.start(shell)
    log = tmp_path / "logs" / "replica-0.log"
    deadline = time.monotonic() + 10
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    ex.stop(1, grace_s=5)
    wait_exits(ex)
    assert (tmp_path / "ckpt").read_text() == "x"
