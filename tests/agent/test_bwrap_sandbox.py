"""The ``bwrap`` sandbox, as a server that is not root runs it: a real unprivileged user
starts a real supervisor, whose replica tries to reach the server's data, config,
environment and process, and leaves a ``setsid`` escape behind.

The server side runs as ``nobody`` with the system's ``python3`` and a copy of mosu's
agent code (both readable by any user), which is all a supervisor needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

import mosu
from tests.jobs import shared_dir

NOBODY = 65534
SERVER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from mosu.agent import procfs
    from mosu.agent.sandbox import resolve
    from mosu.agent.supervised import SupervisedReplica

    base = Path(sys.argv[1])
    data = base / "data"
    home = base / "home"
    for d in (data, home / ".mosu"):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    (data / "mosu.db").write_text("the-database")
    (home / ".mosu" / "client.json").write_text(os.environ["MOSU_TOKEN"])
    os.environ["HOME"] = str(home)
    box = resolve("auto", home_root=None, fallback_home_root=data / "homes",
                  hide=(str(data), str(home)))
    probe = f'''
    import json, os, subprocess, sys
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    seen = {{"uid": os.getuid(), "cwd": os.getcwd(), "pids": len(pids)}}
    for name, path in (("db", {str(data / "mosu.db")!r}),
                       ("config", {str(home / ".mosu" / "client.json")!r}),
                       ("environ", "/proc/{os.getpid()}/environ")):
        try:
            seen[name] = open(path).read()
        except OSError as e:
            seen[name] = type(e).__name__
    try:
        os.kill({os.getpid()}, 0)
        seen["signal"] = "sent"
    except OSError as e:
        seen["signal"] = type(e).__name__
    seen["homes"] = sorted(os.listdir({str(data / "homes")!r}))
    print(json.dumps(seen), flush=True)
    subprocess.run(["setsid", "/bin/sh", "-c", "sleep 457 >/dev/null 2>&1 &"])
    import time; time.sleep(120)
    '''
    run_dir = data / "logs" / "1" / "run" / "1.0"
    spec = {
        "run_dir": str(run_dir), "log_path": str(data / "logs" / "1" / "replica-0.log"),
        "header": "", "argv": ["python3", "-c", probe], "workdir": None, "job_env": {},
        "tenant": "acme", "sandbox": box.to_json(), "cgroup": "auto", "grace_s": 1.0,
        "contract": {"instance": "bwrap-test", "job_id": 1, "attempt": 1, "replica": 0,
                     "num_replicas": 1, "node": "n0", "gpu_indices": [0], "gpu_fraction": 1.0,
                     "master_addr": "127.0.0.1", "master_port": 29500},
    }
    replica = SupervisedReplica.spawn(spec)
    replica.confirm(time.monotonic() + 60)
    log = Path(spec["log_path"])
    deadline = time.monotonic() + 60
    while "{" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = json.loads(log.read_text().strip().splitlines()[-1])
    time.sleep(0.5)
    mine = procfs.descendants(os.getpid())
    replica.request_stop(1.0)
    while replica.outcome() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in mine if procfs.is_running(p)]
    print(json.dumps({"mode": box.mode, "seen": seen, "tree": len(mine), "left": left,
                      "stopped": replica.outcome().stopped}), flush=True)
    """
)


def _python() -> str | None:
    return shutil.which("python3", path="/usr/bin:/bin")


@pytest.mark.skipif(os.geteuid() != 0, reason="the test switches to an unprivileged user")
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_non_root_server_hides_its_data_config_environment_and_process_from_jobs():
    python = _python()
    assert python is not None, "the system python3 runs the unprivileged server"
    with shared_dir() as shared:
        code = shared / "code"
        shutil.copytree(
            Path(mosu.__file__).parent,
            code / "mosu",
            ignore=shutil.ignore_patterns("__pycache__", "dashboard"),
        )
        base = shared / "server"
        base.mkdir(mode=0o700)
        os.chown(base, NOBODY, NOBODY)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(code),
            "MOSU_TOKEN": "mosu_op_not-for-jobs",
            "MOSU_DATABASE_URL": "postgresql://mosu:hunter2@db/mosu",
        }
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        cmd += [python, "-c", SERVER, str(base)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        got = json.loads(done.stdout.strip().splitlines()[-1])
    seen = got["seen"]
    assert got["mode"] == "bwrap"
    assert seen["uid"] == NOBODY, "bwrap keeps the server's uid; only the mounts hide things"
    assert seen["db"] == seen["config"] == "FileNotFoundError", "hidden under empty tmpfs"
    assert seen["environ"] == "FileNotFoundError", "the server's pid does not exist in there"
    assert seen["signal"] == "ProcessLookupError"
    assert seen["pids"] <= 4, "the job sees only its own pid namespace"
    assert seen["homes"] == ["mosu-acme"], "other tenants' homes are hidden"
    assert seen["cwd"].endswith("/homes/mosu-acme")
    assert "mosu_op_not-for-jobs" not in json.dumps(seen)
    assert got["stopped"] and got["tree"] >= 3
    assert got["left"] == [], "the setsid escape ended with its replica"
