"""Gateway API keys: a tenant's keys, scoped to models, with per-minute request and token
limits; revocable. Only a hash is stored; the key is shown once. The token meter's reads."""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mosu.core.errors import InvalidInput, NotFound
from mosu.core.service_api import KeyCreate, KeyOut, TokenUsageOut
from mosu.service.db.convert import ts
from mosu.service.db.gateway_rows import GatewayKeyRow, ModelServiceRow, TokenUsageRow
from mosu.service.db.rows import TenantRow
from mosu.service.services.auth import Principal
from mosu.service.services.model_services import own_tenant

KEY_PREFIX = "mosu_sk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_out(row: GatewayKeyRow, key: str | None = None) -> KeyOut:
    return KeyOut(
        id=row.id,
        name=row.name,
        tenant=row.tenant,
        prefix=row.prefix,
        models=list(row.models),
        rpm=row.rpm,
        tpm=row.tpm,
        showcase=row.showcase,
        created_at=ts(row.created_at),
        revoked_at=ts(row.revoked_at),
        key=key,
    )


def create_key(
    session: Session, *, principal: Principal, body: KeyCreate, tenant: str | None
) -> KeyOut:
    if body.showcase:
        principal.require_operator("create the showcase key")
        tenant = None
    elif not principal.is_operator:
        if tenant is not None and tenant != principal.tenant:
            raise NotFound(f"no tenant named {tenant!r}", field="tenant")
        tenant = principal.tenant
    elif tenant is None:
        raise InvalidInput("the operator must name the tenant a key is for", field="tenant")
    if tenant is not None and session.get(TenantRow, tenant) is None:
        raise NotFound(f"no tenant named {tenant!r}", field="tenant")
    for model in body.models:
        owner, public = _model_owner(session, model)
        if owner is not None and tenant is not None and owner != tenant and not public:
            # Another tenant's private model is not named, let alone reachable.
            raise NotFound(f"no model named {model!r}", field="models")
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    row = GatewayKeyRow(
        tenant=tenant,
        name=body.name,
        hash=hash_key(key),
        prefix=key[: len(KEY_PREFIX) + 4],
        models=list(body.models),
        rpm=body.rpm,
        tpm=body.tpm,
        showcase=body.showcase,
        created_at=time.time(),
    )
    session.add(row)
    session.flush()
    return key_out(row, key)


def _model_owner(session: Session, model: str) -> tuple[str | None, bool]:
    row = session.execute(
        select(ModelServiceRow.tenant, ModelServiceRow.public, ModelServiceRow.approved).where(
            ModelServiceRow.model == model
        )
    ).first()
    if row is None:
        return None, False
    return row.tenant, bool(row.public and row.approved)


def list_keys(session: Session, *, principal: Principal, tenant: str | None = None) -> list[KeyOut]:
    query = select(GatewayKeyRow).order_by(GatewayKeyRow.id)
    tenant = own_tenant(principal, tenant)
    if tenant is not None:
        query = query.where(GatewayKeyRow.tenant == tenant)
    return [key_out(r) for r in session.scalars(query)]


def revoke_key(session: Session, *, principal: Principal, key_id: int) -> KeyOut:
    row = session.get(GatewayKeyRow, key_id)
    if row is None or (not principal.is_operator and row.tenant != principal.tenant):
        raise NotFound(f"no key {key_id}", field="key_id")
    if row.revoked_at is None:
        row.revoked_at = time.time()
    session.flush()
    return key_out(row)


def token_usage(
    session: Session, *, principal: Principal, tenant: str | None = None
) -> list[TokenUsageOut]:
    """Tokens metered per key and model: a tenant sees its keys' use and its models' use."""
    query = (
        select(
            TokenUsageRow.key_id,
            TokenUsageRow.model,
            TokenUsageRow.owner,
            func.sum(TokenUsageRow.requests),
            func.sum(TokenUsageRow.prompt_tokens),
            func.sum(TokenUsageRow.completion_tokens),
        )
        .join(GatewayKeyRow, GatewayKeyRow.id == TokenUsageRow.key_id)
        .group_by(TokenUsageRow.key_id, TokenUsageRow.model, TokenUsageRow.owner)
        .order_by(TokenUsageRow.key_id, TokenUsageRow.model)
    )
    tenant = own_tenant(principal, tenant)
    if tenant is not None:
        query = query.where((GatewayKeyRow.tenant == tenant) | (TokenUsageRow.owner == tenant))
    return [
        TokenUsageOut(
            key_id=k,
            model=m,
            owner=o,
            requests=int(r or 0),
            prompt_tokens=int(p or 0),
            completion_tokens=int(c or 0),
        )
        for k, m, o, r, p, c in session.execute(query)
    ]
