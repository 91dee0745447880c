"""Tenants' named secrets: stored sealed, listed by name, never returned; opened only to
launch one of the tenant's own jobs."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from mosu.core.api import SecretOut
from mosu.core.errors import Conflict, InvalidInput, NotFound
from mosu.service.db.convert import ts
from mosu.service.db.rows import MetaRow, SecretRow, TenantRow
from mosu.service.secret_box import SecretBox, SecretKeyError
from mosu.service.services.auth import Principal

KEY_ID = "secrets-key-id"
"""The ``meta`` row naming the key this store's secrets are sealed with."""
SESSION_BOX = "secret_box"
"""Where a session finds the server's ``SecretBox`` (``Session.info``)."""


def check_key(session: Session, box: SecretBox, *, key_path: str) -> None:
    """At start: refuse to serve a store whose secrets this server's key cannot open.
    Every server sharing a store must use one key file; the store names its key from the
    first secret on."""
    row = session.get(MetaRow, KEY_ID)
    if row is not None and row.value != box.key_id:
        raise SecretKeyError(
            f"this store's secrets are sealed with key {row.value}, but {key_path} holds key "
            f"{box.key_id}; give every server the same key file (MOSU_SECRETS_KEY_FILE)"
        )


def _pin_key(session: Session, box: SecretBox) -> None:
    # The first secret names the store's key; a server with another key (started before
    # any secret existed) may not seal one the others could not open.
    row = session.get(MetaRow, KEY_ID)
    if row is None:
        session.add(MetaRow(name=KEY_ID, value=box.key_id))
    elif row.value != box.key_id:
        raise Conflict(
            f"this server's secrets key ({box.key_id}) is not the store's ({row.value}); "
            "give every server the same key file (MOSU_SECRETS_KEY_FILE) and restart it"
        )


def _owner(session: Session, principal: Principal, tenant: str | None) -> str:
    if not principal.is_operator:
        if tenant is not None and tenant != principal.tenant:
            raise NotFound(f"no tenant named {tenant!r}", field="tenant")
        return str(principal.tenant)
    if tenant is None:
        raise InvalidInput("the operator must name the tenant", field="tenant")
    if session.get(TenantRow, tenant) is None:
        raise NotFound(f"no tenant named {tenant!r}", field="tenant")
    return tenant


def _out(row: SecretRow) -> SecretOut:
    return SecretOut(
        name=row.name,
        tenant=row.tenant,
        created_at=ts(row.created_at),
        updated_at=ts(row.updated_at),
    )


def set_secret(
    session: Session,
    *,
    principal: Principal,
    box: SecretBox,
    tenant: str | None,
    name: str,
    value: str,
) -> tuple[SecretOut, bool]:
    """Store (or replace) a secret; True when it is new. Jobs launched from now on get
    the new value."""
    owner = _owner(session, principal, tenant)
    _pin_key(session, box)
    now = time.time()
    row = session.get(SecretRow, (owner, name))
    created = row is None
    if row is None:
        row = SecretRow(tenant=owner, name=name, created_at=now)
        session.add(row)
    row.key_id = box.key_id
    row.ciphertext = box.seal(owner, name, value)
    row.updated_at = now
    session.flush()
    return _out(row), created


def list_secrets(session: Session, *, principal: Principal, tenant: str | None) -> list[SecretOut]:
    query = select(SecretRow).order_by(SecretRow.tenant, SecretRow.name)
    if not principal.is_operator or tenant is not None:
        query = query.where(SecretRow.tenant == _owner(session, principal, tenant))
    return [_out(row) for row in session.scalars(query)]


def delete_secret(session: Session, *, principal: Principal, tenant: str | None, name: str) -> None:
    """Forget a secret at once; a job that names it and has not started yet will fail."""
    owner = _owner(session, principal, tenant)
    row = session.get(SecretRow, (owner, name))
    if row is None:
        raise NotFound(f"no secret named {name!r}", field="name")
    session.delete(row)
    session.flush()


def check_exist(session: Session, *, tenant: str, names: Sequence[str]) -> None:
    """Refuse a submission naming a secret its tenant does not have."""
    if not names:
        return
    have = set(
        session.scalars(
            select(SecretRow.name).where(SecretRow.tenant == tenant, SecretRow.name.in_(names))
        )
    )
    for index, name in enumerate(names):
        if name not in have:
            raise InvalidInput(
                f"tenant {tenant!r} has no secret named {name!r}; "
                f"store it first with 'mosu secret set {name}'",
                field=f"secrets[{index}]",
            )


def reveal(session: Session, *, tenant: str, names: Sequence[str]) -> dict[str, str]:
    """The values of ``tenant``'s secrets, to launch one of its jobs: the only place a
    value is opened. ``SecretKeyError`` names a secret that is gone or unreadable."""
    box = session.info.get(SESSION_BOX)
    if not names:
        return {}
    if box is None:
        raise SecretKeyError("this server has no secrets key")
    rows = {
        row.name: row
        for row in session.scalars(
            select(SecretRow).where(SecretRow.tenant == tenant, SecretRow.name.in_(names))
        )
    }
    values = {}
    for name in names:
        row = rows.get(name)
        if row is None:
            raise SecretKeyError(f"secret {name} no longer exists")
        values[name] = box.open(tenant, name, row.ciphertext)
    return values
