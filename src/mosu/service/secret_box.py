"""``SecretBox``: the key that encrypts tenants' secrets, and AES-GCM with it.

The key is 32 random bytes in a file (``secrets.key`` in the data directory, or the file
``MOSU_SECRETS_KEY_FILE`` names, which servers sharing one store must all point at). The
file is created with mode 0600 in one step (never created open and tightened after) and
appears whole or not at all: it is written under a temporary name and linked into place,
so two servers starting at once agree on one key.

Each secret is sealed with a fresh 96-bit nonce and its tenant and name as associated
data: a ciphertext copied to another tenant's or another name's row does not open.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mosu.core.errors import InvalidInput

log = logging.getLogger("mosu.secrets")
KEY_BYTES = 32
NONCE_BYTES = 12


class SecretKeyError(InvalidInput):
    """The key file is missing, unreadable, malformed or not the store's key."""

    code = "secrets-key"


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SecretKeyError(f"a secrets key is {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:16]
        """Names the key without revealing it (stored beside each secret)."""

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id})"

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        """The key in ``path``, created there first if the file does not exist."""
        try:
            return cls(_decode(path, path.read_bytes()))
        except FileNotFoundError:
            pass
        _create(path)
        return cls(_decode(path, path.read_bytes()))

    def seal(self, tenant: str, name: str, value: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, value.encode(), _bound_to(tenant, name))

    def open(self, tenant: str, name: str, sealed: bytes) -> str:
        """The value; ``SecretKeyError`` if this key did not seal it for this tenant and name."""
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, _bound_to(tenant, name)).decode()
        except InvalidTag:
            raise SecretKeyError(
                f"secret {name} of tenant {tenant} does not open with key {self.key_id}"
            ) from None


def _bound_to(tenant: str, name: str) -> bytes:
    return f"mosu-secret\0{tenant}\0{name}".encode()


def _decode(path: Path, data: bytes) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("secrets key %s is readable by others (mode %o); make it 0600", path, mode)
    try:
        return base64.urlsafe_b64decode(data.strip())
    except ValueError:
        raise SecretKeyError(f"{path} is not a mosu secrets key") from None


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n"
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
        # Atomic, and fails if another server made the key first: then that one is used.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
