"""``Client``: typed calls to the REST API; error bodies become ``mosu.core.errors`` again."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from mosu.core import errors
from mosu.core.api import (
    ClusterOut,
    EventList,
    EventOut,
    JobList,
    JobOut,
    JobSpec,
    JobState,
    JobWhy,
    LogChunk,
    NodeCreate,
    NodeOut,
    QueueEntry,
    QueueOut,
    QuotaSpec,
    QuotaUpdate,
    TenantCreate,
    TenantCreated,
    TenantOut,
    TenantUpdate,
    TokenOut,
    UsageOut,
    UsageRecord,
)

M = TypeVar("M", bound=BaseModel)

_ERRORS: dict[str, type[errors.PlatformError]] = {
    cls.code: cls
    for cls in (
        errors.InvalidInput,
        errors.NotFound,
        errors.Conflict,
        errors.Unauthorized,
        errors.Forbidden,
        errors.CapacityError,
    )
}


class ServerUnreachable(errors.PlatformError):
    code = "unreachable"


class Client:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the mosu server at {self.url} ({exc.__class__.__name__}: {exc}); "
                "start it with 'mosu up' or set MOSU_URL"
            ) from None
        if response.status_code >= 400:
            raise _rebuild_error(response)
        return response

    def _get(self, path: str, model: type[M], **params: Any) -> M:
        clean = {k: v for k, v in params.items() if v is not None}
        return model.model_validate(self._request("GET", path, params=clean).json())

    def _post(self, path: str, model: type[M], body: BaseModel | None = None, **kw: Any) -> M:
        if body is not None:
            kw["json"] = body.model_dump(mode="json", exclude_unset=True)
        return model.model_validate(self._request("POST", path, **kw).json())

    # ------------------------------------------------------------ tenants

    def create_tenant(
        self,
        name: str,
        quotas: dict[str, QuotaSpec],
        weight: float = 1.0,
        cohort: str | None = None,
    ) -> TenantCreated:
        """``cohort`` None (or ``""``): the default cohort."""
        fields: dict[str, Any] = {"name": name, "quotas": quotas, "weight": weight}
        if cohort is not None:
            fields["cohort"] = cohort
        return self._post("/v1/tenants", TenantCreated, TenantCreate(**fields))

    def get_tenant(self, name: str) -> TenantOut:
        return self._get(f"/v1/tenants/{name}", TenantOut)

    def list_tenants(self) -> list[TenantOut]:
        data = self._request("GET", "/v1/tenants").json()
        return [TenantOut.model_validate(x) for x in data]

    def update_quotas(
        self, name: str, quotas: dict[str, QuotaSpec], weight: float | None = None
    ) -> TenantOut:
        body = QuotaUpdate(quotas=quotas, weight=weight)
        data = self._request(
            "PUT", f"/v1/tenants/{name}/quotas", json=body.model_dump(mode="json")
        ).json()
        return TenantOut.model_validate(data)

    def update_tenant(
        self, name: str, *, weight: float | None = None, cohort: str | None = None
    ) -> TenantOut:
        """Change what is given: ``weight`` and/or ``cohort``, where ``cohort=""`` moves
        the tenant to the default cohort and ``None`` keeps its cohort."""
        fields: dict[str, Any] = {}
        if weight is not None:
            fields["weight"] = weight
        if cohort is not None:
            fields["cohort"] = cohort
        body = TenantUpdate(**fields).model_dump(mode="json", exclude_unset=True)
        data = self._request("PATCH", f"/v1/tenants/{name}", json=body).json()
        return TenantOut.model_validate(data)

    def new_token(self, tenant: str) -> str:
        return self._post(f"/v1/tenants/{tenant}/tokens", TokenOut).token

    # ------------------------------------------------------------ nodes

    def register_node(self, body: NodeCreate) -> NodeOut:
        return self._post("/v1/nodes", NodeOut, body)

    def list_nodes(self) -> list[NodeOut]:
        return [NodeOut.model_validate(x) for x in self._request("GET", "/v1/nodes").json()]

    def drain_node(self, name: str, *, stop_jobs: bool = False) -> NodeOut:
        params = {"stop_jobs": "true"} if stop_jobs else None
        return self._post(f"/v1/nodes/{name}/drain", NodeOut, params=params)

    def undrain_node(self, name: str) -> NodeOut:
        return self._post(f"/v1/nodes/{name}/undrain", NodeOut)

    def cluster(self) -> ClusterOut:
        return self._get("/v1/cluster", ClusterOut)

    # ------------------------------------------------------------ jobs

    def submit(self, spec: JobSpec, *, tenant: str | None = None) -> JobOut:
        params = {"tenant": tenant} if tenant else None
        return self._post("/v1/jobs", JobOut, spec, params=params)

    def submit_text(self, text: str, *, tenant: str | None = None) -> JobOut:
        """Submit a YAML or JSON document as is; the server validates it."""
        params = {"tenant": tenant} if tenant else None
        headers = {"Content-Type": "application/yaml"}
        data = self._request(
            "POST", "/v1/jobs", content=text.encode(), headers=headers, params=params
        )
        return JobOut.model_validate(data.json())

    def list_jobs(
        self, *, state: JobState | None = None, tenant: str | None = None, limit: int = 200
    ) -> list[JobOut]:
        return self._get("/v1/jobs", JobList, state=state, tenant=tenant, limit=limit).jobs

    def get_job(self, job_id: int) -> JobOut:
        return self._get(f"/v1/jobs/{job_id}", JobOut)

    def why(self, job_id: int) -> JobWhy:
        return self._get(f"/v1/jobs/{job_id}/why", JobWhy)

    def job_events(self, job_id: int) -> list[EventOut]:
        return self._get(f"/v1/jobs/{job_id}/events", EventList).events

    def events(self, *, after: int = 0, limit: int = 1000) -> list[EventOut]:
        return self._get("/v1/events", EventList, after=after, limit=limit).events

    def logs(self, job_id: int, *, replica: int = 0, offset: int = 0) -> LogChunk:
        return self._get(f"/v1/jobs/{job_id}/logs", LogChunk, replica=replica, offset=offset)

    def cancel(self, job_id: int) -> JobOut:
        return self._post(f"/v1/jobs/{job_id}/cancel", JobOut)

    # ------------------------------------------------------------ queue and usage

    def queue(self) -> list[QueueEntry]:
        return self._get("/v1/queue", QueueOut).entries

    def usage(self, *, tenant: str | None = None) -> list[UsageRecord]:
        return self._get("/v1/usage", UsageOut, tenant=tenant).records

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/v1/health").json()


def _rebuild_error(response: httpx.Response) -> errors.PlatformError:
    try:
        detail = response.json()["error"]
        code, message, field = detail["code"], detail["message"], detail.get("field")
    except (ValueError, KeyError, TypeError):
        return errors.PlatformError(
            f"server answered {response.status_code}: {response.text[:200]}"
        )
    cls = _ERRORS.get(code, errors.PlatformError)
    exc = cls(message, field=field)
    if cls is errors.PlatformError:
        exc.code = code
    return exc
