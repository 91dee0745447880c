"""The fixed-shape inserts and key lookups of ``mosu.service.db.bulk`` store and find
exactly what the generic multi-row statements do, on every backend."""

from __future__ import annotations

import math
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert, select, table

from mosu.core.jobspec import job_spec_from_mapping
from mosu.core.submission import Submission
from mosu.service.db import bulk
from mosu.service.db.rows import EventRow, JobRow, SubmissionKeyRow, TenantRow
from mosu.service.platform import Platform
from mosu.service.services import jobs

SPECS: list[dict[str, Any]] = [
    {"name": "plain", "command": ["true"], "gpus": 1},
    {
        "name": "odd-text",
        "command": 'echo "quoted" \\ back{slash} ,comma, é 中',
        "gpus": 0.25,
        "gpu_type": "H800",
        "env": {"A": "x,y", "B": "{1,2}", "C": "NULL"},
    },
    {
        "name": "checkpointed",
        "command": ["python", "train.py"],
        "gpus": 8,
        "replicas": 2,
        "priority": "high",
        "estimate": "2h",
        "max_runtime": "1d",
        "checkpoint_every": "30m",
        "checkpoint_signal": "SIGUSR1",
        "checkpoint_grace": "5m",
    },
]
SKIPPED = ("id", "submitted_at")


def _stored(platform: Platform, ids: list[int]) -> list[tuple[dict[str, Any], list[Any]]]:
    """Each job's columns (but its id and time) and its events' columns, by id."""
    with platform.sessions() as s:
        out = []
        for job_id in ids:
            row = s.get(JobRow, job_id)
            assert row is not None
            cols = {
                c.key: getattr(row, c.key) for c in JobRow.__table__.columns if c.key not in SKIPPED
            }
            events = [
                (e.tenant, e.kind, e.from_state, e.to_state, e.reason, e.message)
                for e in s.scalars(select(EventRow).where(EventRow.job_id == job_id))
            ]
            out.append((cols, events))
        return out


def _insert(platform: Platform, entries: list[tuple[Submission, str]]) -> list[int]:
    with platform.tx() as s:
        return [job.id for job in jobs.insert_jobs(s, entries)]


@pytest.fixture
def tenants(platform: Platform) -> list[str]:
    with platform.tx() as s:
        for name in ("a", "b"):
            s.add(TenantRow(name=name, created_at=0.0))
    return ["a", "b"]


@pytest.mark.parametrize("size", [1, 3, 40])
def test_a_batch_stores_what_the_generic_insert_stores(
    platform: Platform, tenants: list[str], monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    entries = [
        (Submission.of(job_spec_from_mapping({**SPECS[i % len(SPECS)], "name": f"j{i}"})), t)
        for i in range(size)
        for t in [tenants[i % 2]]
    ]
    fast = _insert(platform, entries)
    with monkeypatch.context() as m:
        m.setattr(bulk, "json_rows_apply", lambda _conn: False)
        generic = _insert(platform, entries)
    # Ids in the order given: each job answered is the job stored under that id.
    assert [c["name"] for c, _ in _stored(platform, fast)] == [f"j{i}" for i in range(size)]
    assert _stored(platform, fast) == _stored(platform, generic)
    assert all(c["version"] == 0 for c, _ in _stored(platform, fast))


def test_keys_are_found_by_their_pair_only(platform: Platform, tenants: list[str]) -> None:
    keys = cast(Table, SubmissionKeyRow.__table__)
    rows = [
        {"tenant": t, "key": k, "fingerprint": f"{t}{k}", "job_id": i, "created_at": 1.0}
        for i, (t, k) in enumerate([("a", "k1"), ("b", "k2"), ("a", "k,3"), ("b", "k1")])
    ]
    with platform.tx() as s:
        assert bulk.insert_rows(s.connection(), insert(keys), rows) == []
    wanted = [("a", "k2"), ("b", "k1"), ("a", "k,3"), ("a", "absent")]
    with platform.tx() as s:
        found = bulk.select_by_pairs(
            s.connection(), keys, ("tenant", "key"), wanted, ("tenant", "key", "job_id")
        )
    assert sorted(tuple(r) for r in found) == [("a", "k,3", 2), ("b", "k1", 3)]


def test_an_insert_of_columns_the_table_does_not_describe_takes_the_generic_path(
    platform: Platform, tenants: list[str]
) -> None:
    # A table known by name only: nothing to cast to, so the plain statement runs (and
    # here fails, since no such table exists), instead of an unnest of unknown types.
    with pytest.raises(Exception, match="no_such_table"), platform.tx() as s:
        bulk.insert_rows(s.connection(), insert(table("no_such_table")), [{"x": 1}])


def test_rows_json_cannot_carry_take_the_generic_path(platform: Platform) -> None:
    events = cast(Table, EventRow.__table__)
    rows = [
        {"at": at, "job_id": i, "tenant": None, "kind": "state", "message": "m"}
        for i, at in enumerate([1.5, math.inf, -math.inf])
    ]
    with platform.tx() as s:
        bulk.insert_rows(s.connection(), insert(events), rows)
    with platform.sessions() as s:
        stored = [(e.job_id, e.at) for e in s.scalars(select(EventRow).order_by(EventRow.job_id))]
    assert stored == [(0, 1.5), (1, math.inf), (2, -math.inf)]
