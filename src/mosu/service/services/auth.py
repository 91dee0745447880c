"""API tokens: random, shown once, stored as SHA-256 hashes.

A principal is either the operator (``tenant`` None) or one tenant.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mosu.core.errors import Forbidden, Unauthorized
from mosu.service.db.rows import TokenRow

OPERATOR_PREFIX = "mosu_op_"
TENANT_PREFIX = "mosu_t_"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str | None
    """None for the operator."""

    @property
    def is_operator(self) -> bool:
        return self.tenant is None

    def require_operator(self, action: str) -> None:
        if not self.is_operator:
            raise Forbidden(f"only the operator may {action}")


OPERATOR = Principal(tenant=None)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, *, tenant: str | None) -> str:
    prefix = OPERATOR_PREFIX if tenant is None else TENANT_PREFIX
    token = prefix + secrets.token_urlsafe(24)
    session.add(TokenRow(token_hash=hash_token(token), tenant=tenant, created_at=time.time()))
    return token


def ensure_operator_token(session: Session, *, token: str | None) -> str | None:
    """The plaintext of a newly created operator token, or None if one already existed.

    A given ``token`` is registered if it is not known yet (so a deployment can pin it).
    """
    if token is not None:
        known = session.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(token)))
        if known is None:
            session.add(TokenRow(token_hash=hash_token(token), tenant=None, created_at=time.time()))
            return token
        return None
    existing = session.scalar(select(TokenRow.id).where(TokenRow.tenant.is_(None)).limit(1))
    if existing is not None:
        return None
    return issue_token(session, tenant=None)


class TokenCache:
    """Token hash → principal. Tokens are never revoked, so entries never go stale."""

    def __init__(self) -> None:
        self._known: dict[str, Principal] = {}

    def cached(self, authorization: str | None) -> Principal | None:
        """The principal of a token seen before; None when the store must be asked (or the
        header is missing or malformed: ``resolve`` then says why)."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self._known.get(hash_token(token.strip()))

    def resolve(self, sessions: Callable[[], Session], authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header; a session is opened only for a
        token not seen before."""
        if not authorization:
            raise Unauthorized("missing token: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("malformed Authorization header: use 'Bearer <token>'")
        digest = hash_token(token.strip())
        principal = self._known.get(digest)
        if principal is not None:
            return principal
        with sessions() as session:
            row = session.scalar(select(TokenRow).where(TokenRow.token_hash == digest))
        if row is None:
            raise Unauthorized("unknown token")
        principal = Principal(tenant=row.tenant)
        self._known[digest] = principal
        return principal
