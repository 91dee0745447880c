"""``GET /metrics``: Prometheus text that a standard parser reads, matching known state."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from mosu.service.platform import Platform
from tests.service.conftest import FakeExecutor, TestClient, bearer, seed, submit


def scrape(api: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    r = api.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(r.text):
        for sample in fam.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_match_jobs_gpus_and_requests(
    api: TestClient, platform: Platform, executor: FakeExecutor
) -> None:
    tokens = seed(api)  # 8 x H800; a guaranteed 4, b guaranteed 4 limit 8
    running = [submit(api, tokens["a"], gpus=2)["id"], submit(api, tokens["b"], gpus=4)["id"]]
    done = submit(api, tokens["a"], gpus=1)["id"]
    platform.loop.run_once()
    executor.exit(done, 0)
    platform.loop.run_once()
    waiting = submit(api, tokens["a"], gpus=8)["id"]  # needs the whole node: pending
    platform.loop.run_once()
    unscheduled = submit(api, tokens["b"], gpus=1)["id"]  # no cycle has seen it yet
    assert len({*running, done, waiting, unscheduled}) == 5

    got = scrape(api)
    jobs = {dict(k)["state"]: v for k, v in got["mosu_jobs"].items()}
    assert jobs == {
        "pending": 2,
        "starting": 0,
        "running": 2,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 0,
        "preempted": 0,
    }
    pending = {dict(k)["reason"]: v for k, v in got["mosu_jobs_pending"].items()}
    assert sum(pending.values()) == 2
    assert pending["unscheduled"] == 1
    allocated = {
        (dict(k)["tenant"], dict(k)["gpu_type"]): v for k, v in got["mosu_gpus_allocated"].items()
    }
    assert allocated == {("a", "H800"): 2, ("b", "H800"): 4}
    assert got["mosu_gpus"] == {(("gpu_type", "H800"), ("node_state", "ready")): 8}
    assert got["mosu_scheduler_leading"] == {(): 0}  # cycles run by hand: no loop leads
    assert got["mosu_scheduler_cycle_seconds_count"][()] == platform.loop.cycles >= 3
    posts = (("method", "POST"), ("route", "/v1/jobs"), ("status", "201"))
    assert got["mosu_http_requests_total"][posts] == 5
    timed = (("method", "POST"), ("route", "/v1/jobs"))
    assert got["mosu_http_request_duration_seconds_count"][timed] == 5
    assert got["mosu_http_request_duration_seconds_bucket"][(("le", "+Inf"), *timed)] == 5


def test_requests_are_labelled_by_route_template_and_status(api: TestClient) -> None:
    seed(api)
    assert api.get("/v1/jobs/12345").status_code == 404
    assert api.get("/no/such/route").status_code == 404
    got = scrape(api)["mosu_http_requests_total"]
    assert got[(("method", "GET"), ("route", "/v1/jobs/{job_id}"), ("status", "404"))] == 1
    assert got[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1


def test_metrics_need_the_operator_token(api: TestClient) -> None:
    tokens = seed(api)
    assert api.get("/metrics", headers=bearer(tokens["a"])).status_code == 403
    assert api.get("/metrics", headers={"Authorization": ""}).status_code == 401


NAMES_BEFORE_PROMETHEUS_CLIENT = {
    "mosu_jobs": "gauge",
    "mosu_jobs_pending": "gauge",
    "mosu_gpus_allocated": "gauge",
    "mosu_gpus": "gauge",
    "mosu_scheduler_leading": "gauge",
    "mosu_scheduler_cycle_seconds": "histogram",
    "mosu_http_requests_total": "counter",
    "mosu_http_request_duration_seconds": "histogram",
}
"""Every family the hand-written exposition had, with its type: dashboards read them."""


def test_every_metric_name_from_before_is_exposed_with_its_type(
    api: TestClient, platform: Platform
) -> None:
    tokens = seed(api)
    submit(api, tokens["a"], gpus=1)
    submit(api, tokens["a"], gpus=8)  # cannot fit beside the first: pending
    platform.loop.run_once()
    text = api.get("/metrics").text
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
    for name, kind in NAMES_BEFORE_PROMETHEUS_CLIENT.items():
        assert types.get(name) == kind, name
    got = scrape(api)
    for name, kind in NAMES_BEFORE_PROMETHEUS_CLIENT.items():
        sample = f"{name}_count" if kind == "histogram" else name
        assert sample in got, sample
    assert not any(name.endswith("_created") for name in got)


def test_queue_depth_per_tenant_and_cycle_phases(
    api: TestClient, platform: Platform, executor: FakeExecutor
) -> None:
    tokens = seed(api)
    submit(api, tokens["a"], gpus=8)  # takes the node
    platform.loop.run_once()
    for _ in range(3):
        submit(api, tokens["a"], gpus=4)
    submit(api, tokens["b"], gpus=4)
    platform.loop.run_once()
    got = scrape(api)
    assert got["mosu_queue_depth"] == {(("tenant", "a"),): 3, (("tenant", "b"),): 1}
    phases = {dict(k)["phase"]: v for k, v in got["mosu_scheduler_phase_seconds_count"].items()}
    assert phases == dict.fromkeys(("load", "engine", "apply", "launch"), platform.loop.cycles)
    assert platform.loop.cycles >= 2


def test_the_framework_sends_nothing_to_opentelemetry_providers(
    platform: Platform, monkeypatch
) -> None:
    """What mosu reports goes through /metrics; a process that has OpenTelemetry providers
    (another library set them up) gets no spans from the API or the dashboard."""
    from fastapi import FastAPI
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mosu.service.app import create_app

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)

    plain = FastAPI()
    plain.get("/ping")(lambda: {"ok": True})
    with TestClient(plain) as client:
        assert client.get("/ping").status_code == 200
    assert spans.get_finished_spans(), "a framework default app would have traced that"
    spans.clear()

    with TestClient(create_app(platform)) as client:
        assert client.get("/v1/queue").status_code in (200, 401)
        assert client.get("/ui/tenants", follow_redirects=False).status_code in (200, 303, 307)
    assert spans.get_finished_spans() == ()
