"""Client calls for model services and gateway keys, over a ``Client``'s connection."""

from __future__ import annotations

from typing import Any

from mosu.client.api import Client
from mosu.core.service_api import (
    KeyCreate,
    KeyList,
    KeyOut,
    ServiceList,
    ServiceOut,
    ServiceScale,
    TokenUsageList,
    TokenUsageOut,
)


class ServicesApi:
    def __init__(self, client: Client) -> None:
        self.client = client

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        return self.client._request(method, path, **kw)

    @staticmethod
    def _tenant(tenant: str | None) -> dict[str, str]:
        return {} if tenant is None else {"tenant": tenant}

    def create(self, spec: dict[str, Any], *, tenant: str | None = None) -> ServiceOut:
        reply = self._call("POST", "/v1/services", json=spec, params=self._tenant(tenant))
        return ServiceOut.model_validate(reply.json())

    def list(self, *, tenant: str | None = None) -> list[ServiceOut]:
        reply = self._call("GET", "/v1/services", params=self._tenant(tenant))
        return ServiceList.model_validate(reply.json()).services

    def show(self, name: str, *, tenant: str | None = None) -> ServiceOut:
        reply = self._call("GET", f"/v1/services/{name}", params=self._tenant(tenant))
        return ServiceOut.model_validate(reply.json())

    def scale(self, name: str, body: ServiceScale, *, tenant: str | None = None) -> ServiceOut:
        reply = self._call(
            "POST",
            f"/v1/services/{name}/scale",
            json=body.model_dump(exclude_none=True),
            params=self._tenant(tenant),
        )
        return ServiceOut.model_validate(reply.json())

    def delete(self, name: str, *, tenant: str | None = None) -> None:
        self._call("DELETE", f"/v1/services/{name}", params=self._tenant(tenant))

    def approve(self, name: str, approved: bool, *, tenant: str | None = None) -> ServiceOut:
        reply = self._call(
            "PUT",
            f"/v1/services/{name}/showcase",
            json={"approved": approved},
            params=self._tenant(tenant),
        )
        return ServiceOut.model_validate(reply.json())

    def create_key(self, body: KeyCreate, *, tenant: str | None = None) -> KeyOut:
        reply = self._call(
            "POST",
            "/v1/keys",
            json=body.model_dump(exclude_none=True),
            params=self._tenant(tenant),
        )
        return KeyOut.model_validate(reply.json())

    def list_keys(self) -> list[KeyOut]:
        return KeyList.model_validate(self._call("GET", "/v1/keys").json()).keys

    def revoke_key(self, key_id: int) -> KeyOut:
        return KeyOut.model_validate(self._call("POST", f"/v1/keys/{key_id}/revoke").json())

    def key_usage(self) -> list[TokenUsageOut]:
        return TokenUsageList.model_validate(self._call("GET", "/v1/keys/usage").json()).usage
