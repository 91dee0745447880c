"""The change log's insert triggers: a many-row insert logs each row once, in its own
transaction, whichever revision put the triggers there."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, false, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mosu.service.db.change_log import ChangeLog
from mosu.service.db.rows import ChangeRow, JobRow, TenantRow
from mosu.service.db.session import downgrade, make_engine, upgrade

JOB = {
    "tenant": "acme",
    "name": "j",
    "kind": "training",
    "state": "pending",
    "submitted_at": 0,
    "spec": "{}",
}


def _submit(engine: Engine, names: list[str]) -> list[int]:
    """One statement inserting a job per name; the new ids."""
    with engine.begin() as conn:
        rows = [{**JOB, "name": n} for n in names]
        return list(conn.scalars(insert(JobRow).values(rows).returning(JobRow.id)))


def _logged(engine: Engine) -> list[tuple[str, str, int | None]]:
    with Session(engine) as s:
        return [
            (kind, key, xid)
            for kind, key, xid in s.execute(
                select(ChangeRow.kind, ChangeRow.key, ChangeRow.xid).order_by(ChangeRow.id)
            )
        ]


def _installed(engine: Engine) -> bool:
    with Session(engine) as s:
        return ChangeLog(engine.dialect.name).installed(s)


def test_a_many_row_insert_logs_every_row_once(db_url: str):
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with Session(engine) as s, s.begin():
            s.add(TenantRow(name="acme", weight=1.0, created_at=0.0))
        assert _installed(engine)
        start = len(_logged(engine))
        ids = _submit(engine, ["a", "b", "c"])
        with engine.begin() as conn:  # a statement inserting nothing logs nothing
            columns = [JobRow.__table__.c[name] for name in JOB]
            conn.execute(insert(JobRow).from_select(list(JOB), select(*columns).where(false())))
        logged = _logged(engine)[start:]
        assert sorted(key for _kind, key, _xid in logged) == sorted(str(i) for i in ids)
        assert {kind for kind, _key, _xid in logged} == {"job"}
        if engine.dialect.name == "postgresql":
            # One transaction, and its id: what a reader's snapshot is compared with.
            assert len({xid for _kind, _key, xid in logged}) == 1
            assert None not in {xid for _kind, _key, xid in logged}
        # Updates still log per row; the scheduler's advice alone does not.
        start += len(logged)
        with engine.begin() as conn:
            conn.execute(update(JobRow).where(JobRow.id == ids[0]).values(pending_reason="no-fit"))
            conn.execute(update(JobRow).where(JobRow.id == ids[1]).values(state="running"))
        assert [(kind, key) for kind, key, _xid in _logged(engine)[start:]] == [
            ("job", str(ids[1]))
        ]
        # An insert that fails logs nothing: the log's rows go with the jobs'.
        start = len(_logged(engine))
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                insert(JobRow).values(
                    [
                        {"id": ids[-1] + 100, **JOB},
                        {"id": ids[0], **JOB},  # taken
                    ]
                )
            )
        assert _logged(engine)[start:] == []
    finally:
        engine.dispose()


def test_a_disabled_insert_trigger_is_not_trusted(db_url: str):
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert _installed(engine)
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("ALTER TABLE jobs DISABLE TRIGGER change_log_jobs_insert"))
            else:
                conn.execute(text("DROP TRIGGER change_log_jobs_insert"))
        assert not _installed(engine)
    finally:
        engine.dispose()


def test_inserts_are_logged_down_to_the_per_row_triggers_and_back(db_url: str):
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with Session(engine) as s, s.begin():
            s.add(TenantRow(name="acme", weight=1.0, created_at=0.0))
        downgrade(engine, "0015_change_log")
        start = len(_logged(engine))
        before = _submit(engine, ["a", "b"])
        assert [key for _kind, key, _xid in _logged(engine)[start:]] == [str(i) for i in before]
        upgrade(engine)
        assert _installed(engine)
        start = len(_logged(engine))
        after = _submit(engine, ["c", "d"])
        assert sorted(key for _kind, key, _xid in _logged(engine)[start:]) == sorted(
            str(i) for i in after
        )
    finally:
        engine.dispose()
