"""The service controller on an injected clock, with the engine and a store (SQLite and
PostgreSQL) but no processes: replicas submitted as jobs, readiness, a crash replaced,
autoscaling after its delays (on in-flight load and on a replica metric), drains."""

from __future__ import annotations

import time

from sqlalchemy import select

from mosu.core.api import JobState
from mosu.service.db.gateway_rows import ModelServiceRow, ServiceReplicaRow
from mosu.service.db.rows import JobRow
from mosu.service.platform import Platform
from mosu.service.service_controller import ServiceController
from tests.service.conftest import (  # noqa: F401 - fixtures
    FakeExecutor,
    api,
    bearer,
    db_url,
    executor,
    platform,
    postgres_database,
    seed,
)

SPEC = {
    "kind": "service",
    "name": "svc",
    "model": "a-model",
    "command": ["serve"],
    "gpus": 1,
    "replicas": {"min": 1, "max": 3},
    "scaling": {"target_inflight": 2, "up_delay": 5, "down_delay": 10},
    "readiness": {"path": "/ready", "timeout": 30},
    "drain_grace": 20,
}


class World:
    def __init__(self, opened: Platform, runner: FakeExecutor) -> None:
        self.platform, self.executor = opened, runner
        self.t0 = time.time()
        self.now = self.t0
        self.ready_urls: set[str] = set()
        self.metric = 0.0
        self.probed: list[str] = []
        self.controller = ServiceController(
            opened.sessions,
            clock=lambda: self.now,
            probe_fn=self._probe,
            scrape_fn=lambda url, name: self.metric,
        )

    def _probe(self, url: str) -> bool:
        self.probed.append(url)
        return any(url.startswith(u) for u in self.ready_urls) or "*" in self.ready_urls

    def at(self, offset: float, load: int | None = None, on_replicas: int = 0) -> None:
        """Move the clock; the gateway's load report (if given) is dated now."""
        self.now = self.t0 + offset
        if load is not None:
            self.report(load, on_replicas)
        self.platform.loop.run_once()
        self.controller.step()

    def report(self, inflight: int, replica_inflight: int = 0) -> None:
        with self.platform.tx() as s:
            service = s.scalars(select(ModelServiceRow)).one()
            service.inflight, service.load_at = inflight, self.now
            for r in s.scalars(select(ServiceReplicaRow)):
                r.inflight = replica_inflight

    def replicas(self) -> list[tuple[int, str, str]]:
        with self.platform.tx() as s:
            rows = s.execute(
                select(ServiceReplicaRow.job_id, ServiceReplicaRow.state, JobRow.state)
                .join(JobRow, JobRow.id == ServiceReplicaRow.job_id)
                .order_by(ServiceReplicaRow.id)
            ).all()
        return [tuple(r) for r in rows]

    def desired(self) -> int:
        with self.platform.tx() as s:
            return s.scalars(select(ModelServiceRow.desired)).one()


def test_replicas_follow_spec_load_and_crashes(api, platform, executor) -> None:  # noqa: F811
    tokens = seed(api)
    created = api.post("/v1/services", json=SPEC, headers=bearer(tokens["a"]))
    assert created.status_code == 201, created.text
    w = World(platform, executor)

    w.at(0)  # one replica submitted as a job, then placed by the engine
    w.at(0.5)
    [(job1, state, job_state)] = w.replicas()
    assert (state, job_state) == ("starting", "running")
    assert executor.launched[job1].env["PORT"].isdigit()
    w.ready_urls.add("*")
    w.at(1)
    assert w.replicas() == [(job1, "ready", "running")]
    assert w.probed[-1].endswith("/ready")

    w.at(1.5, 6)  # 6 in flight, 2 per replica wanted: 3 replicas, after the 5 s up delay
    w.at(2)
    assert w.desired() == 1
    w.at(7.5, 6)
    assert w.desired() == 3
    w.at(8)
    assert [s for _, s, _ in w.replicas()] == ["ready", "ready", "ready"]

    executor.exit(job1, 1)  # a crash: replaced at once
    w.at(9)
    w.at(9.5)
    rows = w.replicas()
    assert rows[0] == (job1, "gone", "failed")
    assert len([r for r in rows if r[1] != "gone"]) == 3

    # Idle for the 10 s down delay: back to the minimum; surplus replicas drain first.
    w.at(10, 0, 3)
    w.at(20.5, 0, 3)
    assert w.desired() == 1
    states = [s for _, s, _ in w.replicas()[1:]]
    assert sorted(states) == ["draining", "draining", "ready"]
    # Still 3 requests open on the draining replicas: they keep running...
    w.at(21, 0, 3)
    assert sorted(s for _, s, _ in w.replicas()[1:]) == ["draining", "draining", "ready"]
    # ...until the gateway reports them idle, then they are cancelled.
    w.at(21.5, 0, 0)
    w.at(22)
    rows = w.replicas()[1:]
    assert sorted(s for _, s, _ in rows) == ["gone", "gone", "ready"]
    stopped = [j for j, s, _ in rows if s == "gone"]
    assert sorted(executor.stopped) == sorted(stopped)


def test_scaling_on_a_replica_metric_and_a_readiness_timeout(api, platform, executor) -> None:  # noqa: F811
    tokens = seed(api)
    spec = {
        **SPEC,
        "scaling": {
            "target_inflight": 100,
            "metric": "vllm:num_requests_waiting",
            "metric_target": 4,
            "up_delay": 0,
            "down_delay": 0,
        },
    }
    assert api.post("/v1/services", json=spec, headers=bearer(tokens["a"])).status_code == 201
    w = World(platform, executor)
    w.ready_urls.add("*")
    w.at(0)
    w.at(0.5)
    w.at(1)
    assert [s for _, s, _ in w.replicas()] == ["ready"]
    w.metric = 9.0  # 9 waiting at 4 per replica: 3 replicas
    w.at(2, 1)  # the scrape happens after the decision of this step
    w.at(3)
    assert w.desired() == 3
    # A replica that never answers its readiness path is replaced after the timeout.
    w.ready_urls.clear()
    w.at(3.5)
    w.at(4)
    starting = [j for j, s, js in w.replicas() if s == "starting" and js == JobState.RUNNING]
    assert len(starting) == 2
    w.at(40)
    w.at(40.5)  # the scheduling loop signals the stops it was asked for
    rows = {j: s for j, s, _ in w.replicas()}
    assert all(rows[j] == "gone" for j in starting)
    assert sorted(executor.stopped) == sorted(starting)


def test_a_request_that_gave_up_waiting_still_starts_a_replica(api, platform, executor) -> None:  # noqa: F811
    # The wait ends (503) before the gateway's next load report or the controller's
    # next step: the request that found no replica must still scale the service up
    # from zero, and stop counting once the hold is over.
    import asyncio

    import pytest

    from mosu.gateway.proxy import GAVE_UP_HOLD_S, Gateway, OpenAIError

    tokens = seed(api)
    spec = {**SPEC, "replicas": {"min": 0, "max": 2}}
    created = api.post("/v1/services", json=spec, headers=bearer(tokens["a"]))
    assert created.status_code == 201, created.text
    w = World(platform, executor)
    gateway = Gateway(platform.sessions, clock=lambda: w.now)

    async def give_up_then_report() -> None:
        await gateway.refresh()  # the route table
        [route] = gateway.table.routes.values()
        with pytest.raises(OpenAIError) as refused:
            await gateway._wait_for_replicas(route.service_id, deadline=time.monotonic() - 1)
        assert refused.value.status == 503
        await gateway.refresh()

    w.at(0)
    assert w.desired() == 0
    w.now = w.t0 + 1
    asyncio.run(give_up_then_report())
    with platform.tx() as s:
        service = s.scalars(select(ModelServiceRow)).one()
        assert (service.inflight, service.waiting, service.load_at) == (1, 1, w.now)
    w.at(3)  # the controller's step, after the request has gone
    assert w.desired() == 1

    w.now = w.t0 + 1 + GAVE_UP_HOLD_S
    asyncio.run(gateway.refresh())
    with platform.tx() as s:
        assert s.scalars(select(ModelServiceRow.inflight)).one() == 0
