"""Bad input is a 4xx, always: every probe of ``bench/bench_probes.py`` as a regression test,
on SQLite and PostgreSQL.

What was found with these: NUL in a job name failed whole batches of other tenants'
submissions on PostgreSQL, a NUL GPU type was a 500, cursors past a 32-bit column and JSON or
YAML nested thousands deep were 500s (with thousands of log lines each), ``gpus: true`` was a
1-GPU job and duplicate YAML keys silently kept the last one.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from mosu.core.api import (
    MAX_BODY_BYTES,
    MAX_DEPTH,
    JobSpec,
    NodeCreate,
    QuotaUpdate,
    SecretSet,
    TenantCreate,
    TenantUpdate,
    TokenCreate,
)
from tests.service.conftest import TestClient, bearer, seed

NUL = "\x00"
JOB = {"name": "j", "command": ["true"], "gpus": 1}
NODE = {"name": "n9", "gpu_type": "H800", "gpus": 1}

# Every string a client can send in a body: (method, path, body, the field the 422 names).
# ``test_the_table_covers_every_string_field`` keeps it complete as the models grow.
NUL_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/v1/jobs", {**JOB, "name": f"x{NUL}"}, "name"),
    ("POST", "/v1/jobs", {**JOB, "kind": f"train{NUL}"}, "kind"),
    ("POST", "/v1/jobs", {**JOB, "priority": f"high{NUL}"}, "priority"),
    ("POST", "/v1/jobs", {**JOB, "gpu_type": f"H800{NUL}"}, "gpu_type"),
    ("POST", "/v1/jobs", {**JOB, "gpu_type": ["H800", f"A{NUL}"]}, "gpu_type[1]"),
    ("POST", "/v1/jobs", {**JOB, "memory": f"1Gi{NUL}"}, "memory"),
    ("POST", "/v1/jobs", {**JOB, "topology": f"none{NUL}"}, "topology"),
    ("POST", "/v1/jobs", {**JOB, "estimate": f"1h{NUL}"}, "estimate"),
    ("POST", "/v1/jobs", {**JOB, "max_runtime": f"1h{NUL}"}, "max_runtime"),
    ("POST", "/v1/jobs", {**JOB, "checkpoint_every": f"1h{NUL}"}, "checkpoint_every"),
    (
        "POST",
        "/v1/jobs",
        {**JOB, "checkpoint_every": "1h", "checkpoint_signal": f"SIGUSR1{NUL}"},
        "checkpoint_signal",
    ),
    (
        "POST",
        "/v1/jobs",
        {
            **JOB,
            "checkpoint_every": "1h",
            "checkpoint_signal": "SIGUSR1",
            "checkpoint_grace": f"1m{NUL}",
        },
        "checkpoint_grace",
    ),
    ("POST", "/v1/jobs", {**JOB, "command": f"echo {NUL}"}, "command"),
    ("POST", "/v1/jobs", {**JOB, "command": ["echo", f"a{NUL}"]}, "command[1]"),
    ("POST", "/v1/jobs", {**JOB, "env": {"A": f"a{NUL}"}}, "env.A"),
    ("POST", "/v1/jobs", {**JOB, "env": {f"A{NUL}": "a"}}, "env.A\\x00"),
    ("POST", "/v1/jobs", {**JOB, "secrets": [f"S{NUL}"]}, "secrets[0]"),
    ("POST", "/v1/jobs", {**JOB, "workdir": f"/tmp{NUL}"}, "workdir"),
    ("POST", "/v1/tenants", {"name": f"g{NUL}"}, "name"),
    ("POST", "/v1/tenants", {"name": "g", "quotas": {f"H{NUL}": {}}}, "quotas.H\\x00"),
    ("POST", "/v1/tenants", {"name": "g", "cohort": f"c{NUL}"}, "cohort"),
    (
        "POST",
        "/v1/tenants",
        {"name": "g", "on_credits_exhausted": f"hold{NUL}"},
        "on_credits_exhausted",
    ),
    ("PATCH", "/v1/tenants/a", {"cohort": f"c{NUL}"}, "cohort"),
    ("PATCH", "/v1/tenants/a", {"on_credits_exhausted": f"stop{NUL}"}, "on_credits_exhausted"),
    ("PUT", "/v1/tenants/a/quotas", {"quotas": {f"H{NUL}": {}}}, "quotas.H\\x00"),
    ("POST", "/v1/nodes", {**NODE, "name": f"n{NUL}"}, "name"),
    ("POST", "/v1/nodes", {**NODE, "gpu_type": f"H{NUL}"}, "gpu_type"),
    ("POST", "/v1/nodes", {**NODE, "gpu_vendor": f"huawei{NUL}"}, "gpu_vendor"),
    ("POST", "/v1/nodes", {**NODE, "memory": f"1Gi{NUL}"}, "memory"),
    ("POST", "/v1/nodes", {**NODE, "gpu_memory": f"1Gi{NUL}"}, "gpu_memory"),
    ("POST", "/v1/nodes", {**NODE, "topology": f"z/r{NUL}"}, "topology"),
    ("POST", "/v1/tokens", {"name": f"t{NUL}"}, "name"),
    ("POST", "/v1/tokens", {"tenant": f"a{NUL}"}, "tenant"),
    ("POST", "/v1/tokens", {"expires_in": f"1d{NUL}"}, "expires_in"),
    ("PUT", "/v1/secrets/S?tenant=a", {"value": f"v{NUL}"}, "value"),
]


def _string_fields(schema: dict[str, Any], defs: dict[str, Any], prefix: str) -> set[str]:
    """Top-level fields of a model's JSON schema that hold a string anywhere (directly, in
    a list, as a mapping key or value, or in a nested model)."""

    def holds_text(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            return target.get("type") == "string" or "enum" in target
        if node.get("type") == "string" or "enum" in node or "propertyNames" in node:
            return True
        children = [*node.get("anyOf", []), node.get("items"), node.get("additionalProperties")]
        return any(holds_text(child) for child in children)

    return {f"{prefix}{name}" for name, node in schema["properties"].items() if holds_text(node)}


def test_the_table_covers_every_string_field():
    covered = {(p.split("?")[0], f.split("[")[0].split(".")[0]) for _, p, _, f in NUL_CASES}
    for model, path in (
        (JobSpec, "/v1/jobs"),
        (TenantCreate, "/v1/tenants"),
        (TenantUpdate, "/v1/tenants/a"),
        (QuotaUpdate, "/v1/tenants/a/quotas"),
        (NodeCreate, "/v1/nodes"),
        (TokenCreate, "/v1/tokens"),
        (SecretSet, "/v1/secrets/S"),
    ):
        schema = model.model_json_schema()
        for field in _string_fields(schema, schema.get("$defs", {}), ""):
            assert (path, field) in covered, f"no NUL case for {field} of {path}"


def test_nul_in_any_string_field_is_422_naming_it(api: TestClient):
    seed(api)  # the tenants exist: a 404 could not hide a 422
    wrong = []
    for method, path, body, field in NUL_CASES:
        params = {"tenant": "a"} if path == "/v1/jobs" else None
        r = api.request(method, path, json=body, params=params)
        got = (r.status_code, r.json()["error"]["field"] if r.status_code >= 400 else None)
        if got != (422, field):
            wrong.append(f"{method} {path} {field}: {got}")
    assert wrong == []
    assert api.get("/v1/jobs").json()["jobs"] == []
    assert [t["name"] for t in api.get("/v1/tenants").json()] == ["a", "b"]


def test_commands_and_env_values_keep_newlines_and_tabs_only(api: TestClient):
    tokens = seed(api)
    for value, allowed in (
        ("line one\nline two", True),
        ("tab\tseparated", True),
        ("crlf\r\n", True),
        ("bell\x07", False),
        ("escape\x1b[31m", False),
        ("c1\x85", False),
        ("del\x7f", False),
    ):
        for body in ({**JOB, "command": value}, {**JOB, "env": {"X": value}}):
            r = api.post("/v1/jobs", json=body, headers=bearer(tokens["a"]))
            assert (r.status_code == 201) is allowed, (value, r.text)


def test_a_newline_in_a_name_is_refused(api: TestClient):
    tokens = seed(api)
    r = api.post("/v1/jobs", json={**JOB, "name": "a\nb"}, headers=bearer(tokens["a"]))
    assert (r.status_code, r.json()["error"]["field"]) == (422, "name")
    r = api.post("/v1/jobs", json={**JOB, "env": {"X\n": "1"}}, headers=bearer(tokens["a"]))
    assert r.status_code == 422


# ---------------------------------------------------------------- cursors


@pytest.mark.parametrize(
    ("after", "want_status"),
    [(2**31 - 1, 200), (2**31, 200), (2**62, 200), (2**63 - 1, 200), (2**63, 422), (-1, 422)],
)
def test_event_cursors_up_to_the_64_bit_column_work_and_beyond_are_422(
    api: TestClient, after, want_status
):
    r = api.get("/v1/events", params={"after": after})
    assert r.status_code == want_status, r.text
    if want_status == 200:
        assert r.json()["events"] == []
    else:
        assert r.json()["error"]["field"] == "after"


@pytest.mark.parametrize(
    ("header", "want_status"),
    [
        (str(2**31), 200),
        (str(2**63 - 1), 200),
        (str(2**63), 422),
        (str(10**30), 422),
        ("-1", 422),
        ("+5", 422),
        ("1_000", 422),
    ],
)
def test_last_event_id_within_the_column_streams_and_beyond_is_422(
    api: TestClient, header, want_status
):
    r = api.get("/v1/events/stream", params={"wait_s": 0.2}, headers={"Last-Event-ID": header})
    assert r.status_code == want_status, r.text
    if want_status == 200:  # the stream ran to its end, it was not cut
        assert r.text.startswith("retry: 2000\nid: ")
    else:
        assert r.json()["error"]["field"] == "Last-Event-ID"


def test_events_past_the_32_bit_range_are_stored_and_read(api: TestClient, platform):
    from sqlalchemy import insert

    from mosu.service.db.rows import EventRow

    with platform.tx() as s:
        s.execute(insert(EventRow).values(id=2**31 + 5, at=0.0, kind="probe", message="far"))
    events = api.get("/v1/events", params={"after": 2**31}).json()["events"]
    assert [(e["id"], e["kind"]) for e in events] == [(2**31 + 5, "probe")]


# ---------------------------------------------------------------- nesting and size


def test_json_nested_100000_deep_is_400_without_a_traceback(
    api: TestClient, caplog: pytest.LogCaptureFixture
):
    seed(api)
    nested = "[" * 100_000 + "]" * 100_000
    body = '{"name": "x", "command": "true", "env": ' + nested + "}"
    for path in ("/v1/jobs", "/v1/tenants", "/v1/nodes", "/v1/tenants/a"):
        with caplog.at_level(logging.INFO):
            r = api.request(
                "PATCH" if path == "/v1/tenants/a" else "POST",
                path,
                content=body.encode(),
                params={"tenant": "a"},
                headers={"Content-Type": "application/json"},
            )
        assert r.status_code == 400, r.text
        assert f"nested deeper than {MAX_DEPTH} levels" in r.json()["error"]["message"]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]


def test_json_at_the_depth_limit_is_read(api: TestClient):
    seed(api)
    inner = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    r = api.post(
        "/v1/jobs",
        content=('{"name": "x", "command": "true", "env": {"A": ' + inner + "}}").encode(),
        params={"tenant": "a"},
        headers={"Content-Type": "application/json"},
    )
    # Depth is fine; an array is not an environment value: a 422 naming it, not a 400.
    assert (r.status_code, r.json()["error"]["field"]) == (422, "env.A")


def test_yaml_nested_5000_deep_is_400_and_logs_nothing(
    api: TestClient, caplog: pytest.LogCaptureFixture
):
    seed(api)
    body = "name: x\ncommand: 'true'\nenv: " + "[" * 5000 + "]" * 5000 + "\n"
    with caplog.at_level(logging.INFO):
        r = api.post(
            "/v1/jobs",
            content=body.encode(),
            params={"tenant": "a"},
            headers={"Content-Type": "application/yaml"},
        )
    assert r.status_code == 400, r.text
    assert "job spec:3: nested deeper than" in r.json()["error"]["message"]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]


def test_yaml_aliases_cannot_expand_without_bound(api: TestClient):
    seed(api)
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for name, prev in zip("bcdefg", "abcdef", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    r = api.post(
        "/v1/jobs",
        content="\n".join(lines).encode(),
        params={"tenant": "a"},
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 400
    assert "aliases are expanded" in r.json()["error"]["message"]


def test_a_body_over_the_limit_is_413(api: TestClient):
    body = b'{"name": "x", "command": "' + b"a" * MAX_BODY_BYTES + b'"}'
    r = api.post("/v1/tenants", content=body, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error"]["code"]) == (413, "too-large")


def test_yaml_over_its_limit_is_refused_with_advice(api: TestClient):
    seed(api)
    body = "name: x\ncommand: 'true'\nenv:\n" + "".join(f"  K{i}: v\n" for i in range(20_000))
    r = api.post(
        "/v1/jobs",
        content=body.encode(),
        params={"tenant": "a"},
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 400
    assert "send it as JSON" in r.json()["error"]["message"]


# ---------------------------------------------------------------- strict types, duplicates


STRICT_CASES = [
    ('{"name": "x", "command": "true", "gpus": true}', "application/json", 422, "gpus"),
    ('{"name": "x", "command": "true", "gpus": "2"}', "application/json", 422, "gpus"),
    ('{"name": "x", "command": "true", "replicas": true}', "application/json", 422, "replicas"),
    ('{"name": "x", "command": "true", "priority": true}', "application/json", 422, "priority"),
    ('{"name": "x", "command": "true", "memory": false}', "application/json", 422, "memory"),
    ('{"name": "x", "command": "true", "estimate": true}', "application/json", 422, "estimate"),
    ('{"name": 5, "command": "true"}', "application/json", 422, "name"),
    ('{"name": "x", "command": "true", "gpus": NaN}', "application/json", 400, None),
    ('{"name": "x", "command": "true", "gpus": 1e400}', "application/json", 422, "gpus"),
    ("name: x\ncommand: 'true'\ngpus: true\n", "application/yaml", 422, "gpus"),
    ("name: x\ncommand: 'true'\ngpus: '2'\n", "application/yaml", 422, "gpus"),
    ("name: 2024-01-01\ncommand: 'true'\n", "application/yaml", 422, "name"),
    ("name: x\nname: y\ncommand: 'true'\n", "application/yaml", 400, None),
    ("name: x\ncommand: 'true'\nenv: {A: '1', A: '2'}\n", "application/yaml", 400, None),
    ('{"name": "x", "name": "y", "command": "true"}', "application/json", 400, None),
]
"""(body, content type, status, the field named): a boolean is not a number, a string not a
number, a date not a name; NaN is not JSON; a key given twice is an error."""


def test_types_are_strict_and_duplicate_keys_refused(api: TestClient):
    tokens = seed(api)
    for body, content_type, want_status, want_field in STRICT_CASES:
        headers = bearer(tokens["a"]) | {"Content-Type": content_type}
        r = api.post("/v1/jobs", content=body.encode(), headers=headers)
        assert (r.status_code, r.json()["error"]["field"]) == (want_status, want_field), body
    assert api.get("/v1/jobs").json()["jobs"] == []


def test_a_yaml_merge_key_may_be_overridden(api: TestClient):
    tokens = seed(api)
    body = "name: x\ncommand: 'true'\nenv:\n  <<: {A: '1', B: '2'}\n  A: '3'\n"
    headers = bearer(tokens["a"]) | {"Content-Type": "application/yaml"}
    r = api.post("/v1/jobs", content=body.encode(), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["env"] == {"A": "3", "B": "2"}


# ---------------------------------------------------------------- media types and methods


def test_a_body_that_is_not_json_is_415_unless_the_operation_reads_it(api: TestClient):
    tokens = seed(api)
    body = b'{"name": "typed", "command": "true", "gpus": 1}'
    for path, content_type, want_status in (
        ("/v1/jobs", "text/plain", 415),
        ("/v1/jobs", "application/x-www-form-urlencoded", 415),
        ("/v1/jobs", None, 415),
        ("/v1/jobs", "application/yaml", 201),
        ("/v1/jobs", "text/yaml", 201),
        ("/v1/jobs", "application/json; charset=utf-8", 201),
        ("/v1/tenants", "application/yaml", 415),
        ("/v1/tenants", "text/plain", 415),
        ("/v1/jobs/1/cancel", "text/plain", 415),
    ):
        headers = bearer(tokens["a"]) if path == "/v1/jobs" else {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        r = api.post(path, content=body, headers=headers)
        assert r.status_code == want_status, (path, content_type, r.text)
        if want_status == 415:
            error = r.json()["error"]
            assert (error["code"], error["field"]) == ("unsupported-media-type", "Content-Type")
            assert "application/json" in error["message"]


def test_a_method_a_path_lacks_is_405_with_allow(api: TestClient):
    for method, path, want_allow in (
        ("DELETE", "/v1/jobs", "GET, POST"),
        ("PUT", "/v1/queue", "GET"),
        ("PATCH", "/v1/jobs/1", "GET"),
        ("DELETE", "/v1/nodes", "GET, POST"),
        ("GET", "/v1/tenants/a/quotas", "PUT"),
        ("PUT", "/v1/tokens", "GET, POST"),
        ("POST", "/v1/secrets/X", "DELETE, PUT"),
    ):
        r = api.request(method, path)
        assert r.status_code == 405, (method, path)
        assert r.headers["allow"] == want_allow, (method, path)
        assert r.json()["error"]["code"] == "method-not-allowed"


def test_an_unknown_path_is_404_in_the_error_shape(api: TestClient):
    r = api.get("/v1/nothing-here")
    assert (r.status_code, set(r.json())) == (404, {"error"})
