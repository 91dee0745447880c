"""``ServiceController``: keeps each model service's replicas as its spec and its load ask.

Every step: replicas whose job ended are gone (a crash is replaced like any missing
replica); a replica whose job is not running, or is being stopped, leaves routing; a
started one joins routing once its readiness path answers 200 (or is replaced after the
readiness timeout); the autoscaler sets the desired count from the load the gateway
reports; missing replicas are submitted as one-replica jobs (scheduled by the engine like
any job: within the tenant's guarantee or borrowed and reclaimable); surplus ones are
drained (out of routing first, stopped once the gateway has no request open on them or
after the drain grace). Probes run outside transactions; the clock is injected."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mosu.core.api import JobState
from mosu.service.autoscale import ScalingMemory, ScalingRule, decide, gauge_value
from mosu.service.db.gateway_rows import ModelServiceRow, ServiceReplicaRow
from mosu.service.db.rows import JobRow
from mosu.service.services import jobs
from mosu.service.services.auth import OPERATOR
from mosu.service.services.model_services import LIVE_REPLICA_STATES, replica_job

log = logging.getLogger("mosu.services")
FINISHED = (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELLED.value)
GATEWAY_FRESH_S = 5.0
"""A gateway that has not reported load for this long is taken to have no request open."""


def pick_port(taken: set[int]) -> int:
    """A port free on this host now (the replica binds it moments later)."""
    for _ in range(64):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port
    raise RuntimeError("no free port found")


def probe(url: str, timeout_s: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def scrape(url: str, metric: str, timeout_s: float = 1.0) -> float | None:
    try:
        reply = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError:
        return None
    return gauge_value(reply.text, metric) if reply.status_code == 200 else None


@dataclass(slots=True)
class _Check:
    replica_id: int
    url: str


class ServiceController:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        wake_scheduler: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        probe_fn: Callable[[str], bool] = probe,
        scrape_fn: Callable[[str, str], float | None] = scrape,
        tick_s: float = 0.25,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.sessions = sessions
        self.leading = leading
        """Whether this server holds the scheduler lease: only the leader's controller
        acts, or two servers on one store would each submit the missing replicas."""
        self.wake_scheduler = wake_scheduler
        self.clock = clock
        self.probe = probe_fn
        self.scrape = scrape_fn
        self.tick_s = tick_s
        self.memory: dict[int, ScalingMemory] = {}
        self.metrics: dict[int, float] = {}
        """Each service's replica metric summed over ready replicas, as last scraped."""
        self.on_decision: Callable[[str, int, int, float], None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mosu-services", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            if not self.leading():
                continue
            try:
                self.step()
            except Exception:  # a bad step must not end serving; the next one retries
                log.exception("service controller step failed")

    def step(self) -> None:
        checks, scrapes = self.reconcile()
        ready = [c.replica_id for c in checks if self.probe(c.url)]
        if ready:
            now = self.clock()
            with self.sessions.begin() as s:
                for replica in s.scalars(
                    select(ServiceReplicaRow).where(ServiceReplicaRow.id.in_(ready))
                ):
                    if replica.state == "starting":
                        replica.state, replica.ready_at = "ready", now
        for service_id, (metric, urls) in scrapes.items():
            values = [v for v in (self.scrape(u, metric) for u in urls) if v is not None]
            self.metrics[service_id] = sum(values)

    def reconcile(self) -> tuple[list[_Check], dict[int, tuple[str, list[str]]]]:
        """One pass in one transaction; returns the readiness checks and metric scrapes
        to make outside it."""
        now = self.clock()
        checks: list[_Check] = []
        scrapes: dict[int, tuple[str, list[str]]] = {}
        submitted = False
        with self.sessions.begin() as s:
            services = s.scalars(select(ModelServiceRow).order_by(ModelServiceRow.id)).all()
            rows = s.execute(
                select(ServiceReplicaRow, JobRow)
                .join(JobRow, JobRow.id == ServiceReplicaRow.job_id)
                .where(ServiceReplicaRow.state.in_(LIVE_REPLICA_STATES))
            ).all()
            by_service: dict[int, list[tuple[ServiceReplicaRow, JobRow]]] = {}
            for replica, job in rows:
                by_service.setdefault(replica.service_id, []).append((replica, job))
            taken = {r.port for r, _ in rows}
            for service in services:
                live = by_service.get(service.id, [])
                if service.deleted_at is not None and not live:
                    continue
                submitted |= self._service(s, service, live, now, checks, scrapes, taken)
        if submitted:
            self.wake_scheduler()
        return checks, scrapes

    def _service(
        self,
        s: Session,
        service: ModelServiceRow,
        live: list[tuple[ServiceReplicaRow, JobRow]],
        now: float,
        checks: list[_Check],
        scrapes: dict[int, tuple[str, list[str]]],
        taken: set[int],
    ) -> bool:
        spec = service.spec
        readiness = spec.get("readiness") or {}
        path = readiness.get("path", "/health")
        timeout_s = float(readiness.get("timeout", 600))
        grace_s = float(spec.get("drain_grace", 30))
        current: list[tuple[ServiceReplicaRow, JobRow]] = []
        for replica, job in live:
            if job.state in FINISHED:
                if replica.state != "draining":
                    log.info(
                        "service %s: replica job %s ended (%s)", service.name, job.id, job.state
                    )
                replica.state = "gone"
                continue
            serving = job.state == JobState.RUNNING.value and job.stop_reason is None
            if replica.state == "ready" and not serving:
                replica.state = "starting"  # out of routing until it is checked again
            if replica.state == "starting" and serving:
                started = job.started_at or now
                if now - started > timeout_s:
                    log.info("service %s: replica job %s never got ready", service.name, job.id)
                    self._stop_job(s, replica, job)
                    continue
                checks.append(_Check(replica.id, f"http://{replica.host}:{replica.port}{path}"))
            current.append((replica, job))
        gateway_fresh = service.load_at is not None and now - service.load_at < GATEWAY_FRESH_S
        if service.deleted_at is None:
            scaling = spec.get("scaling") or {}
            rule = ScalingRule(
                min_replicas=service.min_replicas,
                max_replicas=service.max_replicas,
                target_inflight=float(scaling.get("target_inflight", 4)),
                up_delay_s=float(scaling.get("up_delay", 10)),
                down_delay_s=float(scaling.get("down_delay", 120)),
                metric_target=scaling.get("metric_target"),
            )
            metric_name = scaling.get("metric")
            if metric_name:
                urls = [
                    f"http://{r.host}:{r.port}/metrics" for r, _ in current if r.state == "ready"
                ]
                scrapes[service.id] = (metric_name, urls)
            memory = self.memory.setdefault(service.id, ScalingMemory())
            before = service.desired
            service.desired = decide(
                rule,
                memory,
                desired=service.desired,
                inflight=service.inflight if gateway_fresh else 0,
                metric=self.metrics.get(service.id) if metric_name else None,
                now=now,
            )
            if service.desired != before:
                service.scaled_at = now
                log.info("service %s: %d -> %d replicas", service.name, before, service.desired)
                if self.on_decision is not None:
                    self.on_decision(service.name, before, service.desired, now)
        active = [(r, j) for r, j in current if r.state in ("starting", "ready")]
        submitted = False
        if len(active) < service.desired:
            count = s.scalar(
                select(ServiceReplicaRow.id)
                .where(ServiceReplicaRow.service_id == service.id)
                .order_by(ServiceReplicaRow.id.desc())
                .limit(1)
            )
            index = (count or 0) + 1
            for _ in range(service.desired - len(active)):
                port = pick_port(taken)
                taken.add(port)
                job = jobs.insert_job(s, job=replica_job(spec, index, port), tenant=service.tenant)
                s.add(
                    ServiceReplicaRow(
                        service_id=service.id,
                        job_id=job.id,
                        host="127.0.0.1",
                        port=port,
                        state="starting",
                        created_at=now,
                        inflight=0,
                    )
                )
                index += 1
                submitted = True
        elif len(active) > service.desired:
            # Surplus: replicas not serving yet go first (nothing to drain), then the newest.
            surplus = sorted(active, key=lambda rj: (rj[0].state == "ready", -rj[0].created_at))[
                : len(active) - service.desired
            ]
            for replica, job in surplus:
                if replica.state == "starting":
                    self._stop_job(s, replica, job)
                else:
                    replica.state, replica.drain_at = "draining", now
        for replica, job in current:
            if replica.state != "draining" or replica.drain_at is None:
                continue
            # The gateway must have seen the drain (a report after it) and have nothing
            # open on the replica; without a gateway there is nothing to wait for.
            seen_idle = (
                service.load_at is not None
                and service.load_at > replica.drain_at
                and replica.inflight == 0
            )
            if seen_idle or not gateway_fresh or now - replica.drain_at >= grace_s:
                self._stop_job(s, replica, job)
        return submitted

    @staticmethod
    def _stop_job(s: Session, replica: ServiceReplicaRow, job: JobRow) -> None:
        replica.state = "gone"
        if job.state not in FINISHED:
            jobs.cancel(s, principal=OPERATOR, job_id=job.id)
