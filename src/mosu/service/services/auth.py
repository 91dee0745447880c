"""API tokens as credentials: random, shown once, stored as SHA-256 hashes; named, with an
optional expiry, a last-used time and revocation.

A principal is either the operator (``tenant`` None) or one tenant. Several servers may
share one store, so no server trusts what it remembers of a token for longer than
``RECHECK_S``: after that the next request with it reads the token's row again, and a
token revoked on one server is refused by every other within a second. A token's use is
written at most once a ``LAST_USED_RESOLUTION_S`` per server, never on every request.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mosu.core.api import TokenCreate, TokenInfo, TokenOut, parse_duration_s
from mosu.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from mosu.service.db.convert import ts
from mosu.service.db.rows import TenantRow, TokenRow

OPERATOR_PREFIX = "mosu_op_"
TENANT_PREFIX = "mosu_t_"
RECHECK_S = 0.5
"""How long a server trusts a token it checked without reading its row again."""
LAST_USED_RESOLUTION_S = 60.0
"""A token's ``last_used_at`` is written when it is at least this old."""


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str | None
    """None for the operator."""
    token_id: int | None = None
    """The token the request was made with (None for the server's own calls)."""

    @property
    def is_operator(self) -> bool:
        return self.tenant is None

    def require_operator(self, action: str) -> None:
        if not self.is_operator:
            raise Forbidden(f"only the operator may {action}")


OPERATOR = Principal(tenant=None)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _live(now: float):  # type: ignore[no-untyped-def]
    """Rows of tokens that still authenticate at ``now``."""
    return (
        TokenRow.revoked_at.is_(None),
        (TokenRow.expires_at.is_(None)) | (TokenRow.expires_at > now),
    )


def issue_token(
    session: Session,
    *,
    tenant: str | None,
    name: str | None = None,
    expires_at: float | None = None,
    now: float | None = None,
) -> tuple[str, TokenRow]:
    """A new token for ``tenant`` (None: the operator): its plaintext, shown once, and its
    row. ``name`` must not be held by another live token of the same owner."""
    now = time.time() if now is None else now
    if name is not None:
        taken = session.scalar(
            select(TokenRow.id).where(
                TokenRow.name == name,
                TokenRow.tenant.is_(None) if tenant is None else TokenRow.tenant == tenant,
                *_live(now),
            )
        )
        if taken is not None:
            owner = "the operator" if tenant is None else f"tenant {tenant!r}"
            raise Conflict(f"{owner} already has a live token named {name!r}", field="name")
    prefix = OPERATOR_PREFIX if tenant is None else TENANT_PREFIX
    token = prefix + secrets.token_urlsafe(24)
    row = TokenRow(
        token_hash=hash_token(token),
        tenant=tenant,
        created_at=now,
        name=name or "pending",
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    if name is None:
        row.name = f"token-{row.id}"
    return token, row


def token_info(row: TokenRow, *, current: int | None = None) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        tenant=row.tenant,
        created_at=ts(row.created_at),
        expires_at=ts(row.expires_at),
        last_used_at=ts(row.last_used_at),
        revoked_at=ts(row.revoked_at),
        current=row.id == current,
    )


def create_token(
    session: Session, *, principal: Principal, body: TokenCreate, now: float | None = None
) -> TokenOut:
    """A tenant creates tokens of its own tenant; the operator creates them for any
    tenant, or operator tokens when ``body.tenant`` is left out."""
    now = time.time() if now is None else now
    tenant = body.tenant
    if not principal.is_operator:
        if tenant is not None and tenant != principal.tenant:
            raise NotFound(f"no tenant named {tenant!r}", field="tenant")
        tenant = principal.tenant
    elif tenant is not None and session.get(TenantRow, tenant) is None:
        raise NotFound(f"no tenant named {tenant!r}", field="tenant")
    lifetime = parse_duration_s(body.expires_in)
    expires_at = None if lifetime is None else now + lifetime
    token, row = issue_token(session, tenant=tenant, name=body.name, expires_at=expires_at, now=now)
    return TokenOut(token=token, info=token_info(row))


def list_tokens(
    session: Session,
    *,
    principal: Principal,
    tenant: str | None = None,
    include_dead: bool = False,
    now: float | None = None,
) -> list[TokenInfo]:
    """A tenant's tokens (its own only); the operator's view is every token, or one
    tenant's. Revoked and expired ones only with ``include_dead``."""
    now = time.time() if now is None else now
    query = select(TokenRow).order_by(TokenRow.id)
    if not principal.is_operator:
        if tenant is not None and tenant != principal.tenant:
            raise NotFound(f"no tenant named {tenant!r}", field="tenant")
        tenant = principal.tenant
    if tenant is not None:
        query = query.where(TokenRow.tenant == tenant)
    if not include_dead:
        query = query.where(*_live(now))
    return [token_info(row, current=principal.token_id) for row in session.scalars(query)]


def _visible_row(session: Session, principal: Principal, token_id: int) -> TokenRow:
    row = session.get(TokenRow, token_id)
    if row is None or (not principal.is_operator and row.tenant != principal.tenant):
        raise NotFound(f"no token {token_id}", field="token_id")
    return row


def revoke_token(
    session: Session, *, principal: Principal, token_id: int, now: float | None = None
) -> TokenInfo:
    """Revoke a token (again: a no-op). It is refused everywhere within ``RECHECK_S``."""
    row = _visible_row(session, principal, token_id)
    if row.revoked_at is None:
        row.revoked_at = time.time() if now is None else now
    session.flush()
    return token_info(row, current=principal.token_id)


def rotate_token(session: Session, *, principal: Principal, now: float | None = None) -> TokenOut:
    """Replace the token of this request: a new one with the same name, owner and
    lifetime; the old one is revoked in the same transaction."""
    if principal.token_id is None:
        raise InvalidInput("only a request made with a token can rotate it")
    now = time.time() if now is None else now
    old = _visible_row(session, principal, principal.token_id)
    if old.revoked_at is not None:
        raise Unauthorized("token revoked")
    old.revoked_at = now
    session.flush()
    lifetime = None if old.expires_at is None else old.expires_at - old.created_at
    token, row = issue_token(
        session,
        tenant=old.tenant,
        name=old.name,
        expires_at=None if lifetime is None else now + lifetime,
        now=now,
    )
    return TokenOut(token=token, info=token_info(row))


def ensure_operator_token(session: Session, *, token: str | None) -> str | None:
    """The plaintext of a newly created operator token, or None if one already existed.

    A given ``token`` is registered if it is not known yet (so a deployment can pin it); a
    pinned token that was revoked stays revoked. Without one, a store whose operator
    tokens were all revoked or expired gets a new one."""
    now = time.time()
    if token is not None:
        known = session.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(token)))
        if known is None:
            session.add(
                TokenRow(token_hash=hash_token(token), tenant=None, created_at=now, name="operator")
            )
            return token
        return None
    existing = session.scalar(
        select(TokenRow.id).where(TokenRow.tenant.is_(None), *_live(now)).limit(1)
    )
    if existing is not None:
        return None
    plaintext, _row = issue_token(session, tenant=None, name=None, now=now)
    return plaintext


# ---------------------------------------------------------------- per-server cache

IN_USE_S = 5.0
"""A cached token used this recently is read again together with the next token that
has to be read; one idle longer waits for its own next request."""
FORGET_S = 60.0
"""A cached token idle this long is dropped (the cache holds what is in use)."""
RECHECK_BATCH = 500
"""The most tokens one recheck reads."""


@dataclass(slots=True)
class _Checked:
    principal: Principal
    expires_at: float | None
    checked_at: float
    """Monotonic time before its row was last read."""
    used_at: float
    """Monotonic time of its last request here."""
    last_used_at: float | None
    """The row's ``last_used_at`` as last read or written."""


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


_TOKEN_COLUMNS = (
    TokenRow.id,
    TokenRow.token_hash,
    TokenRow.tenant,
    TokenRow.revoked_at,
    TokenRow.expires_at,
    TokenRow.last_used_at,
)


class TokenCache:
    """Token hash → principal, trusted for ``RECHECK_S`` after its row was read.

    A token whose check lapsed is read from the store, and with it every other token in
    use here whose check is half way to lapsing: one query keeps the checks of all the
    tenants that are busy at once fresh, instead of one query per token per interval.
    Each token's trust still ends ``RECHECK_S`` after its own row was read."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._known: dict[str, _Checked] = {}
        self._clock = clock
        self._monotonic = monotonic

    def now(self) -> float:
        """The wall time tokens are checked against: what a token's creation, expiry,
        listing and revocation are timed by too, so one clock decides all of them."""
        return self._clock()

    def cached(self, authorization: str | None) -> Principal | None:
        """The principal of a token checked a moment ago; None when the store must be
        asked (or the header is missing or malformed: ``resolve`` then says why)."""
        token = _bearer(authorization)
        if token is None:
            return None
        known = self._known.get(hash_token(token))
        if known is None:
            return None
        mono = self._monotonic()
        if mono - known.checked_at >= RECHECK_S:
            return None
        if known.expires_at is not None and self._clock() >= known.expires_at:
            return None
        known.used_at = mono
        return known.principal

    def forget(self, token_id: int) -> None:
        """Drop a token this server revoked, so that it is refused here at once."""
        for digest, known in list(self._known.items()):
            if known.principal.token_id == token_id:
                self._known.pop(digest, None)

    def resolve(self, sessions: Callable[[], Session], authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header, read from the store."""
        if not authorization:
            raise Unauthorized("missing token: send 'Authorization: Bearer <token>'")
        token = _bearer(authorization)
        if token is None:
            raise Unauthorized("malformed Authorization header: use 'Bearer <token>'")
        digest = hash_token(token)
        now, mono = self._clock(), self._monotonic()
        due = self._due(digest, mono)
        with sessions() as session:
            rows = {
                row.token_hash: row
                for row in session.execute(
                    select(*_TOKEN_COLUMNS).where(TokenRow.token_hash.in_([digest, *due]))
                )
            }
            for other in due:
                self._refresh(other, rows.get(other), now, mono)
            row = rows.get(digest)
            if row is None:
                self._known.pop(digest, None)
                raise Unauthorized("unknown token")
            if row.revoked_at is not None:
                self._known.pop(digest, None)
                raise Unauthorized("token revoked")
            if row.expires_at is not None and now >= row.expires_at:
                self._known.pop(digest, None)
                raise Unauthorized("token expired")
            principal = Principal(tenant=row.tenant, token_id=row.id)
            self._known[digest] = _Checked(principal, row.expires_at, mono, mono, row.last_used_at)
            self._record_uses(session, now, mono)
        return principal

    def _due(self, digest: str, mono: float) -> list[str]:
        """Other tokens in use whose check is half way to lapsing; forgets idle ones."""
        due = []
        for other, known in list(self._known.items()):
            if mono - known.used_at >= FORGET_S:
                self._known.pop(other, None)
            elif (
                other != digest
                and mono - known.used_at < IN_USE_S
                and mono - known.checked_at >= RECHECK_S / 2
            ):
                due.append(other)
        return due[:RECHECK_BATCH]

    def _refresh(self, digest: str, row: Any, now: float, mono: float) -> None:
        known = self._known.get(digest)
        if known is None:
            return
        if (
            row is None
            or row.revoked_at is not None
            or (row.expires_at is not None and now >= row.expires_at)
        ):
            self._known.pop(digest, None)
            return
        known.expires_at, known.checked_at = row.expires_at, mono
        if known.last_used_at is None or (row.last_used_at or 0.0) > known.last_used_at:
            known.last_used_at = row.last_used_at

    def _record_uses(self, session: Session, now: float, mono: float) -> None:
        """Write ``last_used_at`` of the tokens in use here whose stored one is
        ``LAST_USED_RESOLUTION_S`` old, in one statement. Bookkeeping, not a check: a busy
        store delays it to the next recheck rather than failing the request."""
        stale = [
            known
            for known in list(self._known.values())
            if known.principal.token_id is not None
            and mono - known.used_at < IN_USE_S
            and (known.last_used_at is None or now - known.last_used_at >= LAST_USED_RESOLUTION_S)
        ]
        if not stale:
            return
        ids = sorted({known.principal.token_id for known in stale if known.principal.token_id})
        try:
            session.execute(update(TokenRow).where(TokenRow.id.in_(ids)).values(last_used_at=now))
            session.commit()
        except SQLAlchemyError:
            session.rollback()
            return
        for known in stale:
            known.last_used_at = now
