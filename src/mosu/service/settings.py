"""Service settings, read from ``MOSU_*`` environment variables and built once in ``main``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MOSU_", extra="ignore")

    data_dir: Path = Field(default_factory=lambda: Path.home() / ".mosu")
    database_url: str | None = None
    """SQLAlchemy URL; empty means an SQLite file ``mosu.db`` under ``data_dir``."""
    host: str = "127.0.0.1"
    port: int = 8765
    profile: str = "mosu"
    placement: str | None = None
    """A placement from the policy registry instead of the profile's own."""
    tick_s: float = 2.0
    """Longest time between scheduling cycles when nothing wakes the loop."""
    credits_meter_s: float = 60.0
    """How often running replicas are charged (and at every stop)."""
    credits_webhook_url: str | None = None
    """Where credit threshold alerts are POSTed (signed with ``credits_webhook_secret``)."""
    credits_webhook_secret: str | None = None
    poll_s: float = 0.1
    """How often the loop polls the executor for exited processes."""
    grace_s: float = 30.0
    """Time a job gets between SIGTERM and SIGKILL on cancel or preemption."""
    min_runtime_s: float | None = None
    """Overrides the profile's shortest run before a job may be preempted."""
    operator_token: str | None = None
    """If set, this token is accepted for the operator (created on first start otherwise)."""
    secrets_key_file: Path | None = None
    """The key that encrypts tenants' secrets; default ``secrets.key`` in ``data_dir``
    (created on first start). Servers sharing one store must all name the same key."""
    executor: str = "local"
    """``local`` (processes on this machine), ``ray`` (replicas on a Ray cluster) or
    ``simulated`` (declared nodes, replicas that run no process)."""
    ray_address: str | None = None
    """``HOST:PORT`` of the Ray cluster's head (GCS) for the ``ray`` executor."""
    ray_log_dir: str = "/tmp/mosu/replica-logs"
    """Where replicas' output is written on each Ray node (copied to ``logs_dir``)."""
    sandbox: str = "auto"
    """How replicas run: ``users`` (a Unix user per tenant; needs root), ``bwrap`` (user
    and mount namespaces; not root), ``none`` (as the server's user: only by name), or
    ``auto`` (``users`` as root, else ``bwrap``, else refuse to start)."""
    home_root: Path | None = None
    """Where tenants' homes live (``/var/lib/mosu/homes`` in ``users`` mode, else
    ``data_dir/homes``)."""
    cgroup: str = "auto"
    """Which cgroup hierarchy tracks a replica's processes: ``auto``, ``v2``, ``v1`` or
    ``none`` (process tree and environment marker only)."""
    whatif_workers: int = 1
    """What-if replays run at once, each in a process of its own."""
    whatif_max_queued: int = 4
    """What-if replays that may wait for a worker; more are refused (503)."""
    whatif_beat_s: float = 5.0
    """How often a server marks its what-if tasks alive and looks for orphaned ones."""
    whatif_stale_s: float = 30.0
    """A what-if task whose server has been silent this long is taken over and rerun."""
    dashboard_history_s: float = 60.0
    """The dashboard re-reads the cluster's history (24 h and 7 d charts, quota
    attainment) at most this often; 0 reads it on every page."""

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'mosu.db'}"

    @property
    def secrets_key_path(self) -> Path:
        return self.secrets_key_file or self.data_dir / "secrets.key"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"
