"""The README's walkthrough, run as written against a real ``mosu up``.

The commands come from the README itself (every ``sh`` block of the "Five minutes with
mosu" section, in order), and the server gets the flags ``make up`` gives it (read from
the Makefile). Each command runs in one bash session, as a reader would type it in one
terminal, with 80 columns. What a command's comment promises is checked:

- ``# prints the job id: N``: it prints exactly ``N``;
- ``# error: TEXT ...``: it fails, printing one line that starts with ``error: TEXT``;
- a ``"quoted fragment"`` in a comment: the output shows it verbatim;
- every other command succeeds, and no output is wider than 80 columns or cut short.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import OPERATOR_TOKEN, make_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Five minutes with mosu"


@dataclass(frozen=True)
class Step:
    command: str
    comment: str


def walkthrough(readme: str) -> list[Step]:
    """The section's ``sh`` blocks, one step a line (a trailing comment kept apart)."""
    start = readme.index(SECTION) + len(SECTION)
    end = re.compile(r"^#{1,6} ", re.M).search(readme, start)
    section = readme[start : end.start() if end else len(readme)]
    steps = []
    for block in re.findall(r"^```sh\n(.*?)^```", section, re.S | re.M):
        for line in block.splitlines():
            command, _, comment = line.partition("  #")
            if command.strip():
                steps.append(Step(command.strip(), comment.strip()))
    return steps


def up_flags() -> list[str]:
    """What ``make up`` passes to ``mosu up`` (``UP_FLAGS ?= ...`` in the Makefile)."""
    found = re.search(r"^UP_FLAGS \?= (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert found, "the Makefile no longer sets UP_FLAGS"
    return shlex.split(found.group(1))


def run_in_one_shell(steps: list[Step], cwd: Path, env: dict[str, str], out: Path) -> list:
    """Run every step in one bash session; each step's output and exit code."""
    script = []
    for k, step in enumerate(steps):
        script.append(f"{{ {step.command}\n}} > {out}/{k}.out 2>&1; echo $? > {out}/{k}.rc")
    subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=env, timeout=400, check=True)
    return [
        ((out / f"{k}.out").read_text(), int((out / f"{k}.rc").read_text()))
        for k in range(len(steps))
    ]


TABLE = re.compile("[│┃━─]")


def problems(step: Step, output: str, code: int) -> list[str]:
    """What is wrong with a step's output against its comment (nothing: an empty list)."""
    if step.comment.startswith("error: "):
        lines = output.strip().splitlines()
        promised = step.comment.removesuffix("...").strip()
        if code == 0 or len(lines) != 1 or not lines[0].startswith(promised):
            return [f"expected one line starting {promised!r} and a failure (exit {code})"]
        return []
    found = [] if code == 0 else [f"exit code {code}"]
    promised = re.fullmatch(r"prints the job id: (\d+)", step.comment)
    if promised and output.strip() != promised.group(1):
        found.append(f"expected the job id {promised.group(1)}")
    found += [f"{f!r} missing" for f in re.findall(r'"([^"]+)"', step.comment) if f not in output]
    tables = [line for line in output.splitlines() if TABLE.search(line)]
    if any(len(line) > 80 for line in tables):
        found.append("a table wider than 80 columns")
    if "…" in output:
        found.append("a cell cut short")
    return found


def test_the_readme_steps_are_in_the_order_they_happen():
    steps = walkthrough((ROOT / "README.md").read_text())
    commands = [s.command for s in steps]
    cancel = commands.index("MOSU_TOKEN=$BETA mosu job cancel 1")
    restarted = next(k for k, s in enumerate(steps) if "attempts 2" in s.comment)
    assert restarted < cancel, "the job is cancelled after the restart the text describes"
    for path in re.findall(r"examples/[\w.-]+", " ".join(commands)):
        assert (ROOT / path).is_file(), path
    assert not any("<<" in c for c in commands), "specs ship in examples/, not heredocs"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_readme_walkthrough_does_what_it_says(make_server, tmp_path):  # noqa: F811
    steps = walkthrough((ROOT / "README.md").read_text())
    assert len(steps) >= 20, "the walkthrough section was not found whole"
    server = make_server(*up_flags())
    # The reader's terminal: the repository's files, the config `mosu up` saved, a venv.
    home = tmp_path / "reader"
    (home / ".venv" / "bin").mkdir(parents=True)
    (home / "examples").symlink_to(ROOT / "examples")
    bindir = Path(sys.executable).parent
    (home / ".venv" / "bin" / "activate").write_text(f'export PATH="{bindir}:$PATH"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSU_")}
    env |= {
        "MOSU_CONFIG": server.env["MOSU_CONFIG"],
        "PYTHONPATH": str(ROOT / "src"),
        "COLUMNS": "80",
        "TERM": "dumb",
    }
    assert json.loads(Path(server.env["MOSU_CONFIG"]).read_text())["url"] == server.url
    out = tmp_path / "outputs"
    out.mkdir()
    results = run_in_one_shell(steps, home, env, out)
    failed = [
        f"`{step.command}`: {', '.join(found)}; it printed:\n{output}"
        for step, (output, code) in zip(steps, results, strict=True)
        if (found := problems(step, output, code))
    ]
    assert not failed, "\n\n".join(failed)
    # What the prose says beyond the comments: beta's job was preempted once for acme's
    # and started again after it, acme's ran to its end, and the gang ran both ranks.
    with server.client() as c:
        pretrain, evaluation, gang = (c.get_job(k) for k in (1, 2, 3))
        history = [e.to_state for e in c.job_events(1) if e.kind == "state"]
    assert (pretrain.tenant, pretrain.attempts) == ("beta", 2)
    assert history[:6] == ["pending", "starting", "running", "preempted", "pending", "starting"]
    assert (evaluation.tenant, evaluation.state.value, evaluation.gpus) == ("acme", "succeeded", 4)
    assert (gang.replicas, gang.state.value) == (2, "succeeded")
