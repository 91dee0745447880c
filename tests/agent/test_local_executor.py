"""The local executor with real supervisors and real processes: identity, environment,
logs, exit codes, stops, escapes, and adoption by the next server."""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mosu.agent import cgroups, procfs
from mosu.agent.executors.local import LocalExecutor
from mosu.agent.gpus import gpu_type_name
from mosu.agent.replica_env import contract_keys
from mosu.agent.supervised import SupervisedReplica, supervisors_under
from mosu.agent.supervisor import EXIT, HANDLE
from mosu.agent.unix_users import user_name
from mosu.core.api import JobExit
from mosu.core.executor import AttemptRecord, LaunchError, ReplicaRecord
from tests.agent.conftest import ROOT, launch
from tests.jobs import JOB_PYTHON

needs_root = pytest.mark.skipif(not ROOT, reason="a Unix user per tenant needs root")


def wait_exits(ex: LocalExecutor, timeout: float = 30.0) -> list[JobExit]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exits = ex.poll()
        if exits:
            return exits
        time.sleep(0.02)
    pytest.fail("no exit reported in time")


def wait_file(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.02)
    pytest.fail(f"{path} never appeared")


def wait_log(path: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.02)
    pytest.fail(f"{text!r} never appeared in {path}")


ENV_DUMP = textwrap.dedent(
    """
    import json, os
    print(json.dumps({"env": dict(os.environ), "uid": os.getuid(), "cwd": os.getcwd(),
                      "groups": os.getgroups()}), flush=True)
    """
)


def dumped(log: Path) -> dict:
    line = next(x for x in log.read_text().splitlines() if x.startswith("{"))
    return json.loads(line)


@needs_root
def test_replicas_run_as_the_tenant_with_exactly_the_documented_environment(
    make_executor, tmp_path, work, monkeypatch
):
    monkeypatch.setenv("MOSU_OPERATOR_TOKEN", "mosu_op_secret-operator")
    monkeypatch.setenv("MOSU_DATABASE_URL", "postgresql://u:pw@db/mosu")
    ex = make_executor()
    started = ex.start(launch(tmp_path, ENV_DUMP, job_id=7, gpus=((0, 1), (2, 3))))
    assert sorted(started) == [0, 1]
    assert wait_exits(ex) == [JobExit(job_id=7, attempt=1, exit_code=0)]
    seen = dumped(tmp_path / "logs" / "7" / "replica-1.log")
    env = seen["env"]
    assert set(env) == (contract_keys("nvidia") - {"MOSU_GPU_FRACTION"}) | {
        "PATH",
        "LANG",
        "GREETING",
    }
    home = work / "homes" / user_name("acme")
    assert env["HOME"] == str(home)
    assert (env["CUDA_VISIBLE_DEVICES"], env["RANK"], env["WORLD_SIZE"]) == ("2,3", "1", "2")
    assert (env["MOSU_JOB_ID"], env["MOSU_REPLICA"], env["MOSU_NUM_REPLICAS"]) == ("7", "1", "2")
    assert env["MASTER_ADDR"] == "127.0.0.1" and int(env["MASTER_PORT"]) > 0
    assert env["GREETING"] == "hi"
    entry = pwd.getpwnam(user_name("acme"))
    assert seen["uid"] == entry.pw_uid != 0
    assert seen["groups"] in ([], [entry.pw_gid])
    assert seen["cwd"] == str(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700 and home.stat().st_uid == entry.pw_uid
    log = tmp_path / "logs" / "7" / "replica-0.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and log.stat().st_uid == 0
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700


def test_a_job_env_cannot_override_the_contract(make_executor, tmp_path):
    ex = make_executor()
    env = {"RANK": "9", "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "HOME": "/root", "PATH": "/bin"}
    ex.start(launch(tmp_path, ENV_DUMP, gpus=((3,),), milli=250, env=env))
    wait_exits(ex)
    got = dumped(tmp_path / "logs" / "1" / "replica-0.log")["env"]
    assert (got["RANK"], got["CUDA_VISIBLE_DEVICES"], got["MOSU_GPU_FRACTION"]) == (
        "0",
        "3",
        "0.25",
    )
    assert got["HOME"] != "/root"
    assert got["PATH"] == "/bin", "PATH is the job's to choose"


def test_a_failing_replica_fails_the_job_and_stops_its_siblings(make_executor, tmp_path):
    code = "import os,sys,time\nif os.environ['MOSU_REPLICA']=='0': sys.exit(3)\ntime.sleep(60)"
    ex = make_executor()
    ex.start(launch(tmp_path, code, gpus=((0,), (1,))))
    [got] = wait_exits(ex)
    assert (got.exit_code, got.message) == (3, "exit code 3")


@pytest.mark.parametrize("stubborn", [False, True], ids=["checkpoints", "ignores-sigterm"])
def test_stop_sends_sigterm_then_sigkill_after_the_grace_period(
    make_executor, tmp_path, work, stubborn
):
    handler = (
        "signal.SIG_IGN" if stubborn else "lambda *a: (open(CKPT,'w').write('x'), sys.exit(0))"
    )
    code = textwrap.dedent(
        f"""
        import signal, sys, time
        CKPT = {str(work / "ckpt")!r}
        signal.signal(signal.SIGTERM, {handler})
        print('ready', flush=True)
        time.sleep(60)
        """
    )
    ex = make_executor()
    ex.start(launch(tmp_path, code))
    wait_log(tmp_path / "logs" / "1" / "replica-0.log", "ready")
    started = time.monotonic()
    ex.stop(1, grace_s=0.5)
    [got] = wait_exits(ex)
    assert (work / "ckpt").exists() is not stubborn
    if stubborn:
        assert time.monotonic() - started >= 0.5
        assert (got.exit_code, got.message) == (None, "killed by SIGKILL")
    else:
        assert got.exit_code == 0


ESCAPE = textwrap.dedent(
    """
    import os, subprocess, sys, time
    # A double fork into a new session, with an empty environment if asked: no process
    # group, no parent and (then) no marker lead back to the job.
    clear = "env -i " if sys.argv[3] == "clear-env" else ""
    subprocess.run(["setsid", "/bin/sh", "-c",
                    clear + "sleep 457 </dev/null >/dev/null 2>&1 & echo $! > " + sys.argv[1]])
    print("escaped", flush=True)
    if sys.argv[2] == "stay":
        time.sleep(120)
    """
)


def escape_launch(tmp_path: Path, work: Path, *, stay: bool, clear_env: bool = True):
    pid_file = work / "escaped.pid"
    base = launch(tmp_path, "")
    argv = [JOB_PYTHON, "-c", ESCAPE, str(pid_file), "stay" if stay else "leave"]
    argv.append("clear-env" if clear_env else "keep-env")
    return base.model_copy(update={"argv": argv}), pid_file


def available_cgroups() -> list[str]:
    return [k for k in ("v1", "v2") if ROOT and cgroups.driver(k) is not None] + ["none"]


@pytest.mark.parametrize("cgroup", available_cgroups())
@pytest.mark.parametrize("stay", [True, False], ids=["stopped", "main-exits"])
def test_a_setsid_double_fork_escape_is_gone_before_the_exit_is_reported(
    make_executor, tmp_path, work, cgroup, stay
):
    ex = make_executor(cgroup=cgroup)
    job, pid_file = escape_launch(tmp_path, work, stay=stay)
    ex.start(job)
    escaped = int(wait_file(pid_file))
    ticks = procfs.start_ticks(escaped)
    handle = json.loads((Path(job.replicas[0].run_dir) / HANDLE).read_text())
    if cgroup == "none":
        assert handle["cgroup"] is None
    else:
        hierarchy = cgroups.driver(cgroup)
        assert hierarchy is not None and handle["cgroup"].startswith(str(hierarchy.base))
    if stay:
        wait_log(Path(job.replicas[0].log_path), "escaped")
        ex.stop(1, grace_s=0.2)
    [got] = wait_exits(ex)
    assert not procfs.is_running(escaped, ticks), "the escaped process outlived its job"
    assert got.exit_code == (None if stay else 0)


def test_a_command_that_does_not_exist_fails_to_start_and_says_why(make_executor, tmp_path):
    ex = make_executor()
    bad = launch(tmp_path, "").model_copy(update={"argv": ["/nonexistent/binary"]})
    with pytest.raises(LaunchError, match="/nonexistent/binary: No such file or directory") as err:
        ex.start(bad)
    assert err.value.requeue is False
    assert ex.poll() == []


@needs_root
def test_a_workdir_the_tenant_cannot_enter_fails_to_start(make_executor, tmp_path):
    ex = make_executor()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    bad = launch(tmp_path, "print(1)", workdir=str(private))
    with pytest.raises(LaunchError, match=f"workdir {private}: Permission denied"):
        ex.start(bad)


def test_a_shell_wrapped_job_may_finish_its_checkpoint_after_the_shell_dies(
    make_executor, tmp_path, work
):
    """``/bin/sh -c`` dies on SIGTERM at once; its child still gets the grace period, and
    the exit reported is the child's (0 after its checkpoint), not the shell's SIGTERM."""
    child = textwrap.dedent(
        f"""
        import signal, sys, time
        def on_term(*a):
            time.sleep(0.3); open({str(work / "ckpt")!r}, 'w').write('x'); sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        print('ready', flush=True)
        time.sleep(60)
        """
    )
    script = work / "child.py"
    script.write_text(child)
    script.chmod(0o644)
    shell = launch(tmp_path, "").model_copy(
        update={"argv": ["/bin/sh", "-c", f"{JOB_PYTHON} {script}; echo after"]}
    )
    ex = make_executor()
    ex.start(shell)
    wait_log(tmp_path / "logs" / "1" / "replica-0.log", "ready")
    ex.stop(1, grace_s=5)
    [got] = wait_exits(ex)
    assert (work / "ckpt").read_text() == "x"
    assert (got.exit_code, got.message) == (0, "")


# --- a server that goes away and the next one ------------------------------------------


SERVER = textwrap.dedent(
    """
    import json, sys
    from mosu.agent.executors.local import LocalExecutor
    from mosu.agent.sandbox import SandboxConfig
    from mosu.core.api import JobLaunch
    box = SandboxConfig.from_json(json.loads(sys.argv[1]))
    ex = LocalExecutor(instance=sys.argv[2], sandbox=box)
    launch = JobLaunch.model_validate_json(sys.argv[3])
    started = ex.start(launch)
    print(json.dumps({k: v.model_dump() for k, v in started.items()}), flush=True)
    sys.stdin.read()  # until the test kills us
    """
)


def start_in_a_server_that_dies(job, box, instance: str) -> dict[int, dict]:
    """Start ``job`` from another process, which is then SIGKILLed (a crashed server)."""
    with subprocess.Popen(
        [sys.executable, "-c", SERVER, json.dumps(box.to_json()), instance, job.model_dump_json()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            started = {int(k): v for k, v in json.loads(server.stdout.readline()).items()}
        finally:
            server.kill()
    return started


def records(job, started: dict[int, dict] | None) -> list[AttemptRecord]:
    return [
        AttemptRecord(
            job_id=job.job_id,
            attempt=job.attempt,
            tenant=job.tenant,
            replicas=[
                ReplicaRecord(
                    replica=r.replica,
                    node=r.node,
                    run_dir=r.run_dir,
                    supervisor=started[r.replica]["supervisor"] if started else None,
                    pid=started[r.replica]["pid"] if started else None,
                )
                for r in job.replicas
            ],
        )
    ]


WAIT_FOR_GO = textwrap.dedent(
    """
    import os, sys, time
    print('up', flush=True)
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.02)
    print('after the restart', flush=True)
    sys.exit(int(sys.argv[2]))
    """
)


def test_replicas_outlive_a_crashed_server_and_the_next_one_adopts_them(
    make_executor, box, instance, tmp_path, work
):
    go = work / "go"
    job = launch(tmp_path, "", gpus=((0,), (1,))).model_copy(
        update={"argv": [JOB_PYTHON, "-c", WAIT_FOR_GO, str(go), "4"]}
    )
    started = start_in_a_server_that_dies(job, box, instance)
    pids = {k: v["pid"] for k, v in started.items()}
    assert all(procfs.is_running(p) for p in pids.values()), "replicas outlive the server"

    ex = make_executor()
    found = ex.adopt(records(job, started))
    assert found.unstarted == []
    assert {k: v.pid for k, v in found.running[1].items()} == pids, "same replicas, same pids"
    assert ex.poll() == []
    go.write_text("")
    [got] = wait_exits(ex)
    assert (got.job_id, got.attempt, got.exit_code) == (1, 1, 4)
    log = Path(job.replicas[0].log_path).read_text()
    assert log.index("up") < log.index("after the restart"), "the log goes on"


def test_an_exit_while_no_server_watched_is_reported_once_with_its_code(
    make_executor, box, instance, tmp_path, work
):
    go = work / "go"
    go.write_text("")  # the job ends as soon as it starts
    job = launch(tmp_path, "").model_copy(
        update={"argv": [JOB_PYTHON, "-c", WAIT_FOR_GO, str(go), "6"]}
    )
    start_in_a_server_that_dies(job, box, instance)
    exit_record = Path(job.replicas[0].run_dir) / EXIT
    wait_file_exists(exit_record)
    # Even a server that died before it recorded the handle finds it by its run dir.
    ex = make_executor()
    assert ex.adopt(records(job, None)).running == {}
    assert wait_exits(ex) == [JobExit(job_id=1, attempt=1, exit_code=6, message="exit code 6")]
    assert ex.poll() == []


def wait_file_exists(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{path} never appeared")
        time.sleep(0.02)


@pytest.mark.parametrize("cgroup", available_cgroups())
def test_a_replica_whose_supervisor_died_is_lost_and_its_remains_are_ended(
    make_executor, instance, tmp_path, work, cgroup
):
    ex = make_executor(cgroup=cgroup)
    # Without a cgroup, the remains of a dead supervisor are found by their environment
    # marker only (its subreaper is gone): an escape that clears its environment is then
    # out of reach, which is why a cgroup is used wherever the kernel offers one.
    job, pid_file = escape_launch(tmp_path, work, stay=True, clear_env=cgroup != "none")
    started = ex.start(job)
    escaped = int(wait_file(pid_file))
    supervisor = json.loads(started[0].supervisor)["pid"]
    ex.detach()
    os.kill(supervisor, signal.SIGKILL)  # the node's supervisor dies without a word
    deadline = time.monotonic() + 10
    while procfs.is_running(supervisor) and time.monotonic() < deadline:
        time.sleep(0.02)

    successor = make_executor(cgroup=cgroup)
    rec = records(job, {0: started[0].model_dump()})
    found = successor.adopt(rec)
    assert (found.running, found.unstarted) == ({}, [])
    [got] = wait_exits(successor)
    assert got.lost and got.exit_code is None
    assert "without an exit record" in got.message
    assert not procfs.is_running(escaped), "remains of a lost replica are ended"


def test_an_attempt_the_dead_server_never_started_is_left_to_start(make_executor, tmp_path):
    job = launch(tmp_path, "print('ran')")
    found = make_executor().adopt(records(job, None))
    assert (found.running, found.unstarted) == ({}, [1])


def test_adoption_ends_processes_of_attempts_the_store_no_longer_runs(
    make_executor, instance, tmp_path, work
):
    ex = make_executor()
    job, pid_file = escape_launch(tmp_path, work, stay=True)
    ex.start(job)
    escaped = int(wait_file(pid_file))
    ex.detach()
    # The store says nothing runs (say the job was finished by hand): nothing is adopted,
    # and what still runs for this instance is ended.
    successor = make_executor()
    successor.adopt([])
    deadline = time.monotonic() + 15
    while procfs.is_running(escaped) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not procfs.is_running(escaped)


def test_a_signal_never_reaches_a_process_that_reused_a_pid():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        ticks = procfs.start_ticks(sleeper.pid)
        assert ticks is not None
        assert not procfs.signal_process(sleeper.pid, ticks + 1, signal.SIGTERM)
        assert sleeper.poll() is None
        assert procfs.signal_process(sleeper.pid, ticks, signal.SIGTERM)
        assert sleeper.wait(timeout=5) == -signal.SIGTERM
    finally:
        sleeper.kill()
        sleeper.wait()


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


def test_a_start_hands_its_replica_to_a_supervisor_waiting_ready(box, instance, tmp_path, work):
    pool_dir = tmp_path / "supervisors"
    ex = LocalExecutor(instance=instance, sandbox=box, pool_dir=pool_dir)
    try:
        waiting = sorted(p.name for p in pool_dir.glob("*.lock"))
        assert len(waiting) == 2
        go = work / "go"
        job = launch(tmp_path, "").model_copy(
            update={"argv": [JOB_PYTHON, "-c", WAIT_FOR_GO, str(go), "0"]}
        )
        started = ex.start(job)
        run_dir = Path(job.replicas[0].run_dir)
        supervisor = json.loads(started[0].supervisor)["pid"]
        argv = Path(f"/proc/{supervisor}/cmdline").read_bytes().split(b"\0")
        assert argv[6] == b"-", "it was started before the job was known"
        assert len(list(pool_dir.glob("*.lock"))) == 1, "its lock file moved to the run dir"
        assert supervisors_under(tmp_path) == {supervisor: run_dir}
        assert SupervisedReplica.attach(run_dir).alive(), "the run dir's lock is held"
        ex.poll()
        assert len(list(pool_dir.glob("*.lock"))) == 2, "the pool is filled again"
        go.write_text("")
        assert wait_exits(ex) == [JobExit(job_id=1, attempt=1, exit_code=0)]
    finally:
        ex.shutdown(grace_s=0.0)
    assert list(pool_dir.glob("*.lock")) == [], "waiting supervisors end with their pool"
