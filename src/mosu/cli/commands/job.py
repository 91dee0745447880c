"""``mosu job``: submit, list, show, why, logs, cancel."""

from __future__ import annotations

import codecs
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from mosu.cli import config
from mosu.cli.render import Output, OutputOpt, ago, emit, gpus, start_range, table, when
from mosu.core.api import MAX_BODY_BYTES, JobOut, JobState
from mosu.core.errors import InvalidInput
from mosu.core.jobspec import job_spec_from_mapping, parse_job_spec

app = typer.Typer(help="Jobs: submit, list, show, why, logs, cancel.", no_args_is_help=True)


@app.command("submit")
def submit(
    args: Annotated[
        list[str] | None,
        typer.Argument(help="A job spec file (YAML/JSON, '-' for stdin), or after '--' a command."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Job name (submits ARGS as the command).")
    ] = None,
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
    """Submit a job: 'mosu job submit job.yaml' or 'mosu job submit --name N --gpus G -- CMD...'."""
    args = args or []
    if name is not None or gpus_ is not None:
        if not args:
            raise InvalidInput(
                "give the command after '--', e.g. -- python train.py", field="command"
            )
        data: dict[str, object] = {"name": name or Path(args[0]).name, "command": args}
        for key, value in (
            ("gpus", gpus_),
            ("gpu_type", gpu_type),
            ("replicas", replicas),
            ("kind", kind),
            ("priority", int(priority) if priority and priority.isdigit() else priority),
        ):
            if value is not None:
                data[key] = value
        spec = job_spec_from_mapping(data)
    else:
        if len(args) != 1:
            raise InvalidInput(
                "give one job spec file, or --name and --gpus with a command after '--'"
            )
        source = args[0]
        spec = parse_job_spec(read_spec_file(source), source=source)
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
    replica: Annotated[int, typer.Option(help="Which replica's log.")] = 0,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")
    ] = False,
) -> None:
    """Print a replica's stdout and stderr."""
    offset = 0
    with config.client() as c:
        while True:
            chunk = c.logs(job_id, replica=replica, offset=offset)
            if chunk.data:
                sys.stdout.write(chunk.data)
                sys.stdout.flush()
            offset = chunk.next_offset
            if not follow or (chunk.finished and not chunk.data):
                return
            if not chunk.data:
                time.sleep(0.5)


@app.command("cancel")
def cancel(job_id: int, output: OutputOpt = Output.TABLE) -> None:
    """Cancel a job; a running one gets SIGTERM and a grace period first."""
    with config.client() as c:
        job = c.cancel(job_id)
    emit(
        output,
        job,
        lambda: f"job {job.id}: {job.state.value}" + (" (stopping)" if job.stop_requested else ""),
    )
