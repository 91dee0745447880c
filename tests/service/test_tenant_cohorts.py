"""A tenant's cohort through the API and the store into the engine's snapshot: create,
change and clear it, bad names rejected naming the field, and the scheduling loop
handing it to the engine."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from pydantic import ValidationError

import mosu.service.background as background
from mosu.client import Client
from mosu.engine.snapshot import ClusterSnapshot
from mosu.service.platform import Platform
from mosu.service.services.scheduling import load_snapshot
from tests.service.conftest import bearer, seed


def cohort_of(api, name: str) -> str | None:
    return api.get(f"/v1/tenants/{name}").json()["cohort"]


def test_a_cohort_given_at_create_is_stored_and_shown(api):
    r = api.post("/v1/tenants", json={"name": "acme", "cohort": "lab-a"})
    assert r.status_code == 201, r.text
    assert r.json()["tenant"]["cohort"] == "lab-a"
    for name, body in (("beta", {}), ("gamma", {"cohort": None}), ("delta", {"cohort": ""})):
        r = api.post("/v1/tenants", json={"name": name, **body})
        assert r.status_code == 201, r.text
        assert r.json()["tenant"]["cohort"] is None, name
    assert cohort_of(api, "acme") == "lab-a"
    listed = {t["name"]: t["cohort"] for t in api.get("/v1/tenants").json()}
    assert listed == {"acme": "lab-a", "beta": None, "gamma": None, "delta": None}
    events = api.get("/v1/events").json()["events"]
    created = [e["message"] for e in events if e["kind"] == "tenant-created"]
    assert created[0] == "cohort lab-a"


def test_an_update_sets_keeps_and_clears_the_cohort(api):
    api.post("/v1/tenants", json={"name": "acme", "quotas": {"H800": {"guaranteed": 2}}})
    r = api.patch("/v1/tenants/acme", json={"cohort": "lab-a"})
    assert r.status_code == 200, r.text
    assert r.json()["cohort"] == "lab-a"
    assert r.json()["quotas"] == [{"gpu_type": "H800", "guaranteed": 2.0, "limit": None}]
    # Leaving the field out keeps it; the weight alone changes.
    r = api.patch("/v1/tenants/acme", json={"weight": 3})
    assert (r.json()["cohort"], r.json()["weight"]) == ("lab-a", 3.0)
    assert api.patch("/v1/tenants/acme", json={}).json()["cohort"] == "lab-a"
    # A quota change leaves the cohort alone.
    api.put("/v1/tenants/acme/quotas", json={"quotas": {"H800": {"guaranteed": 4}}})
    assert cohort_of(api, "acme") == "lab-a"
    # An empty string and null both move it to the default cohort.
    assert api.patch("/v1/tenants/acme", json={"cohort": ""}).json()["cohort"] is None
    assert cohort_of(api, "acme") is None
    api.patch("/v1/tenants/acme", json={"cohort": "lab-b"})
    assert api.patch("/v1/tenants/acme", json={"cohort": None}).json()["cohort"] is None
    events = api.get("/v1/events").json()["events"]
    changes = [e["message"] for e in events if e["kind"] == "tenant-changed"]
    assert changes == [
        "cohort lab-a",
        "weight 3",
        "default cohort",
        "cohort lab-b",
        "default cohort",
    ]


@pytest.mark.parametrize(
    "cohort",
    ["Lab A", "-lab", "lab_", "x" * 64, 7, ["lab"]],
    ids=["space and capital", "leading dash", "trailing underscore", "too long", "number", "list"],
)
def test_bad_cohort_names_are_422_naming_the_field(api, cohort):
    r = api.post("/v1/tenants", json={"name": "acme", "cohort": cohort})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "cohort"
    if isinstance(cohort, str):  # the rule in words, not the regular expression
        assert r.json()["error"]["message"].startswith("must be 1 to 63 characters")
        assert "^" not in r.json()["error"]["message"]
    assert api.get("/v1/tenants/acme").status_code == 404, "nothing is created"
    api.post("/v1/tenants", json={"name": "acme", "cohort": "lab-a"})
    r = api.patch("/v1/tenants/acme", json={"cohort": cohort})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "cohort"
    assert cohort_of(api, "acme") == "lab-a", "a refused update changes nothing"


def test_only_the_operator_updates_an_existing_tenant(api):
    tokens = seed(api)
    r = api.patch("/v1/tenants/a", json={"cohort": "lab-a"}, headers=bearer(tokens["a"]))
    assert r.status_code == 403
    assert cohort_of(api, "a") is None
    r = api.patch("/v1/tenants/nobody", json={"cohort": "lab-a"})
    assert r.status_code == 404
    assert r.json()["error"]["field"] == "tenant"
    r = api.patch("/v1/tenants/a", json={"cohort": "lab-a", "colour": "red"})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "colour"
    # A tenant sees its own cohort.
    api.patch("/v1/tenants/a", json={"cohort": "lab-a"})
    assert api.get("/v1/tenants/a", headers=bearer(tokens["a"])).json()["cohort"] == "lab-a"


def test_the_scheduling_snapshot_carries_each_tenants_cohort(api, platform: Platform, monkeypatch):
    seed(api)
    api.patch("/v1/tenants/a", json={"cohort": "lab-a"})
    api.post("/v1/tenants", json={"name": "c", "cohort": "lab-a", "weight": 2})
    with platform.tx() as s:
        loaded = load_snapshot(s, now=time.time())
    assert {t.name: t.cohort for t in loaded.snapshot.tenants} == {
        "a": "lab-a",
        "b": None,
        "c": "lab-a",
    }
    # And the loop hands exactly that to the engine.
    seen: list[ClusterSnapshot] = []
    engine_schedule = background.schedule

    def spy(snapshot, profile):  # type: ignore[no-untyped-def]
        seen.append(snapshot)
        return engine_schedule(snapshot, profile)

    monkeypatch.setattr(background, "schedule", spy)
    api.patch("/v1/tenants/b", json={"cohort": "lab-b"})
    api.patch("/v1/tenants/a", json={"cohort": ""})
    platform.loop.run_once()
    assert seen, "the loop ran one engine cycle"
    assert {t.name: t.cohort for t in seen[-1].tenants} == {"a": None, "b": "lab-b", "c": "lab-a"}
    assert {t.name: t.weight for t in seen[-1].tenants}["c"] == 2.0


def test_the_client_sends_a_cohort_only_when_given_and_an_empty_one_as_null():
    sent: list[tuple[str, dict]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append((request.method, body))
        tenant = {"name": "acme", "weight": 1, "quotas": [], "created_at": "2026-01-01T00:00:00Z"}
        if request.method == "POST":
            return httpx.Response(201, json={"tenant": tenant, "token": "t"})
        return httpx.Response(200, json=tenant)

    with Client("http://mosu.test", "tok", transport=httpx.MockTransport(handler)) as c:
        assert c.create_tenant("acme", {}, cohort="lab-a").tenant.cohort is None  # as answered
        c.create_tenant("acme", {})
        c.update_tenant("acme", cohort="lab-a")
        c.update_tenant("acme", cohort="")
        c.update_tenant("acme", weight=2)
        with pytest.raises(ValidationError):
            c.update_tenant("acme", cohort="Lab A")
    assert sent == [
        ("POST", {"name": "acme", "quotas": {}, "weight": 1.0, "cohort": "lab-a"}),
        ("POST", {"name": "acme", "quotas": {}, "weight": 1.0}),
        ("PATCH", {"cohort": "lab-a"}),
        ("PATCH", {"cohort": None}),
        ("PATCH", {"weight": 2.0}),
    ]
