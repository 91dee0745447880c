"""``Client``: typed calls to the REST API; error bodies become ``mosu.core.errors`` again.

A submission is safe to retry: each carries an ``Idempotency-Key`` (one per submission,
the same on every attempt), and ``submit`` tries again when the connection fails or the
server answers 503, so a dropped answer never creates the job twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
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
    SecretList,
    SecretOut,
    SecretSet,
    TenantCreate,
    TenantCreated,
    TenantOut,
    TenantQuotasOut,
    TenantUpdate,
    TokenCreate,
    TokenInfo,
    TokenList,
    TokenOut,
    UsageOut,
    UsageRecord,
)
from mosu.core.credits import CreditPolicy
from mosu.core.credits_api import (
    BalanceList,
    BalanceOut,
    GrantCreate,
    GrantOut,
    RateList,
    RateSet,
    StatementOut,
)
from mosu.core.history_api import HistoryExportOut

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
        errors.MalformedInput,
        errors.TooLarge,
        errors.UnsupportedMediaType,
        errors.Unavailable,
        errors.IdempotencyKeyReused,
    )
}
RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0, 4.0)
"""Waits between the attempts of a submission (six attempts over about 8 s)."""


class ServerUnreachable(errors.PlatformError):
    code = "unreachable"


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


class Client:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        self._retry_delays_s = tuple(retry_delays_s)
        self._sleep = sleep

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
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise _rebuild_error(response)
        return response

    def _unreachable(self, exc: httpx.TransportError) -> ServerUnreachable:
        return ServerUnreachable(
            f"cannot reach the mosu server at {self.url} ({exc.__class__.__name__}: {exc}); "
            "start it with 'mosu up' or set MOSU_URL"
        )

    def _idempotent(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request that carries an ``Idempotency-Key``: tried again, unchanged, after a
        connection error or a 503, since the server answers a repeat with the first
        result."""
        for delay in (*self._retry_delays_s, None):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if delay is None:
                    raise self._unreachable(exc) from None
            else:
                if response.status_code != 503 or delay is None:
                    break
            self._sleep(delay)
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
        on_credits_exhausted: str | None = None,
    ) -> TenantCreated:
        """``cohort`` None (or ``""``): the default cohort."""
        fields: dict[str, Any] = {"name": name, "quotas": quotas, "weight": weight}
        if cohort is not None:
            fields["cohort"] = cohort
        if on_credits_exhausted is not None:
            fields["on_credits_exhausted"] = CreditPolicy(on_credits_exhausted)
        return self._post("/v1/tenants", TenantCreated, TenantCreate(**fields))

    def get_tenant(self, name: str) -> TenantOut:
        return self._get(f"/v1/tenants/{name}", TenantOut)

    def list_tenants(self) -> list[TenantOut]:
        data = self._request("GET", "/v1/tenants").json()
        return [TenantOut.model_validate(x) for x in data]

    def update_quotas(
        self, name: str, quotas: dict[str, QuotaSpec], weight: float | None = None
    ) -> TenantQuotasOut:
        body = QuotaUpdate(quotas=quotas, weight=weight)
        data = self._request(
            "PUT", f"/v1/tenants/{name}/quotas", json=body.model_dump(mode="json")
        ).json()
        return TenantQuotasOut.model_validate(data)

    def update_tenant(
        self,
        name: str,
        *,
        weight: float | None = None,
        cohort: str | None = None,
        on_credits_exhausted: str | None = None,
    ) -> TenantOut:
        """Change what is given: ``weight`` and/or ``cohort``, where ``cohort=""`` moves
        the tenant to the default cohort and ``None`` keeps its cohort."""
        fields: dict[str, Any] = {}
        if weight is not None:
            fields["weight"] = weight
        if cohort is not None:
            fields["cohort"] = cohort
        if on_credits_exhausted is not None:
            fields["on_credits_exhausted"] = CreditPolicy(on_credits_exhausted)
        body = TenantUpdate(**fields).model_dump(mode="json", exclude_unset=True)
        data = self._request("PATCH", f"/v1/tenants/{name}", json=body).json()
        return TenantOut.model_validate(data)

    def new_token(self, tenant: str) -> str:
        return self._post(f"/v1/tenants/{tenant}/tokens", TokenOut).token

    # ------------------------------------------------------------ credits

    def grant_credits(self, body: GrantCreate) -> GrantOut:
        return self._post("/v1/credits/grants", GrantOut, body)

    def credit_balances(self, *, tenant: str | None = None) -> list[BalanceOut]:
        return self._get("/v1/credits/balances", BalanceList, tenant=tenant).balances

    def credit_statement(
        self, *, tenant: str | None = None, month: str | None = None
    ) -> StatementOut:
        return self._get("/v1/credits/statement", StatementOut, tenant=tenant, month=month)

    def rates(self) -> RateList:
        return self._get("/v1/rates", RateList)

    def set_rates(self, body: RateSet) -> RateList:
        return self._post("/v1/rates", RateList, body)

    # ------------------------------------------------------------ tokens

    def create_token(
        self,
        *,
        name: str | None = None,
        tenant: str | None = None,
        expires_in: float | str | None = None,
    ) -> TokenOut:
        """A new token (shown once): the caller's tenant's, or as the operator, one for
        ``tenant`` (an operator token when ``tenant`` is None)."""
        fields = {"name": name, "tenant": tenant, "expires_in": expires_in}
        body = TokenCreate(**{k: v for k, v in fields.items() if v is not None})
        return self._post("/v1/tokens", TokenOut, body)

    def list_tokens(
        self, *, tenant: str | None = None, include_dead: bool = False
    ) -> list[TokenInfo]:
        """Live tokens; with ``include_dead``, revoked and expired ones too."""
        params = {"all": "true"} if include_dead else {}
        return self._get("/v1/tokens", TokenList, tenant=tenant, **params).tokens

    def revoke_token(self, token_id: int) -> TokenInfo:
        return TokenInfo.model_validate(self._request("DELETE", f"/v1/tokens/{token_id}").json())

    def rotate_token(self) -> TokenOut:
        """Replace this client's token; the client goes on with the new one."""
        out = self._post("/v1/tokens/rotate", TokenOut)
        self._http.headers["Authorization"] = f"Bearer {out.token}"
        return out

    # ------------------------------------------------------------ secrets

    def set_secret(self, name: str, value: str, *, tenant: str | None = None) -> SecretOut:
        params = {"tenant": tenant} if tenant else None
        body = SecretSet(value=value).model_dump(mode="json")
        data = self._request("PUT", f"/v1/secrets/{name}", json=body, params=params).json()
        return SecretOut.model_validate(data)

    def list_secrets(self, *, tenant: str | None = None) -> list[SecretOut]:
        return self._get("/v1/secrets", SecretList, tenant=tenant).secrets

    def delete_secret(self, name: str, *, tenant: str | None = None) -> None:
        params = {"tenant": tenant} if tenant else None
        self._request("DELETE", f"/v1/secrets/{name}", params=params)

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

    # ------------------------------------------------------------ history

    def export_history(
        self, *, since: float | None = None, until: float | None = None
    ) -> HistoryExportOut:
        return self._get("/v1/history/export", HistoryExportOut, since=since, until=until)

    # ------------------------------------------------------------ jobs

    def submit(
        self, spec: JobSpec, *, tenant: str | None = None, idempotency_key: str | None = None
    ) -> JobOut:
        """Submit a job exactly once, retrying a dropped connection or a 503 with the same
        ``idempotency_key`` (a new one per call when not given)."""
        params = {"tenant": tenant} if tenant else None
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        body = spec.model_dump(mode="json", exclude_unset=True)
        data = self._idempotent("POST", "/v1/jobs", json=body, params=params, headers=headers)
        return JobOut.model_validate(data.json())

    def submit_text(
        self, text: str, *, tenant: str | None = None, idempotency_key: str | None = None
    ) -> JobOut:
        """Submit a YAML or JSON document as is (the server validates it), exactly once."""
        params = {"tenant": tenant} if tenant else None
        headers = {
            "Content-Type": "application/yaml",
            "Idempotency-Key": idempotency_key or new_idempotency_key(),
        }
        data = self._idempotent(
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
