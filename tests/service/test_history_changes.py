"""A history export carries the quota and node changes made during its window as timed
changes (``changes.csv``), the tenants and nodes as they were at its start; a replay of
the export applies each change at its time."""

from __future__ import annotations

import time

from sqlalchemy import select

from mosu.core.models import GPU_MILLI, NodeState, Quota
from mosu.engine.profiles import build_profile
from mosu.service.db.rows import EventRow
from mosu.sim.replay import replay
from mosu.sim.whatif import REPLAY_CONFIG, load_history, replayable
from mosu.traces.schema import ChangeKind
from tests.service.conftest import seed, submit


def event_at(platform, kind: str) -> float:
    with platform.tx() as s:
        return s.scalars(select(EventRow.at).where(EventRow.kind == kind)).one()


def test_changes_during_the_window_are_exported_and_replayed_at_their_time(api, platform, tmp_path):
    tokens = seed(api)  # node n0; a: H800 guarantee 4; b: guarantee 4, limit 8
    r = api.post("/v1/tenants", json={"name": "c", "quotas": {"H800": {"guaranteed": 1}}})
    assert r.status_code == 201, r.text
    first = submit(api, tokens["a"], gpus=4)  # the window's first submission: time 0
    time.sleep(0.02)
    r = api.put(
        "/v1/tenants/a/quotas",
        json={"quotas": {"H800": {"guaranteed": 6, "limit": 8}}, "weight": 2},
    )
    assert r.status_code == 200, r.text
    assert api.patch("/v1/tenants/c", json={"cohort": "lab"}).status_code == 200
    r = api.post("/v1/nodes", json={"name": "n1", "gpu_type": "H800", "gpus": 8})
    assert r.status_code == 201, r.text
    assert api.post("/v1/nodes/n0/drain").status_code == 200
    time.sleep(0.02)
    submit(api, tokens["b"], gpus=8)

    exported = api.get("/v1/history/export").json()
    origin = exported["origin"]
    assert exported["changes"] == 5
    where = tmp_path / "history"
    where.mkdir()
    for name, text in exported["files"].items():
        (where / name).write_text(text)
    history = load_history(where)

    # Tenants and nodes as they were at the first submission.
    tenants = {t.name: t for t in history.tenants}
    assert tenants["a"].quota("H800") == Quota(4 * GPU_MILLI, None)
    assert tenants["a"].weight == 1.0
    assert tenants["c"].cohort is None
    nodes = {n.name: n for n in history.nodes}
    assert (nodes["n0"].state, nodes["n1"].state) == (NodeState.READY, NodeState.DOWN)
    # What changed after it, each at its event's time on the trace clock.
    quota_at = event_at(platform, "quota-changed") - origin
    drained_at = event_at(platform, "node-draining") - origin
    got = [(round(c.time_s, 6), c.kind, c.subject) for c in history.changes]
    assert [(k, s) for _, k, s in got] == [
        (ChangeKind.QUOTA, "a"),
        (ChangeKind.WEIGHT, "a"),
        (ChangeKind.COHORT, "c"),
        (ChangeKind.NODE, "n1"),
        (ChangeKind.NODE, "n0"),
    ]
    assert got[0][0] == round(quota_at, 6) and got[-1][0] == round(drained_at, 6)
    quota, weight, cohort, added, drained = history.changes
    assert quota.quota == Quota(6 * GPU_MILLI, 8 * GPU_MILLI) and quota.gpu_type == "H800"
    assert weight.weight == 2.0
    assert cohort.cohort == "lab"
    assert added.node_state is NodeState.READY and drained.node_state is NodeState.DRAINING

    # The replay applies them: b's 8-GPU job, submitted after n0 was drained, runs on n1
    # (ready only from its registration on), since n0 takes nothing new.
    jobs, _ = replayable(history.jobs)
    result = replay(
        jobs,
        history.tenants,
        history.nodes,
        build_profile("mosu"),
        REPLAY_CONFIG,
        changes=history.changes,
    )
    starts = {d.split()[2]: d.split()[3] for d in result.decisions if " start " in d}
    assert starts[str(first["id"])].startswith("n0:")
    (late,) = (j for j in starts if j != str(first["id"]))
    assert starts[late].startswith("n1:")


def test_an_export_without_changes_writes_no_changes_file(api):
    tokens = seed(api)
    submit(api, tokens["a"], gpus=4)
    exported = api.get("/v1/history/export").json()
    assert exported["changes"] == 0
    assert set(exported["files"]) == {"jobs.csv", "tenants.csv", "nodes.csv"}
