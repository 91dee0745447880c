"""Dashboard sign-in: a session per browser, backed by the store.

Signing in resolves the token through the API's own token service, then stores a
session row. The browser keeps a random 32-byte session key in an HttpOnly,
SameSite=Strict cookie; the row keeps the SHA-256 of that key and the token sealed
(AES-GCM) under a key derived from it. So the cookie alone is not the token, the
database alone holds no usable token, every server sharing the store shares the
sessions, and signing out deletes the row everywhere at once. Every request unseals
the token and resolves it again through ``TokenCache.resolve``, exactly as the API
resolves a bearer header: whatever makes a token invalid there (revocation, expiry)
ends the session here too.

CSRF: every state-changing form carries a token derived from the session key
(HMAC-SHA256), compared in constant time; the sign-in form, which precedes any
session, uses a double-submit cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete
from sqlalchemy.orm import Session

from mosu.core.errors import Unauthorized
from mosu.service.db.rows import WebSessionRow
from mosu.service.services.auth import Principal, TokenCache

COOKIE = "mosu_session"
SIGNIN_COOKIE = "mosu_signin"
"""The sign-in form's double-submit CSRF cookie."""
SESSION_TTL_S = 12 * 3600.0
"""A session ends this long after sign-in, whatever happens in between."""
_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The principal behind a request, and the CSRF token its forms must carry."""

    principal: Principal
    csrf: str
    session_id: str

    @property
    def label(self) -> str:
        return "operator" if self.principal.is_operator else str(self.principal.tenant)


def _decode_key(cookie: str) -> bytes | None:
    try:
        key = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
    except (ValueError, TypeError):
        return None
    return key if len(key) == _KEY_BYTES else None


def _row_id(key: bytes) -> str:
    return hashlib.sha256(b"mosu-web-session-id\0" + key).hexdigest()


def _sealing_key(key: bytes) -> bytes:
    return hashlib.sha256(b"mosu-web-session-seal\0" + key).digest()


def csrf_for(key: bytes) -> str:
    return hmac.new(key, b"mosu-web-csrf", hashlib.sha256).hexdigest()[:40]


def sign_in(
    session: Session,
    tokens: TokenCache,
    sessions: Callable[[], Session],
    token: str,
    *,
    now: float | None = None,
) -> tuple[str, SignedIn]:
    """Check ``token`` as the API would and open a session for it; returns the cookie
    value and who signed in. Raises ``Unauthorized`` for a token the API refuses."""
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise Unauthorized("paste the token alone, without spaces")
    principal = tokens.resolve(sessions, f"Bearer {token}")
    at = time.time() if now is None else now
    key = secrets.token_bytes(_KEY_BYTES)
    row_id = _row_id(key)
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(_sealing_key(key)).encrypt(nonce, token.encode(), row_id.encode())
    session.execute(delete(WebSessionRow).where(WebSessionRow.expires_at < at))
    session.add(
        WebSessionRow(
            id=row_id,
            sealed_token=sealed,
            tenant=principal.tenant,
            created_at=at,
            expires_at=at + SESSION_TTL_S,
        )
    )
    cookie = base64.urlsafe_b64encode(key).rstrip(b"=").decode()
    return cookie, SignedIn(principal, csrf_for(key), row_id)


def resolve(
    sessions: Callable[[], Session],
    tokens: TokenCache,
    cookie: str | None,
    *,
    now: float | None = None,
) -> SignedIn | None:
    """Who a session cookie belongs to, or None (no cookie, unknown or expired session,
    or a token the API no longer accepts)."""
    key = _decode_key(cookie) if cookie else None
    if key is None:
        return None
    row_id = _row_id(key)
    with sessions() as s:
        row = s.get(WebSessionRow, row_id)
        sealed = None if row is None else (row.sealed_token, row.expires_at)
    at = time.time() if now is None else now
    if sealed is None or sealed[1] <= at:
        return None
    blob = sealed[0]
    try:
        token = AESGCM(_sealing_key(key)).decrypt(blob[:12], blob[12:], row_id.encode()).decode()
    except (InvalidTag, ValueError):
        return None
    try:
        principal = tokens.resolve(sessions, f"Bearer {token}")
    except Unauthorized:
        return None
    return SignedIn(principal, csrf_for(key), row_id)


def sign_out(session: Session, session_id: str) -> None:
    session.execute(delete(WebSessionRow).where(WebSessionRow.id == session_id))


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
