"""Which server and identity the CLI uses: ``MOSU_URL``/``MOSU_TOKEN``, else the client
config ``mosu up`` saved (``MOSU_CONFIG``, default ``~/.mosu/client.json``)."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mosu.client import Client
from mosu.core.errors import InvalidInput

DEFAULT_URL = "http://127.0.0.1:8765"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    url: str
    token: str | None
    token_source: str = ""
    """Where the token came from: ``MOSU_TOKEN`` or the config file's path."""


def config_path() -> Path:
    explicit = os.environ.get("MOSU_CONFIG")
    return Path(explicit) if explicit else Path.home() / ".mosu" / "client.json"


def load() -> ClientConfig:
    saved: dict[str, str] = {}
    path = config_path()
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{path}: unreadable client config ({exc})") from None
    url = os.environ.get("MOSU_URL") or saved.get("url") or DEFAULT_URL
    token = os.environ.get("MOSU_TOKEN")
    source = "MOSU_TOKEN"
    if not token:
        token, source = saved.get("token"), str(path)
    return ClientConfig(url=url, token=token or None, token_source=source if token else "")


def save(url: str, token: str) -> Path:
    """Write the config readable by its owner only from the first byte: the directory is
    created 0700 and the file 0600 (never chmod-ed after the token is in it)."""
    path = config_path()
    missing = []
    probe = path.parent
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps({"url": url, "token": token}, indent=2) + "\n")
    tmp.replace(path)
    return path


def client() -> Client:
    cfg = load()
    return Client(cfg.url, cfg.token)
