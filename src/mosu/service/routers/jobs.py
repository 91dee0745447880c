from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from mosu.core.api import (
    NAME_PATTERN,
    EventList,
    JobList,
    JobOut,
    JobState,
    JobWhy,
    LogChunk,
)
from mosu.core.errors import InvalidInput, MalformedInput
from mosu.core.jobspec import job_spec_from_mapping
from mosu.core.submission import Submission
from mosu.documents import load_document
from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.openapi import errors
from mosu.service.platform import Platform
from mosu.service.request_guard import is_json, media_type_of, parsed_json
from mosu.service.services import jobs
from mosu.service.services.auth import Principal

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JobId = Annotated[int, Path(ge=1, le=2**31 - 1)]
IDEMPOTENCY_KEY_PATTERN = "^[!-~]{1,255}$"
_IDEMPOTENCY_KEY = re.compile("[!-~]{1,255}")
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
_SPEC = {"schema": {"$ref": "#/components/schemas/JobSpec"}}
_SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": _SPEC, **dict.fromkeys(YAML_TYPES, _SPEC)},
    }
}


class SubmitRoute(APIRoute):
    """``POST /v1/jobs``, the API's hottest request, without the framework's per-request
    dependency resolution when its outcome is known beforehand: no query string (so no
    ``tenant``), at most one well-formed ``Idempotency-Key`` and a token checked a moment
    ago. Resolving the same three parameters generically costs more CPU than the rest of
    the request on the event loop. Anything else (a ``tenant``, a malformed key, a token
    to read from the store, overridden dependencies) takes the declared route, so
    validation errors, documentation and authentication stay the framework's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handler(request: Request) -> Response:
            known = _known_arguments(request)
            if known is None:
                return await declared(request)
            platform, who, key = known
            return await _submit(request, platform, who, None, key)

        return handler


def _known_arguments(request: Request) -> tuple[Platform, Principal, str | None] | None:
    """The submit route's arguments, when they need no resolution; None otherwise."""
    scope = request.scope
    if scope.get("query_string") or request.app.dependency_overrides:
        return None
    key: str | None = None
    authorization: str | None = None
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            if key is not None:
                return None
            key = value.decode("latin-1")
            if _IDEMPOTENCY_KEY.fullmatch(key) is None:
                return None
        elif name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
    platform: Platform = request.app.state.platform
    who = platform.tokens.cached(authorization)
    if who is None:
        return None
    return platform, who, key


async def submit_job(
    request: Request,
    platform: PlatformDep,
    who: PrincipalDep,
    tenant: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=64)] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="Makes retries safe: the same key (and spec) returns the job the "
            "first submission created, for 24 hours at least. Visible ASCII, 1-255 "
            "characters; the same key with another spec is refused (422).",
        ),
    ] = None,
) -> Response:
    """Submit a job spec as JSON, or as YAML with ``Content-Type: application/yaml``."""
    return await _submit(request, platform, who, tenant, idempotency_key)


router.add_api_route(
    "",
    submit_job,
    methods=["POST"],
    status_code=201,
    response_model=JobOut,
    openapi_extra=_SUBMIT_BODY,
    responses=errors(404),
    route_class_override=SubmitRoute,
)


async def _submit(
    request: Request, platform: Platform, who: Principal, tenant: str | None, key: str | None
) -> Response:
    data = parsed_json(request.scope)
    if data is None:
        data = await _read_yaml(request)
    if not isinstance(data, dict):
        raise InvalidInput(f"job spec: expected a mapping of fields, got {type(data).__name__}")
    # The one place a submission's units are converted: everything after reads these.
    job = Submission.of(job_spec_from_mapping(data))
    stored = await request.app.state.submit_writer.submit(who, job, tenant, key)
    # Committed before the loop is woken: the next cycle sees the job; the answer does
    # not wait for that cycle.
    platform.scheduler.wake()
    # Built here and serialized once by pydantic-core (no second validation pass).
    headers = {"Idempotent-Replayed": "true"} if stored.replayed else None
    return Response(
        stored.job.model_dump_json(),
        status_code=201,
        media_type="application/json",
        headers=headers,
    )


def match_submissions_first(app: FastAPI) -> None:
    """Put ``POST /v1/jobs`` first among the app's routes, undocumented (the router's
    own stays the documented one): a request is matched against the routes in order,
    each included router's in turn, which costs a submission more than its own work on
    the event loop when it is matched last. Only this path and method match it, so
    every other request ends where it did."""
    app.router.add_api_route(
        "/v1/jobs",
        submit_job,
        methods=["POST"],
        status_code=201,
        response_model=JobOut,
        include_in_schema=False,
        route_class_override=SubmitRoute,
    )
    app.router.routes.insert(0, app.router.routes.pop())


async def _read_yaml(request: Request) -> object:
    # ``RequestGuard`` let the body through as JSON (parsed already) or as a type this
    # route declares: YAML.
    media = media_type_of(request.headers)
    raw = await request.body()
    if is_json(media) or not raw:
        raise MalformedInput("job spec: empty body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedInput("job spec is not UTF-8 text") from None
    if len(raw) <= 4096:
        return load_document(text, source="job spec")
    # Pure-Python YAML: a large document is parsed off the event loop.
    return await run_in_threadpool(load_document, text, source="job spec")


@router.get("", responses=errors(404))
def list_jobs(
    platform: PlatformDep,
    who: PrincipalDep,
    state: JobState | None = None,
    tenant: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
) -> JobList:
    with platform.tx() as s:
        return JobList(
            jobs=jobs.list_jobs(s, principal=who, state=state, tenant=tenant, limit=limit)
        )


@router.get("/{job_id}", responses=errors(404))
def get_job(job_id: JobId, platform: PlatformDep, who: PrincipalDep) -> JobOut:
    with platform.tx() as s:
        return jobs.get_job(s, principal=who, job_id=job_id)


@router.get("/{job_id}/why", responses=errors(404))
def why(job_id: JobId, platform: PlatformDep, who: PrincipalDep) -> JobWhy:
    position = platform.scheduler.queue_positions.get(job_id)
    with platform.tx() as s:
        return jobs.why(s, principal=who, job_id=job_id, position=position)


@router.get("/{job_id}/events", responses=errors(404))
def job_events(job_id: JobId, platform: PlatformDep, who: PrincipalDep) -> EventList:
    with platform.tx() as s:
        return EventList(events=jobs.events(s, principal=who, job_id=job_id))


@router.get("/{job_id}/logs", responses=errors(404))
def logs(
    job_id: JobId,
    platform: PlatformDep,
    who: PrincipalDep,
    replica: Annotated[int, Query(ge=0, le=4096)] = 0,
    offset: Annotated[int, Query(ge=0, le=2**40)] = 0,
) -> LogChunk:
    with platform.tx() as s:
        return jobs.read_logs(
            s,
            principal=who,
            logs_dir=platform.settings.logs_dir,
            job_id=job_id,
            replica=replica,
            offset=offset,
        )


@router.post("/{job_id}/cancel", responses=errors(404, 409))
def cancel(job_id: JobId, platform: PlatformDep, who: PrincipalDep) -> JobOut:
    with platform.tx() as s:
        out = jobs.cancel(s, principal=who, job_id=job_id)
    platform.scheduler.wake()
    return out
