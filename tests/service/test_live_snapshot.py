"""The scheduler's kept state (``LiveSnapshot``) against a full read of the store: after
any sequence of changes made through the API and the scheduling loop, including polls
it skips and change rows pruned before it read them, the two give the engine the same
input; and the change log never loses a change committed out of id order."""

from __future__ import annotations

import contextlib
import importlib
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, select, text
from sqlalchemy.engine import make_url

from mosu.core.api import ACTIVE_STATES, CheckpointReport, JobExit, JobState
from mosu.core.executor import NodeReport
from mosu.engine.estimates import StartEstimates
from mosu.service.app import create_app
from mosu.service.db.change_log import ChangeLog
from mosu.service.db.convert import engine_node
from mosu.service.db.rows import ChangeRow, JobRow, NodeRow, TenantRow
from mosu.service.platform import Platform
from mosu.service.services.live_snapshot import LiveSnapshot, describe_difference
from mosu.service.services.nodes import sync_cluster_nodes
from mosu.service.services.scheduling import Wait, load_snapshot, store_checkpoints
from tests.service.conftest import (
    BACKENDS,
    OPERATOR_TOKEN,
    FakeExecutor,
    TestClient,
    bearer,
    fresh_schema,
    open_platform,
)

ESTIMATES = StartEstimates(stop_grace_s=0.1)
KINDS = (
    "submit",
    "submit",
    "submit",
    "submit",
    "submit",
    "cycle",
    "cycle",
    "cycle",
    "exit",
    "lost",
    "cancel",
    "drain",
    "undrain",
    "node-add",
    "node-down",
    "quota",
    "tenant-add",
    "checkpoint",
    "skip",
    "prune",
)
STEPS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 7), st.integers(0, 7)),
    min_size=3,
    max_size=20,
)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A factory of fresh store URLs of one backend (one per Hypothesis example)."""
    if request.param == "sqlite":

        @contextlib.contextmanager
        def sqlite() -> Iterator[str]:
            yield f"sqlite:///{tmp_path / uuid.uuid4().hex}.db"

        yield sqlite
        return
    database = request.getfixturevalue("postgres_database")
    yield lambda: fresh_schema(database)


@contextlib.contextmanager
def running_platform(url: str, data: Path) -> Iterator[tuple[Platform, TestClient, FakeExecutor]]:
    executor = FakeExecutor()
    platform = open_platform(data, url, executor, grace_s=0.1, min_runtime_s=0)
    try:
        with TestClient(create_app(platform), raise_server_exceptions=True) as api:
            api.headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
            yield platform, api, executor
    finally:
        platform.close()


def assert_same(platform: Platform, live: LiveSnapshot) -> None:
    now = time.time()
    with platform.sessions() as s:
        kept = live.load(s, now=now, estimates=ESTIMATES)
    with platform.sessions() as s:
        full = load_snapshot(s, now=now, use_history=live.use_history, estimates=ESTIMATES)
    assert describe_difference(kept, full) == ""


class World:
    """The changes a step makes, through the API and the loop as a server makes them."""

    def __init__(self, platform: Platform, api: TestClient, executor: FakeExecutor) -> None:
        self.platform, self.api, self.executor = platform, api, executor
        self.tokens: dict[str, str] = {}
        self.nodes = 0
        self.add_node(2)  # a small cluster: jobs wait, and cycles write why
        self.add_node(2)
        self.add_tenant(4)
        self.add_tenant(2)

    def add_node(self, gpus: int) -> None:
        name = f"n{self.nodes}"
        self.nodes += 1
        r = self.api.post("/v1/nodes", json={"name": name, "gpu_type": "H800", "gpus": gpus})
        assert r.status_code == 201, r.text

    def add_tenant(self, guaranteed: int) -> None:
        name = f"t{len(self.tokens)}"
        quotas = {"H800": {"guaranteed": guaranteed, "limit": 12}}
        r = self.api.post("/v1/tenants", json={"name": name, "quotas": quotas})
        assert r.status_code == 201, r.text
        self.tokens[name] = r.json()["token"]

    def ids(self, *states: str) -> list[int]:
        with self.platform.sessions() as s:
            return list(
                s.scalars(select(JobRow.id).where(JobRow.state.in_(states)).order_by(JobRow.id))
            )

    def node_names(self) -> list[str]:
        with self.platform.sessions() as s:
            return list(s.scalars(select(NodeRow.name).order_by(NodeRow.name)))

    def step(self, kind: str, a: int, b: int) -> None:
        loop = self.platform.loop
        active = [str(x) for x in ACTIVE_STATES]
        if kind == "submit":
            tenant = sorted(self.tokens)[a % len(self.tokens)]
            spec: dict[str, object] = {
                "name": "j",
                "command": ["true"],
                "gpus": (1, 2, 1, 0.5, 2)[b % 5],
            }
            if a % 2:
                spec["estimate"] = f"{60 * (b + 1)}s"
            r = self.api.post("/v1/jobs", json=spec, headers=bearer(self.tokens[tenant]))
            # Refused when no node left up could ever hold it.
            assert r.status_code == 201 or "capacity" in r.text.lower(), r.text
        elif kind == "cycle":
            loop.cycle()
        elif kind in ("exit", "lost"):
            ids = [j for j in self.ids(*active) if j in self.executor.launched]
            if ids:
                job_id = ids[a % len(ids)]
                attempt = self.executor.launched[job_id].attempt
                code = None if kind == "lost" else (0 if b % 3 else 1)
                self.executor.exits.append(
                    JobExit(job_id=job_id, attempt=attempt, exit_code=code, lost=kind == "lost")
                )
                loop.handle_exits()
        elif kind == "cancel":
            ids = self.ids(JobState.PENDING.value, *active)
            if ids:
                r = self.api.post(f"/v1/jobs/{ids[a % len(ids)]}/cancel")
                assert r.status_code == 200, r.text
                loop.signal_stops()
        elif kind in ("drain", "undrain"):
            names = self.node_names()
            name = names[a % len(names)]
            query = "?stop_jobs=true" if kind == "drain" and b % 2 else ""
            r = self.api.post(f"/v1/nodes/{name}/{kind}{query}")
            assert r.status_code == 200, r.text
            loop.signal_stops()
        elif kind == "node-add":
            self.add_node((2, 4)[b % 2])
        elif kind == "node-down":
            with self.platform.tx() as s:
                rows = list(s.scalars(select(NodeRow).order_by(NodeRow.name)))
                gone = rows[a % len(rows)].name
                found = [NodeReport(node=engine_node(r)) for r in rows if r.name != gone]
                sync_cluster_nodes(s, found)
            loop.signal_stops()
        elif kind == "quota":
            tenant = sorted(self.tokens)[a % len(self.tokens)]
            quotas = {"H800": {"guaranteed": b, "limit": b + 4}}
            r = self.api.put(f"/v1/tenants/{tenant}/quotas", json={"quotas": quotas})
            assert r.status_code == 200, r.text
        elif kind == "tenant-add":
            self.add_tenant(b)
        elif kind == "checkpoint":
            ids = [j for j in self.ids(*active) if j in self.executor.launched]
            if ids:
                job_id = ids[a % len(ids)]
                attempt = self.executor.launched[job_id].attempt
                now = time.time()
                # Before its start (ignored), just now, or from the future (clamped).
                report = CheckpointReport(attempt=attempt, at=now + (b % 3) - 1)
                with self.platform.tx() as s:
                    store_checkpoints(s, {job_id: report}, now=now)
        # "skip" and "prune" change nothing themselves.


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_the_kept_state_equals_a_full_read_after_any_changes(store, tmp_path: Path, steps):
    with store() as url, running_platform(url, tmp_path / uuid.uuid4().hex) as (p, api, ex):
        world = World(p, api, ex)
        reader = LiveSnapshot(use_history=True)
        _told_as_the_loop_is(p, reader)
        assert_same(p, reader)
        expected_full_loads = 1
        for kind, a, b in steps:
            world.step(kind, a, b)
            if kind == "skip":
                continue  # a missed wakeup: the changes wait for the next read
            if kind == "prune":
                # The scheduler's own state reads and prunes what it consumed; a reader
                # that skipped reads finds changes it had not read gone, and must read
                # everything (and only then).
                with p.sessions() as s:
                    p.loop.live.load(s, now=time.time(), estimates=ESTIMATES)
                p.loop.live.prune(p.sessions)
                if _pruned_unread(p, reader):
                    expected_full_loads += 1
            assert_same(p, reader)
            assert reader.full_loads == expected_full_loads, "a gap read everything, only then"
        assert_same(p, p.loop.live)
        assert p.loop.live.diverged == reader.diverged == 0


def _told_as_the_loop_is(platform: Platform, reader: LiveSnapshot) -> None:
    """Hand ``reader`` the reasons each cycle writes, as the loop hands its own state
    (the change log leaves them out)."""
    kept = platform.loop.live
    own = kept.note_reasons

    def both(written: Iterable[tuple[int, Wait]]) -> None:
        written = list(written)
        own(written)
        reader.note_reasons(written)

    kept.note_reasons = both  # type: ignore[method-assign]


def _pruned_unread(platform: Platform, reader: LiveSnapshot) -> bool:
    """Whether the prune removed changes the reader had not read yet."""
    position = reader._position
    assert position is not None
    with platform.sessions() as s:
        pruned = s.scalar(text("SELECT value FROM meta WHERE name = 'change_log_pruned'"))
    if pruned is None:
        return False
    if platform.engine.dialect.name == "postgresql":
        return int(pruned) > position.floor
    return int(pruned) > position.last_id


def test_a_hole_in_the_log_or_missing_triggers_read_everything(db_url: str, tmp_path: Path):
    with running_platform(db_url, tmp_path / "data") as (p, api, ex):
        world = World(p, api, ex)
        reader = LiveSnapshot()
        assert_same(p, reader)
        assert reader.full_loads == 1
        world.step("submit", 0, 0)
        world.step("submit", 1, 1)
        world.step("quota", 0, 3)
        assert_same(p, reader)
        assert (reader.full_loads, reader.last_changes) == (1, 3)
        if p.engine.dialect.name == "sqlite":
            # A change row gone from the middle: a write the reader can no longer see.
            world.step("submit", 0, 2)
            world.step("submit", 1, 2)
            with p.tx() as s:
                middle = s.scalar(
                    select(ChangeRow.id).order_by(ChangeRow.id.desc()).offset(1).limit(1)
                )
                s.execute(delete(ChangeRow).where(ChangeRow.id == middle))
            assert_same(p, reader)
            assert reader.full_loads == 2
        # A store whose triggers are gone (a table rebuilt without them) is not trusted:
        # every read is a full one, and still right.
        with p.tx() as s:
            if p.engine.dialect.name == "sqlite":
                s.execute(text("DROP TRIGGER change_log_quotas_update"))
            else:
                s.execute(text("ALTER TABLE quotas DISABLE TRIGGER change_log_quotas"))
        untrusting = LiveSnapshot()
        assert_same(p, untrusting)
        world.step("quota", 0, 5)
        assert_same(p, untrusting)
        assert untrusting.trusted is False and untrusting.full_loads == 2


@pytest.mark.postgres
def test_a_change_committed_before_an_earlier_id_is_still_read(request, tmp_path: Path):
    """PostgreSQL hands out ids at insert, not at commit: here the later id commits
    first, the reader reads, then the earlier id commits. It is read all the same."""
    url = request.getfixturevalue("postgres_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        with running_platform(scoped.render_as_string(hide_password=False), tmp_path) as (
            p,
            api,
            ex,
        ):
            World(p, api, ex)
            reader = LiveSnapshot()
            assert_same(p, reader)
            early, late = p.sessions(), p.sessions()
            newest = select(ChangeRow.id).order_by(ChangeRow.id.desc()).limit(1)
            try:
                early.add(TenantRow(name="early", weight=1.0, created_at=0.0))
                early.flush()
                early_id = early.scalar(newest)
                late.add(TenantRow(name="late", weight=1.0, created_at=0.0))
                late.flush()
                late_id = late.scalar(newest)
                assert early_id is not None and late_id is not None and early_id < late_id
                late.commit()
                assert_same(p, reader)  # sees "late", not "early"
                assert "late" in reader._tenants and "early" not in reader._tenants
                early.commit()
            finally:
                early.close()
                late.close()
            assert_same(p, reader)
            assert "early" in reader._tenants
            assert reader.full_loads == 1, "read as a change, not found by reading everything"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def test_a_new_leader_reads_everything_and_prunes_what_it_consumed(
    api: TestClient, platform: Platform, executor: FakeExecutor
):
    world = World(platform, api, executor)
    loop = platform.loop
    loop.cycle()
    first = loop.live.full_loads
    world.step("submit", 0, 0)
    loop.cycle()
    assert loop.live.full_loads == first, "a change is applied, not read with everything"
    loop.live.reset()  # what taking the lease does
    loop.cycle()
    assert loop.live.full_loads == first + 1
    log = ChangeLog(platform.engine.dialect.name)
    with platform.sessions() as s:
        before = log.size(s)
    assert before > 0
    loop.prune_changes()
    with platform.sessions() as s:
        # On PostgreSQL what is consumed is bounded by the oldest transaction running
        # anywhere on the server: another one open then (not this test's) holds it back.
        assert log.size(s) < before or _others_in_transaction(s)
    assert_same(platform, loop.live)


def _others_in_transaction(session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return False
    others = session.scalar(
        text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() "
            "AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)"
        )
    )
    return bool(others)


def test_the_reasons_a_cycle_writes_reach_the_kept_state(db_url: str, tmp_path: Path):
    """Why jobs wait is left out of the change log (the scheduler's own advice, written
    every cycle); the loop hands its state what it wrote."""
    with running_platform(db_url, tmp_path / "data") as (p, api, ex):
        world = World(p, api, ex)
        reader = LiveSnapshot(use_history=True)
        _told_as_the_loop_is(p, reader)
        for a in range(4):
            world.step("submit", a, 1)  # 4 x 2 GPUs on 4 GPUs: two wait
        assert_same(p, reader)
        assert_same(p, p.loop.live)
        world.step("cycle", 0, 0)
        with p.sessions() as s:
            waiting = s.scalars(select(JobRow.pending_reason).where(JobRow.state == "pending"))
            assert [r for r in waiting if r is not None], "the cycle wrote why jobs wait"
        assert_same(p, reader)
        assert_same(p, p.loop.live)
        assert reader.full_loads == 1


def test_every_job_column_but_the_advice_is_watched():
    """A column added to jobs must be added to the log's trigger too, or the kept state
    misses its updates (the scheduler writes only the advice without logging it)."""
    migration = importlib.import_module("mosu.service.db.migrations.versions.0015_change_log")
    columns = {c.name for c in JobRow.__table__.columns}
    assert set(migration.JOB_COLUMNS) == columns - set(migration.JOB_ADVICE)
