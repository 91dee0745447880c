"""Service fixtures: a platform on SQLite (always) and PostgreSQL (when
``MOSU_TEST_POSTGRES_URL`` is set; each test gets a fresh database, dropped after)."""

from __future__ import annotations

import contextlib
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mosu.core.api import JobExit, JobLaunch
from mosu.core.executor import Adoption, AttemptRecord, Capability, ReplicaStarted
from mosu.service.app import create_app
from mosu.service.platform import Platform
from mosu.service.settings import Settings
from tests.pg import fresh_postgres_database, postgres_url

with warnings.catch_warnings():
    # starlette warns at import that its test client will move to another package.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

OPERATOR_TOKEN = "mosu_op_test-operator-token"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class FakeExecutor:
    """Runs nothing: records launches, stops and adoptions; tests decide when jobs exit."""

    sandbox = "none"
    capabilities: frozenset[Capability] = frozenset()

    def __init__(self) -> None:
        self.launched: dict[int, JobLaunch] = {}
        self.stopped: list[int] = []
        self.exits: list[JobExit] = []
        self.adopted: list[AttemptRecord] = []
        self.lost_on_adopt: set[int] = set()
        """Jobs whose supervisors a new server finds gone without an exit record."""
        self.detached = 0
        self.fail_start = False
        self._pid = 1000

    def start(self, launch: JobLaunch) -> dict[int, ReplicaStarted]:
        if self.fail_start:
            raise OSError("no such file: nonexistent")
        self.launched[launch.job_id] = launch
        started = {}
        for r in launch.replicas:
            self._pid += 1
            started[r.replica] = ReplicaStarted(pid=self._pid, supervisor=f"fake-{self._pid}")
        return started

    def exit(self, job_id: int, code: int | None = 0, *, attempt: int | None = None) -> None:
        if attempt is None:
            attempt = self.launched[job_id].attempt
        self.exits.append(JobExit(job_id=job_id, attempt=attempt, exit_code=code))

    def poll(self) -> list[JobExit]:
        out, self.exits = self.exits, []
        return out

    def stop(self, job_id: int, grace_s: float) -> None:
        self.stopped.append(job_id)

    def adopt(self, attempts: Sequence[AttemptRecord]) -> Adoption:
        self.adopted.extend(attempts)
        found = Adoption(running={}, unstarted=[])
        for a in attempts:
            if a.job_id in self.lost_on_adopt:
                self.exits.append(
                    JobExit(job_id=a.job_id, attempt=a.attempt, exit_code=None, lost=True)
                )
            elif all(r.supervisor is None for r in a.replicas):
                found.unstarted.append(a.job_id)
            else:
                found.running[a.job_id] = {
                    r.replica: ReplicaStarted(pid=r.pid or 0, supervisor=r.supervisor or "")
                    for r in a.replicas
                }
        return found

    def detach(self) -> None:
        self.detached += 1

    def shutdown(self, grace_s: float) -> None:
        pass


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """One fresh database for the whole run, dropped at the end."""
    with fresh_postgres_database(postgres_url(), "mosu_test") as url:
        yield url


@contextlib.contextmanager
def fresh_schema(database: str) -> Iterator[str]:
    """A fresh schema inside ``database`` (its URL, the schema first on the search
    path), dropped after."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(database).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _postgres_schema(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh schema per test inside the run's database, dropped after the test."""
    with fresh_schema(request.getfixturevalue("postgres_database")) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mosu.db'}"
    else:
        yield from _postgres_schema(request)


@pytest.fixture
def executor() -> FakeExecutor:
    return FakeExecutor()


def open_platform(
    data_dir: Path, database_url: str, executor: FakeExecutor, **settings: float
) -> Platform:
    """An opened platform on ``database_url`` with ``executor``; ``settings`` as in Settings."""
    p = Platform(
        Settings(
            data_dir=data_dir,
            database_url=database_url,
            operator_token=OPERATOR_TOKEN,
            **settings,
        ),
        executor,
    )
    p.open()
    return p


@pytest.fixture
def platform(db_url: str, tmp_path: Path, executor: FakeExecutor) -> Iterator[Platform]:
    p = open_platform(tmp_path / "data", db_url, executor, grace_s=0.1, min_runtime_s=0)
    yield p
    p.close()


@pytest.fixture
def api(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform), raise_server_exceptions=True) as client:
        client.headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seed(api: TestClient, *, gpus: int = 8, gpu_type: str = "H800") -> dict[str, str]:
    """One node; tenant a guaranteed 4, tenant b guaranteed 4 with limit 8. Returns tokens."""
    r = api.post("/v1/nodes", json={"name": "n0", "gpu_type": gpu_type, "gpus": gpus})
    assert r.status_code == 201, r.text
    tokens = {}
    for name, quota in (("a", {"guaranteed": 4}), ("b", {"guaranteed": 4, "limit": 8})):
        r = api.post("/v1/tenants", json={"name": name, "quotas": {gpu_type: quota}})
        assert r.status_code == 201, r.text
        tokens[name] = r.json()["token"]
    return tokens


def submit(api: TestClient, token: str, **spec: object) -> dict:
    body = {"name": "j", "command": ["true"], **spec}
    r = api.post("/v1/jobs", json=body, headers=bearer(token))
    assert r.status_code == 201, r.text
    return r.json()
