"""The ``mosu`` command against a real server: the walkthrough's commands, and bad input
that gives one line on stderr and a non-zero exit (no traceback)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mosu.cli.main import main
from tests.e2e.conftest import OPERATOR_TOKEN, free_port, make_server, wait_for  # noqa: F401


def mosu(
    *args: str, env: dict[str, str], ok: bool = True, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    """Run ``mosu ARGS`` in this process (the same entry point as the console script)
    with ``env`` as the whole environment and ``stdin`` as its input; return what it
    printed and its exit code."""
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    saved_stdin = sys.stdin
    os.environ.clear()
    os.environ.update(env)
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        sys.stdin = saved_stdin
    proc = subprocess.CompletedProcess(["mosu", *args], code, out.getvalue(), err.getvalue())
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def mosu_process(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a child process (for what only a process shows)."""
    cmd = [sys.executable, "-m", "mosu.cli.main", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSU_")}
    env["MOSU_CONFIG"] = str(tmp_path / "client.json")
    env["COLUMNS"] = "200"
    return env


def test_an_unreachable_server_is_one_line(cli_env):
    cli_env["MOSU_URL"] = f"http://127.0.0.1:{free_port()}"
    one_line_error(mosu_process("job", "list", env=cli_env), "cannot reach the mosu server")


def test_the_walkthrough_and_its_errors(make_server, cli_env, tmp_path):  # noqa: F811
    server = make_server("--gpus", "8", "--gpu-type", "H800", "--grace", "2", "--min-runtime", "0")
    cli_env["MOSU_URL"] = server.url
    op = {**cli_env, "MOSU_TOKEN": OPERATOR_TOKEN}

    created = mosu("tenant", "create", "acme", "--guarantee", "H800=4", "-o", "json", env=op)
    acme = {**cli_env, "MOSU_TOKEN": json.loads(created.stdout)["token"]}
    out = mosu("tenant", "create", "beta", "-g", "H800=4", "-l", "H800=8", env=op).stdout
    assert out.startswith("tenant beta created\ntoken: mosu_t_")
    assert "acme" in mosu("tenant", "list", env=op).stdout
    second = json.loads(mosu("tenant", "token", "acme", "-o", "json", env=op).stdout)["token"]
    assert mosu("job", "list", env={**cli_env, "MOSU_TOKEN": second}).stdout.strip() == "no jobs"

    spec = tmp_path / "job.yaml"
    spec.write_text("name: hello\ngpus: 2\ncommand: echo hello from $CUDA_VISIBLE_DEVICES\n")
    job_id = int(mosu("job", "submit", str(spec), env=acme).stdout.strip())
    wait_for(
        lambda: (
            json.loads(mosu("job", "show", str(job_id), "-o", "json", env=acme).stdout)["job"][
                "state"
            ]
            == "succeeded"
        ),
        timeout=15,
        what="the job to succeed",
    )
    assert "hello from 0,1" in mosu("job", "logs", str(job_id), env=acme).stdout
    followed = mosu("job", "logs", "--follow", str(job_id), env=acme).stdout
    assert followed.endswith("hello from 0,1\n"), "--follow stops once the job has ended"
    assert mosu("job", "why", str(job_id), env=acme).stdout.strip() == f"Job {job_id} succeeded."
    listed = json.loads(mosu("job", "list", "-o", "json", env=acme).stdout)
    assert [j["id"] for j in listed] == [job_id]
    inline = mosu("job", "submit", "--name", "nap", "--gpus", "8", "--", "sleep", "30", env=acme)
    nap = int(inline.stdout.strip())
    queued = mosu("job", "submit", "--name", "next", "--gpus", "1", "--", "true", env=acme)
    wait_for(
        lambda: (
            "pending" in mosu("job", "why", queued.stdout.strip(), env=acme).stdout
            and "(" in mosu("job", "why", queued.stdout.strip(), env=acme).stdout
        ),
        timeout=10,
        what="a pending reason",
    )
    # It waits for "nap", of whose run time nothing is known: no number is invented.
    assert "estimated start: unknown" in mosu("job", "why", queued.stdout.strip(), env=acme).stdout
    queue = json.loads(mosu("queue", "-o", "json", env=acme).stdout)
    assert [e["job_id"] for e in queue] == [int(queued.stdout)]
    narrow, wide = (mosu("queue", "-o", o, env=acme).stdout.splitlines() for o in ("table", "wide"))
    assert "reason" in narrow[1] and "why" not in narrow[1], "80 columns: the sentence is left out"
    assert "why" in wide[1] and queue[0]["message"] in "\n".join(wide), "-o wide: every column"
    assert "stopping" in mosu("job", "cancel", str(nap), env=acme).stdout
    usage = json.loads(mosu("usage", "-o", "json", env=op).stdout)
    assert {u["tenant"] for u in usage} == {"acme"}
    assert "H800" in mosu("node", "list", env=op).stdout

    # Bad input: one line each, naming the problem.
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncommand: [oops\n")
    one_line_error(mosu_process("job", "submit", str(bad), env=acme), f"{bad}:3", "YAML")
    spec.write_text('name: x\ngpus: 64\ncommand: "true"\n')
    one_line_error(mosu("job", "submit", str(spec), env=acme, ok=False), "gpus", "largest node")
    spec.write_text('name: x\ngpu_type: B200\ncommand: "true"\n')
    one_line_error(mosu("job", "submit", str(spec), env=acme, ok=False), "gpu_type", "B200")
    one_line_error(
        mosu("job", "submit", "--name", "x", "--gpus", "-2", "--", "true", env=acme, ok=False),
        "gpus",
    )
    anonymous = {**cli_env, "MOSU_CONFIG": str(tmp_path / "none.json")}
    one_line_error(mosu("job", "list", env=anonymous, ok=False), "no token", "mosu login")
    one_line_error(
        mosu("job", "list", env={**cli_env, "MOSU_TOKEN": "wrong"}, ok=False), "unknown token"
    )
    one_line_error(mosu("node", "list", env=acme, ok=False), "only the operator")
    one_line_error(mosu("job", "show", "999", env=acme, ok=False), "no job 999")
    one_line_error(mosu("job", "submit", str(tmp_path / "nope.yaml"), env=acme, ok=False))
    one_line_error(mosu("tenant", "create", "x", "--guarantee", "H800", env=op, ok=False), "TYPE=N")


def test_what_a_newcomer_meets_first(make_server, cli_env, tmp_path):  # noqa: F811
    server = make_server("--gpus", "8", "--gpu-type", "H800", "--grace", "2")
    cli_env["MOSU_URL"] = server.url
    op = {**cli_env, "MOSU_TOKEN": OPERATOR_TOKEN}

    # Guarantees the cluster cannot honour are accepted with a warning, shown per type.
    delta = mosu("tenant", "create", "delta", "--guarantee", "A100=2", env=op)
    assert delta.stderr == (
        "warning: the cluster has no A100 GPUs (its types: H800); this guarantee cannot be "
        "met until A100 nodes join\n"
    )
    big = mosu("tenant", "create", "big", "-g", "H800=100", "-o", "json", env=op)
    assert json.loads(big.stdout)["warnings"] == [big.stderr.strip().removeprefix("warning: ")]
    assert "over-committed by 92" in big.stderr
    created = mosu("tenant", "create", "acme", "-g", "H800=0", "-o", "json", env=op)
    acme = {**cli_env, "MOSU_TOKEN": json.loads(created.stdout)["token"]}
    cluster = mosu("cluster", env=acme).stdout  # a tenant may read the aggregate
    h800 = next(line for line in cluster.splitlines() if "H800" in line and "│" in line)
    assert h800.split("│")[1:-1] == [" H800     ", " 1     ", " 8    ", " 0    ", " 8    ",
                                     " 100        ", " +92  "]  # fmt: skip
    assert "H800: 100 GPUs guaranteed on 8" in cluster
    one_line_error(mosu("node", "list", env=acme, ok=False), "mosu cluster")
    tenants = mosu("tenant", "list", env=op).stdout
    assert any("delta" in line and "no cap" in line for line in tenants.splitlines())
    mosu("tenant", "quota", "big", "-g", "H800=4", env=op)
    mosu("tenant", "quota", "acme", "-g", "H800=4", env=op)

    # Options override a spec file's fields; a command is taken only after '--'.
    spec = tmp_path / "pretrain.yaml"
    spec.write_text('name: pretrain\ngpus: 8\nkind: train\ncommand: "exit 3"\n')
    job = json.loads(
        mosu(
            "job", "submit", str(spec), "--gpus", "2", "--name", "small", "-o", "json", env=acme
        ).stdout
    )
    assert (job["name"], job["gpus"], job["kind"]) == ("small", 2.0, "train")
    assert job["spec"]["command"] == "exit 3"
    replaced = mosu("job", "submit", str(spec), "--gpus", "1", "--", "echo", "hi", "-o", "json",
                    env=acme).stdout.strip()  # '-o json' after '--' is the command's  # fmt: skip
    shown = json.loads(mosu("job", "show", replaced, "-o", "json", env=acme).stdout)["job"]
    assert shown["spec"]["command"] == ["echo", "hi", "-o", "json"]
    inline = mosu("job", "submit", "--gpus", "1", "-o", "json", "--", "echo", "hi", env=acme)
    assert json.loads(inline.stdout)["name"] == "echo"
    one_line_error(mosu("job", "submit", str(spec), "echo", "hi", env=acme, ok=False), "after '--'")
    one_line_error(mosu("job", "submit", "--gpus", "1", env=acme, ok=False), "after '--'")
    spec.write_text('name: x\ngpu: 2\ncommand: "true"\n')
    one_line_error(mosu("job", "submit", str(spec), env=acme, ok=False), "did you mean 'gpus'?")

    # A gang's logs with every rank; a finished job cannot be cancelled.
    gang = mosu("job", "submit", "--name", "gang", "--replicas", "2", "--gpus", "1", "--", "sh",
                "-c", "echo hello from $MOSU_REPLICA; echo bye", env=acme)  # fmt: skip
    gang_id = gang.stdout.strip()
    wait_for(
        lambda: (
            json.loads(mosu("job", "show", gang_id, "-o", "json", env=acme).stdout)["job"]["state"]
            == "succeeded"
        ),
        timeout=20,
        what="the gang to succeed",
    )
    lines = mosu("job", "logs", gang_id, "--replica", "all", env=acme).stdout.splitlines()
    assert [line for line in lines if "hello" in line or "bye" in line] == [
        "[0] hello from 0",
        "[0] bye",
        "[1] hello from 1",
        "[1] bye",
    ]
    assert all(line.startswith(("[0] ", "[1] ")) for line in lines)
    followed = mosu("job", "logs", gang_id, "--replica", "all", "-f", env=acme).stdout
    assert followed.splitlines() == lines
    one_line_error(
        mosu("job", "cancel", gang_id, env=acme, ok=False),
        f"job {gang_id} already succeeded; nothing was cancelled",
    )
    one_line_error(mosu("job", "logs", gang_id, "--replica", "x", env=acme, ok=False), "replica")

    # Usage slips are one line too; the version; logging in saves URL and token.
    one_line_error(mosu("job", "show", "abc", env=acme, ok=False), "job_id", "not a whole number")
    assert mosu("--version", env=cli_env).stdout.startswith("mosu ")
    config_file = tmp_path / "login.json"
    fresh = {**cli_env, "MOSU_CONFIG": str(config_file)}
    one_line_error(mosu("job", "list", env=fresh, ok=False), "no token", "mosu login")
    token = acme["MOSU_TOKEN"]
    out = mosu("login", "--url", server.url, env=fresh, stdin=f"{token}\n".encode()).stdout
    assert out.startswith(f"logged in to {server.url} as tenant acme; saved to {config_file}")
    assert json.loads(config_file.read_text()) == {"url": server.url, "token": token}
    del fresh["MOSU_URL"]  # the saved URL now
    assert gang_id in mosu("job", "list", env=fresh).stdout
    one_line_error(
        mosu("login", "--url", server.url, env=fresh, stdin=b"nope\n", ok=False),
        "refused the token: unknown token",
    )
    root_help = mosu("--help", env=cli_env).stdout
    for name in ("MOSU_URL", "MOSU_TOKEN", "MOSU_CONFIG", "~/.mosu/client.json", "login"):
        assert name in root_help


def test_help_names_the_spec_fields_and_shows_no_bool_metavar(cli_env):
    submit = mosu("job", "submit", "--help", env=cli_env).stdout
    for field in ("estimate", "checkpoint_every", "env", "workdir", "memory", "topology",
                  "max_runtime", "--"):  # fmt: skip
        assert field in submit
    for command in (["job", "logs"], ["node", "drain"], ["tenant", "update"], []):
        assert "<bool>" not in mosu(*command, "--help", env=cli_env).stdout
    assert "no cap" in mosu("tenant", "create", "--help", env=cli_env).stdout


def test_tenant_cohorts_from_the_command_line(make_server, cli_env):  # noqa: F811
    server = make_server("--gpus", "8", "--gpu-type", "H800")
    op = {**cli_env, "MOSU_URL": server.url, "MOSU_TOKEN": OPERATOR_TOKEN}

    created = mosu(
        "tenant", "create", "acme", "-g", "H800=4", "--cohort", "lab-a", "-o", "json", env=op
    )
    assert json.loads(created.stdout)["tenant"]["cohort"] == "lab-a"
    mosu("tenant", "create", "beta", "-g", "H800=2", env=op)
    listed = {
        t["name"]: t["cohort"]
        for t in json.loads(mosu("tenant", "list", "-o", "json", env=op).stdout)
    }
    assert listed == {"acme": "lab-a", "beta": None}
    table = mosu("tenant", "list", env=op).stdout
    assert "cohort" in table.splitlines()[1]
    assert any("acme" in line and "lab-a" in line for line in table.splitlines())

    updated = mosu("tenant", "update", "beta", "--cohort", "lab-a", "-o", "json", env=op).stdout
    assert json.loads(updated)["cohort"] == "lab-a"
    out = mosu("tenant", "update", "beta", "--weight", "2", env=op).stdout
    assert out.strip() == "tenant beta updated"
    beta = json.loads(mosu("tenant", "update", "beta", "--no-cohort", "-o", "json", env=op).stdout)
    assert (beta["cohort"], beta["weight"]) == (None, 2.0)
    acme = json.loads(mosu("tenant", "update", "acme", "--cohort", "", "-o", "json", env=op).stdout)
    assert acme["cohort"] is None

    # Bad input: one line naming the field, a non-zero exit, nothing changed.
    for args in (
        ("tenant", "create", "gamma", "--cohort", "Lab A"),
        ("tenant", "update", "acme", "--cohort", "-lab"),
        ("tenant", "update", "acme", "--cohort", "lab-b", "--no-cohort"),
    ):
        one_line_error(mosu(*args, env=op, ok=False), "cohort")
    bad_name = mosu("tenant", "create", "gamma", "--cohort", "Lab A", env=op, ok=False)
    one_line_error(bad_name, "cohort: must be 1 to 63 characters of lowercase letters")
    one_line_error(mosu("tenant", "update", "acme", env=op, ok=False), "nothing to change")
    one_line_error(mosu("tenant", "update", "nobody", "--cohort", "x", env=op, ok=False), "nobody")
    listed = {
        t["name"]: t["cohort"]
        for t in json.loads(mosu("tenant", "list", "-o", "json", env=op).stdout)
    }
    assert listed == {"acme": None, "beta": None}


def test_unreadable_spec_files_are_one_line(cli_env, tmp_path):
    """Checked before anything is sent: no server is needed to refuse these."""
    cli_env["MOSU_URL"] = f"http://127.0.0.1:{free_port()}"
    cli_env["MOSU_TOKEN"] = "unused"
    cases = {
        "binary.yaml": (bytes(range(256)) * 4, "not a text file"),
        "latin1.yaml": ("name: caf\u00e9\ncommand: x\n".encode("latin-1"), "not a text file"),
        "deep.yaml": (("name: x\ncommand: x\nenv: " + "[" * 5000 + "]" * 5000).encode(), "nested"),
        "deep.json": (('{"env": ' + "[" * 100_000 + "]" * 100_000 + "}").encode(), "nested"),
        "twice.yaml": (b"name: x\nname: y\ncommand: x\n", "duplicate key 'name'"),
        "nul.yaml": (b"name: x\x00\ncommand: x\n", "nul.yaml:1: malformed YAML: character U+0000"),
        "huge.yaml": (b"#" * (2 << 20), "larger than 1024 KiB"),
        "list.yaml": (b"- a\n- b\n", "expected a mapping"),
        "bool.yaml": (b"name: x\ncommand: x\ngpus: true\n", "gpus"),
    }
    for name, (data, fragment) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        one_line_error(mosu("job", "submit", str(path), env=cli_env, ok=False), fragment)
    one_line_error(mosu("job", "submit", str(tmp_path), env=cli_env, ok=False), "directory")
    one_line_error(
        mosu("job", "submit", "-", env=cli_env, ok=False, stdin=b"\xff\xfe\x00"),
        "not a text file",
    )
    # The real console entry point, for what only a process shows (no traceback at all).
    deep = tmp_path / "deep.yaml"
    one_line_error(mosu_process("job", "submit", str(deep), env=cli_env), "nested")


def test_tokens_and_secrets_from_the_command_line(make_server, cli_env, tmp_path):  # noqa: F811
    import hashlib

    server = make_server("--gpus", "8", "--gpu-type", "H800", "--grace", "2")
    cli_env["MOSU_URL"] = server.url
    op = {**cli_env, "MOSU_TOKEN": OPERATOR_TOKEN}
    created = mosu("tenant", "create", "acme", "-g", "H800=4", "-o", "json", env=op)
    acme = {**cli_env, "MOSU_TOKEN": json.loads(created.stdout)["token"]}

    # Tokens: a second, named one; listed without its value; revoked, then refused.
    ci = mosu("token", "create", "ci", "--expires", "1d", "-o", "json", env=acme)
    ci_token = json.loads(ci.stdout)["token"]
    listed = mosu("token", "list", env=acme).stdout
    assert "ci" in listed and "(this one)" in listed and ci_token not in listed
    as_ci = {**cli_env, "MOSU_TOKEN": ci_token}
    assert mosu("job", "list", env=as_ci).stdout.strip() == "no jobs"
    assert "revoked" in mosu("token", "revoke", "ci", env=acme).stdout
    one_line_error(mosu("job", "list", env=as_ci, ok=False), "token revoked")
    one_line_error(mosu("token", "revoke", "nope", env=acme, ok=False), "no live token named")
    one_line_error(
        mosu("token", "create", "x", "--expires", "forever", env=acme, ok=False), "expires_in"
    )

    # The operator rotates its token; the saved client config follows.
    config_path = Path(cli_env["MOSU_CONFIG"])
    config_path.write_text(json.dumps({"url": server.url, "token": OPERATOR_TOKEN}))
    rotated = mosu("token", "rotate", env=cli_env).stdout
    assert f"saved in {config_path}" in rotated
    new_operator = json.loads(config_path.read_text())["token"]
    assert new_operator.startswith("mosu_op_") and new_operator != OPERATOR_TOKEN
    assert "H800" in mosu("node", "list", env=cli_env).stdout
    one_line_error(mosu("node", "list", env=op, ok=False), "token revoked")

    # Secrets: the value from stdin; a job gets it in its environment and prints its hash.
    value = "hf_cli-Secret-" + "x" * 20
    stored = mosu("secret", "set", "HF_TOKEN", env=acme, stdin=value.encode() + b"\n")
    assert stored.stdout.strip() == "secret HF_TOKEN stored"
    assert "HF_TOKEN" in mosu("secret", "list", env=acme).stdout
    spec = tmp_path / "hash.yaml"
    spec.write_text(
        "name: hash\nsecrets: [HF_TOKEN]\ncommand: >-\n"
        "  python3 -c \"import hashlib, os; print('sha256',"
        " hashlib.sha256(os.environ['HF_TOKEN'].encode()).hexdigest())\"\n"
    )
    job_id = mosu("job", "submit", str(spec), env=acme).stdout.strip()
    wait_for(
        lambda: (
            json.loads(mosu("job", "show", job_id, "-o", "json", env=acme).stdout)["job"]["state"]
            == "succeeded"
        ),
        timeout=20,
        what="the job to succeed",
    )
    log = mosu("job", "logs", job_id, env=acme).stdout
    assert f"sha256 {hashlib.sha256(value.encode()).hexdigest()}" in log
    shown = mosu("job", "show", job_id, env=acme).stdout
    assert "secrets: HF_TOKEN=****" in shown
    for text in (
        log,
        shown,
        mosu("job", "show", job_id, "-o", "json", env=acme).stdout,
        mosu("secret", "list", "-o", "json", env=acme).stdout,
        mosu("secret", "list", "--tenant", "acme", env=cli_env).stdout,
    ):
        assert value not in text
    # Nor anywhere on the server's disk (store, logs, its own log): only sealed.
    for path in [server.log, *server.data_dir.rglob("*")]:
        if path.is_file():
            assert value.encode() not in path.read_bytes(), path
    assert stat.S_IMODE((server.data_dir / "secrets.key").stat().st_mode) == 0o600
    # A UTF-16 spec file (with its byte-order mark) is text too.
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_bytes("name: wide\ncommand: 'true'\n".encode("utf-16"))
    assert mosu("job", "submit", str(utf16), env=acme).stdout.strip().isdigit()
    assert "secret HF_TOKEN deleted" in mosu("secret", "delete", "HF_TOKEN", env=acme).stdout
    one_line_error(mosu("job", "submit", str(spec), env=acme, ok=False), "secrets[0]")
