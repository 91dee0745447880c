"""``mosu job``: submit, list, show, why, logs, cancel."""

from __future__ import annotations

import codecs
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from mosu.cli import config
from mosu.cli.render import Output, OutputOpt, ago, emit, gpus, start_range, table, when
from mosu.core.api import MAX_BODY_BYTES, JobOut, JobState
from mosu.core.errors import Conflict, InvalidInput
from mosu.core.jobspec import job_spec_from_mapping
from mosu.documents import load_document

app = typer.Typer(help="Jobs: submit, list, show, why, logs, cancel.", no_args_is_help=True)


class _SubmitCommand(TyperCommand):
    """Keeps what follows ``--`` apart: click folds it into the positional arguments, but
    only words after ``--`` are a command; a word before it is a spec file."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        if "--" in args:
            ctx.meta[_AFTER_DASHES] = args[args.index("--") + 1 :]
        return super().parse_args(ctx, args)


_AFTER_DASHES = "mosu.job.submit.command"

SPEC_FIELDS_HELP = (
    """Submit a job from a spec file, from options and a command, or both.

\b
  mosu job submit job.yaml
  mosu job submit job.yaml --gpus 4       options override the file's fields
  mosu job submit --name eval --gpus 4 -- python3 eval.py
  mosu job submit job.yaml -- python3 x.py   the command replaces the file's

"""
    + (  # one paragraph: help rewraps it to the terminal's width
        "A command is given on the line only after '--'. A spec (YAML or JSON) has these "
        "fields; only command is required, and name defaults to the command's first word:"
    )
    + """

\b
  name              job name
  command           a string (run by sh -c) or a list of arguments
  gpus              GPUs per replica (0.5 shares one GPU); default 1
  replicas          replicas in the gang, started all or none; default 1
  gpu_type          a GPU type, or a list of acceptable ones
  kind              train, finetune, eval, batch, inference or dev
  priority          low, normal, high or 0..1000
  cpu, memory       per replica: cores, and bytes such as 64Gi
  topology          none, same-node or same-rack: where replicas may go
  estimate          expected run time (e.g. 2h): sharpens the estimated start
  max_runtime       stopped after this long (e.g. 1d)
  checkpoint_every  how often it saves its state (e.g. 10m): cheaper to stop
  checkpoint_signal SIGUSR1 (or SIGUSR2, SIGHUP, SIGINT): asked to save before
                    a preemption stops it; it touches $MOSU_CHECKPOINT_FILE
  checkpoint_grace  how long that stop waits for the checkpoint (default 2m)
  env               environment variables, a mapping
  secrets           names of the tenant's secrets, set as variables
  workdir           the directory the command starts in

Reference: docs/platform.md, "Job spec"."""
)


@app.command("submit", cls=_SubmitCommand, help=SPEC_FIELDS_HELP)
def submit(
    ctx: typer.Context,
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="A job spec file (YAML/JSON, '-' for stdin); after '--' the command.",
            metavar="[SPEC] [-- COMMAND...]",
            show_default=False,
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Job name (overrides the spec).")] = None,
    gpus_: Annotated[
        float | None, typer.Option("--gpus", help="GPUs per replica (0.5 shares one).")
    ] = None,
    gpu_type: Annotated[str | None, typer.Option("--gpu-type", help="GPU type.")] = None,
    replicas: Annotated[int | None, typer.Option(help="Replicas in the gang.")] = None,
    kind: Annotated[
        str | None, typer.Option(help="train, finetune, eval, batch, inference, dev.")
    ] = None,
    priority: Annotated[str | None, typer.Option(help="low, normal, high or 0..1000.")] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Submit for this tenant (operator only).")
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    words = list(args or [])
    command: list[str] = ctx.meta.get(_AFTER_DASHES, [])
    files = words[: len(words) - len(command)]
    if len(files) > 1:
        raise InvalidInput(
            f"give one spec file (got {len(files)} words before '--'); "
            "a command goes after '--', e.g. -- python3 train.py",
            field="command",
        )
    overrides: dict[str, object] = {}
    for key, value in (
        ("name", name),
        ("gpus", gpus_),
        ("gpu_type", gpu_type),
        ("replicas", replicas),
        ("kind", kind),
        ("priority", int(priority) if priority and priority.isdigit() else priority),
    ):
        if value is not None:
            overrides[key] = value
    if command:
        overrides["command"] = command
    if files:
        source = files[0]
        data = load_document(read_spec_file(source), source=source)
        spec = job_spec_from_mapping({**data, **overrides}, source=source)
    elif command:
        overrides.setdefault("name", Path(command[0]).name)
        spec = job_spec_from_mapping(overrides)
    else:
        raise InvalidInput(
            "give a spec file, or a command after '--' (e.g. --gpus 1 -- python3 train.py)",
            field="command",
        )
    with config.client() as c:
        job = c.submit(spec, tenant=tenant)
    emit(output, job, lambda: str(job.id))


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
"""Encodings a text file announces with a byte-order mark (UTF-32 before UTF-16: its
little-endian mark begins with UTF-16's)."""


def read_spec_file(source: str) -> str:
    """The text of a spec file (``-``: stdin): UTF-8, or UTF-16/32 with a byte-order mark.
    Anything else, and a file larger than the API accepts, is one ``InvalidInput``."""
    if source == "-":
        data = sys.stdin.buffer.read(MAX_BODY_BYTES + 1)
    else:
        with Path(source).open("rb") as f:
            data = f.read(MAX_BODY_BYTES + 1)
    if len(data) > MAX_BODY_BYTES:
        raise InvalidInput(f"{source}: larger than {MAX_BODY_BYTES // 1024} KiB; not a job spec")
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{source}: not a text file ({encoding} expected; byte {exc.start} is not)"
        ) from None


def _job_rows(jobs: list[JobOut]) -> list[tuple[object, ...]]:
    rows = []
    for j in jobs:
        placed = " ".join(f"{a.node}[{','.join(map(str, a.gpu_indices))}]" for a in j.allocations)
        status = j.state.value + (f" ({j.stop_requested})" if j.stop_requested else "")
        detail = j.pending_reason or placed or j.message
        rows.append(
            (
                j.id,
                j.tenant,
                j.name,
                f"{j.replicas}x{gpus(j.gpus)}",
                status,
                detail,
                ago(j.submitted_at),
            )
        )
    return rows


@app.command("list")
def list_(
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's jobs.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Jobs, newest first."""
    with config.client() as c:
        jobs = c.list_jobs(state=state, tenant=tenant, limit=limit)
    cols = ["id", "tenant", "name", "gpus", "state", "where / why", "submitted"]
    emit(output, jobs, lambda: table(None, cols, _job_rows(jobs)) if jobs else "no jobs")


@app.command("show")
def show(job_id: int, output: OutputOpt = Output.TABLE) -> None:
    """One job with its allocation and history."""
    with config.client() as c:
        job = c.get_job(job_id)
        events = c.job_events(job_id)

    def render() -> str:
        lines = [
            f"job {job.id} {job.name!r} ({job.kind.value}) of {job.tenant}: {job.state.value}",
            f"  {job.replicas} x {gpus(job.gpus)} GPU"
            + (f" of {', '.join(job.gpu_types)}" if job.gpu_types else "")
            + f", priority {job.priority}, attempts {job.attempts}",
        ]
        for a in job.allocations:
            lines.append(f"  replica {a.replica}: {a.node} GPUs {a.gpu_indices} pid {a.pid}")
        if job.last_checkpoint_at is not None:
            lines.append(f"  last checkpoint: {when(job.last_checkpoint_at)}")
        secret_names = job.spec.get("secrets") or []
        if secret_names:  # names only: the values never leave the server
            lines.append("  secrets: " + ", ".join(f"{n}=****" for n in secret_names))
        if job.message:
            lines.append(f"  {job.message}")
        lines.append("  history:")
        for e in events:
            change = f"{e.from_state or '-'} -> {e.to_state}" if e.kind == "state" else e.kind
            extra = f" ({e.reason})" if e.reason else ""
            msg = f": {e.message}" if e.message else ""
            lines.append(f"    {when(e.at)}  {change}{extra}{msg}")
        return "\n".join(lines)

    emit(
        output,
        {"job": job.model_dump(mode="json"), "events": [e.model_dump(mode="json") for e in events]},
        render,
    )


@app.command("why")
def why(job_id: int, output: OutputOpt = Output.TABLE) -> None:
    """Why a job is where it is, in one sentence; for a pending job, when it will
    likely start and the late bound it starts before nine times in ten."""
    with config.client() as c:
        answer = c.why(job_id)

    def render() -> str:
        if answer.state != JobState.PENDING or answer.reason is None:
            return answer.sentence
        start = start_range(answer.estimated_start, answer.estimated_start_late)
        return f"{answer.sentence}\nestimated start: {start}"

    emit(output, answer, render)


@app.command("logs")
def logs(
    job_id: int,
    replica: Annotated[
        str,
        typer.Option(
            metavar="N|all",
            help="Which replica's log; 'all': every replica's, each line prefixed by its rank.",
        ),
    ] = "0",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")
    ] = False,
) -> None:
    """Print a replica's stdout and stderr (or every replica's, with --replica all)."""
    with config.client() as c:
        if replica == "all":
            ranks = list(range(c.get_job(job_id).replicas))
            prefix = True
        elif replica.isdigit():
            ranks, prefix = [int(replica)], False
        else:
            raise InvalidInput(f"{replica!r} is not a replica number or 'all'", field="--replica")
        tails = {r: _Tail(f"[{r}] " if prefix else "") for r in ranks}
        while True:
            idle = True
            for rank, tail in tails.items():
                chunk = c.logs(job_id, replica=rank, offset=tail.offset)
                tail.offset, tail.finished = chunk.next_offset, chunk.finished
                if chunk.data:
                    idle = False
                    sys.stdout.write(tail.lines(chunk.data))
                    sys.stdout.flush()
            if not follow or (idle and all(t.finished for t in tails.values())):
                break
            if idle:
                time.sleep(0.5)
        for tail in tails.values():  # a last line without its newline
            sys.stdout.write(tail.lines("", final=True))


class _Tail:
    """One replica's log as it is read: where the next read starts, and the part of a
    line not yet printed (a prefixed line is printed whole, never split between ranks)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.offset = 0
        self.finished = False
        self.partial = ""

    def lines(self, data: str, *, final: bool = False) -> str:
        if not self.prefix:
            return data
        text = self.partial + data
        whole, _, self.partial = text.rpartition("\n") if not final else (text, "", "")
        if not whole:
            return ""
        return "".join(f"{self.prefix}{line}\n" for line in whole.split("\n"))


_ENDED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


@app.command("cancel")
def cancel(job_id: int, output: OutputOpt = Output.TABLE) -> None:
    """Cancel a job; a running one gets SIGTERM and a grace period first. A job that has
    ended already is left as it is, and the command fails saying so."""
    with config.client() as c:
        before = c.get_job(job_id)
        if before.state in _ENDED:
            raise Conflict(f"job {job_id} already {before.state.value}; nothing was cancelled")
        job = c.cancel(job_id)
    if job.state in _ENDED and job.state != JobState.CANCELLED:  # it ended meanwhile
        raise Conflict(f"job {job_id} {job.state.value} meanwhile; nothing was cancelled")
    emit(
        output,
        job,
        lambda: f"job {job.id}: {job.state.value}" + (" (stopping)" if job.stop_requested else ""),
    )
