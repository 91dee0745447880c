"""Everything one server process holds: the store, the token cache and, in the process
that schedules, the scheduler loop; ``scheduler`` is how the API reaches the loop,
in this process or in the scheduler process beside it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mosu.core.executor import Executor
from mosu.engine.profiles import SchedulingProfile, build_profile
from mosu.service.background import SchedulerLoop
from mosu.service.db.session import make_engine, session_factory, upgrade
from mosu.service.leader import lease_for_url
from mosu.service.private_files import private_dir
from mosu.service.scheduler_link import LocalScheduler, RemoteScheduler, SchedulerHandle
from mosu.service.secret_box import SecretBox
from mosu.service.service_controller import ServiceController
from mosu.service.services.auth import TokenCache, ensure_operator_token
from mosu.service.services.catalog import CatalogCache
from mosu.service.services.credits_alerts import WebhookSender
from mosu.service.services.secrets import SESSION_BOX, check_key
from mosu.service.settings import Settings
from mosu.service.wakeups import waker_for_url
from mosu.service.whatif_tasks import WhatIfTasks
from mosu.sim.whatif import Plan


def load_profile(
    name: str, *, min_runtime_s: float | None = None, placement: str | None = None
) -> SchedulingProfile:
    """The engine's named profile, with its placement and the minimum runtime before
    preemption overridden when the deployment asks (demos and tests use a short one)."""
    profile = build_profile(name, placement=placement)
    if min_runtime_s is not None:
        profile = dataclasses.replace(profile, min_runtime_s=min_runtime_s)
    return profile


class Platform:
    """With an ``executor``, this process runs the scheduling loop (``start_scheduler``);
    without one (an API process of a server whose scheduler runs in a process of its
    own), ``scheduler`` reads what that process publishes and wakes it by message."""

    def __init__(self, settings: Settings, executor: Executor | None) -> None:
        self.settings = settings
        self.engine = make_engine(settings.sqlalchemy_url)
        self.sessions = session_factory(self.engine)
        self.tokens = TokenCache()
        self.catalog = CatalogCache()
        self._loop: SchedulerLoop | None = None
        self._services: ServiceController | None = None
        self.scheduler: SchedulerHandle
        if executor is not None:
            loop = self._loop = SchedulerLoop(
                sessions=self.sessions,
                executor=executor,
                profile=load_profile(
                    settings.profile,
                    min_runtime_s=settings.min_runtime_s,
                    placement=settings.placement,
                ),
                logs_dir=settings.logs_dir,
                grace_s=settings.grace_s,
                tick_s=settings.tick_s,
                meter_s=settings.credits_meter_s,
                poll_s=settings.poll_s,
            )
            self._services = ServiceController(
                self.sessions, wake_scheduler=loop.wake, leading=lambda: loop.leading
            )
            self.scheduler = LocalScheduler(loop)
        else:
            self.scheduler = RemoteScheduler(self.sessions, waker_for_url(settings.sqlalchemy_url))
        self.whatif = WhatIfTasks(
            self.sessions,
            replan=self._replan_whatif,
            workers=settings.whatif_workers,
            max_queued=settings.whatif_max_queued,
            beat_s=settings.whatif_beat_s,
            stale_s=settings.whatif_stale_s,
        )
        self._scheduler_running = False
        self._secret_box: SecretBox | None = None
        self.webhook: WebhookSender | None = None
        if settings.credits_webhook_url and self._loop is not None:
            self.webhook = WebhookSender(
                settings.credits_webhook_url, settings.credits_webhook_secret or ""
            )
            self._loop.on_credit_alerts = self.webhook.send

    @property
    def schedules_here(self) -> bool:
        return self._loop is not None

    @property
    def loop(self) -> SchedulerLoop:
        """The scheduling loop of this process (only where it schedules)."""
        if self._loop is None:
            raise RuntimeError("this process does not schedule; use platform.scheduler")
        return self._loop

    @property
    def services(self) -> ServiceController:
        if self._services is None:
            raise RuntimeError("this process does not schedule")
        return self._services

    @property
    def secret_box(self) -> SecretBox:
        if self._secret_box is None:
            raise RuntimeError("the platform is not open")
        return self._secret_box

    def open(self) -> str | None:
        """Migrate the store and load (or create) the secrets key; return a newly created
        operator token (None if one existed)."""
        private_dir(self.settings.data_dir)
        private_dir(self.settings.logs_dir)
        upgrade(self.engine)
        key_path = self.settings.secrets_key_path
        box = SecretBox.from_file(key_path)
        for attempt in range(2):
            try:
                with self.sessions.begin() as s:
                    check_key(s, box, key_path=str(key_path))
                    token = ensure_operator_token(s, token=self.settings.operator_token)
                break
            except IntegrityError:
                # Servers starting at once with the same pinned token: one registered it.
                if attempt:
                    raise
        self._secret_box = box
        self.whatif.start()
        # Launches open secrets in a session of this factory (the scheduling loop's too).
        self.sessions.configure(info={SESSION_BOX: box})
        return token

    def _replan_whatif(self, request: dict[str, Any]) -> Plan:
        from mosu.service.services.whatif import replan

        with self.tx() as s:
            return replan(s, request)

    @contextmanager
    def tx(self) -> Iterator[Session]:
        with self.sessions.begin() as s:
            yield s

    def start_scheduler(self) -> None:
        # Several servers may share the store: only the lease holder schedules.
        self.loop.lease = lease_for_url(self.settings.sqlalchemy_url)
        self.loop.start()
        self.services.start()
        self._scheduler_running = True

    def close(self) -> None:
        self.whatif.shutdown()
        if isinstance(self.scheduler, RemoteScheduler):
            self.scheduler.close()
        if self._scheduler_running:
            self.services.stop()
            self.loop.stop()
            self._scheduler_running = False
        if self.webhook is not None:
            self.webhook.close()
        self.engine.dispose()
