"""Every page over a real store driven by the real engine (fake executor): what each
shows, tenant isolation on every page and fragment, actions, and /docs offline."""

from __future__ import annotations

import csv
import io
import json
import re
import time

import pytest

from mosu.service.db.rows import JobRow
from mosu.service.platform import Platform
from tests.service.conftest import FakeExecutor
from tests.web.conftest import OPERATOR_TOKEN, browser, csrf_of, seed, sign_in, submit

OPERATOR_PAGES = [
    "/ui/",
    "/ui/tenants",
    "/ui/tenants/acme",
    "/ui/queue",
    "/ui/queue?tenant=acme&kind=train&gpu_type=H800",
    "/ui/jobs",
    "/ui/jobs?state=running",
    "/ui/nodes",
    "/ui/nodes/n0",
    "/ui/usage",
    "/ui/usage?days=30",
]


def busy_cluster(api, platform: Platform, executor: FakeExecutor) -> dict:
    """beta borrows all 16 GPUs, acme's guarantee reclaims 4 of them (beta's job is
    preempted and requeued), a job finishes, and both tenants have jobs waiting."""
    tokens = seed(api)
    api.put("/v1/tenants/beta/quotas", json={"quotas": {"H800": {"guaranteed": 4, "limit": 16}}})
    jobs = {
        "beta-pretrain": submit(api, tokens["beta"], "beta-pretrain", gpus=8, kind="train"),
        "beta-sweep": submit(api, tokens["beta"], "beta-sweep", gpus=8, kind="train"),
    }
    platform.loop.run_once()
    jobs["acme-eval"] = submit(api, tokens["acme"], "acme-eval", gpus=4, kind="eval")
    platform.loop.run_once()  # reclaim: one of beta's jobs is asked to stop
    victim = executor.stopped[-1]
    executor.exit(victim, code=None)
    platform.loop.run_once()  # beta's job preempted and requeued; acme's starts
    platform.loop.run_once()
    jobs["acme-batch"] = submit(api, tokens["acme"], "acme-batch", gpus=8, kind="batch")
    jobs["beta-later"] = submit(api, tokens["beta"], "beta-later", gpus=8, kind="finetune")
    platform.loop.run_once()
    executor.exit(jobs["acme-eval"]["id"], code=0)
    platform.loop.run_once()
    jobs["acme-wait"] = submit(api, tokens["acme"], "acme-wait", gpus=8, replicas=2)
    platform.loop.run_once()
    return {"tokens": tokens, "jobs": {k: v["id"] for k, v in jobs.items()}, "victim": victim}


def test_every_page_renders_for_the_operator_with_what_the_store_holds(
    app, api, platform, executor
):
    world = busy_cluster(api, platform, executor)
    tab = browser(app)
    sign_in(tab, OPERATOR_TOKEN)
    pages = {path: tab.get(path) for path in OPERATOR_PAGES}
    for path, r in pages.items():
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
        assert "text/html" in r.headers["content-type"]
    for path in OPERATOR_PAGES:
        # A live refresh re-reads only the page body (htmx), from the same templates.
        partial = tab.get(path, headers={"HX-Request": "true", "HX-Target": "page"})
        assert partial.status_code == 200, f"{path}: {partial.text[:300]}"
        assert "<html" not in partial.text and "<h1>" in partial.text
    overview = pages["/ui/"].text
    assert "jobs pending" in overview
    assert "within guarantees" in overview and "borrowed" in overview
    found = re.findall(r'<script type="application/json" id="chart-\d+">(.*?)</script>', overview)
    charts = [json.loads(c) for c in found]
    assert [c["title"] for c in charts] == [
        "GPUs allocated, last 24 h",
        "GPUs allocated, last 7 days",
        "Jobs pending, last 7 days",
    ]
    day = charts[0]
    assert {s["label"] for s in day["series"]} == {"acme", "beta"}
    assert {line["label"]: line["value"] for line in day["lines"]} == {
        "sum of guarantees": 8.0,
        "capacity": 16,
    }
    assert "job {}".format(world["victim"]) in overview  # the preemption is listed
    tenants = pages["/ui/tenants"].text
    assert "borrowing" in tenants and "acme" in tenants and "beta" in tenants
    queue = pages["/ui/queue"].text
    assert "acme-wait" in queue and "beta-later" in queue and "beta-pretrain" in queue
    assert "acme-batch" not in queue  # running
    filtered = pages["/ui/queue?tenant=acme&kind=train&gpu_type=H800"].text
    assert "acme-wait" in filtered and "beta-later" not in filtered
    heatmap = re.search(r'id="heatmap-data">(.*?)</script>', pages["/ui/nodes"].text).group(1)
    data = json.loads(heatmap)
    assert [n[0] for n in data["nodes"]] == ["n0", "n1"]
    held = sum(data["holders"][3::5]) / 1000
    assert held == 16.0  # acme-batch and beta-sweep, 8 GPUs each
    assert data["held"] == {"acme": 8.0, "beta": 8.0}
    assert "Drain" in pages["/ui/nodes/n0"].text
    usage = pages["/ui/usage"].text
    assert "Download CSV" in usage and "acme" in usage


def test_the_job_page_shows_attempts_preemptions_allocations_events_and_why(
    app, api, platform, executor
):
    world = busy_cluster(api, platform, executor)
    tab = browser(app)
    sign_in(tab, world["tokens"]["beta"])
    page = tab.get(f"/ui/jobs/{world['victim']}").text
    assert "preempted" in page
    assert re.search(r"preemptions</div><div class=\"val\">1", page)
    assert "n0" in page or "n1" in page  # the first attempt's node
    assert "Job {} is".format(world["victim"]) in page  # the why sentence
    why = tab.get(f"/ui/jobs/{world['victim']}/why")
    assert why.status_code == 200 and "Job" in why.text
    assert "last checkpoint" not in page
    with platform.tx() as s:
        s.get(JobRow, world["victim"]).last_checkpoint_at = time.time() - 90
    page = tab.get(f"/ui/jobs/{world['victim']}").text
    assert re.search(r"last checkpoint</div><div class=\"val\"[^>]*>1 min", page), page


@pytest.mark.parametrize("who", ["acme", "beta"])
def test_a_tenant_never_sees_another_tenants_jobs_or_name(app, api, platform, executor, who):
    world = busy_cluster(api, platform, executor)
    other = "beta" if who == "acme" else "acme"
    tab = browser(app)
    csrf = sign_in(tab, world["tokens"][who])
    mine = [j for name, j in world["jobs"].items() if name.startswith(who)]
    theirs = [j for name, j in world["jobs"].items() if name.startswith(other)]
    seen = []
    for path in [
        "/ui/",
        "/ui/queue",
        "/ui/jobs",
        "/ui/usage",
        "/ui/usage.csv",
        f"/ui/tenants/{who}",
    ]:
        r = tab.get(path)
        assert r.status_code == 200, path
        seen.append((path, r.text))
    for job_id in mine:
        for path in (f"/ui/jobs/{job_id}", f"/ui/jobs/{job_id}/why", f"/ui/jobs/{job_id}/log"):
            r = tab.get(path)
            assert r.status_code == 200, path
            seen.append((path, r.text))
    for path, text in seen:
        assert other not in text, f"{path} names {other}"
    for job_id in theirs:
        for path in (f"/ui/jobs/{job_id}", f"/ui/jobs/{job_id}/why", f"/ui/jobs/{job_id}/log"):
            assert tab.get(path).status_code == 404, path
        r = tab.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": csrf})
        assert r.status_code == 404
        assert api.get(f"/v1/jobs/{job_id}").json()["state"] != "cancelled"
    assert tab.get(f"/ui/tenants/{other}").status_code == 404
    assert tab.get(f"/ui/queue?tenant={other}").status_code == 404
    assert tab.get("/ui/nodes").status_code == 403
    assert tab.get("/ui/nodes/n0").status_code == 403
    assert tab.post("/ui/nodes/n0/drain", data={"csrf": csrf}).status_code == 403
    assert tab.get("/ui/tenants").headers["location"] == f"/ui/tenants/{who}"
    # The cluster in aggregate is visible: others appear only summed, unnamed.
    overview = tab.get("/ui/").text
    assert "other tenants" in overview


def test_cancel_and_drain_from_the_dashboard_act_through_the_api_services(
    app, api, platform, executor
):
    world = busy_cluster(api, platform, executor)
    tab = browser(app)
    csrf = sign_in(tab, OPERATOR_TOKEN)
    waiting = world["jobs"]["beta-later"]
    r = tab.post(f"/ui/jobs/{waiting}/cancel", data={"csrf": csrf})
    assert (r.status_code, r.headers["location"]) == (303, f"/ui/jobs/{waiting}")
    assert api.get(f"/v1/jobs/{waiting}").json()["state"] == "cancelled"
    assert "cancelled" in tab.get(r.headers["location"]).text
    r = tab.post("/ui/nodes/n1/drain", data={"csrf": csrf})
    assert r.status_code == 303
    states = {n["name"]: n["state"] for n in api.get("/v1/nodes").json()}
    assert states["n1"] == "draining"
    page = tab.get("/ui/nodes/n1").text
    assert "Undrain" in page
    tab.post("/ui/nodes/n1/undrain", data={"csrf": csrf})
    assert {n["name"]: n["state"] for n in api.get("/v1/nodes").json()}["n1"] == "ready"


def test_usage_csv_has_every_record_the_api_reports(app, api, platform, executor):
    busy_cluster(api, platform, executor)
    tab = browser(app)
    sign_in(tab, OPERATOR_TOKEN)
    r = tab.get("/ui/usage.csv")
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    api_records = api.get("/v1/usage").json()["records"]
    assert {(x["tenant"], x["gpu_type"], x["day"]) for x in rows} == {
        (x["tenant"], x["gpu_type"], x["day"]) for x in api_records
    }
    assert all(float(x["gpu_hours"]) > 0 for x in rows)


def test_queue_pages_through_a_long_queue_in_order(app, api, platform):
    tokens = seed(api)
    for i in range(130):
        submit(api, tokens["acme"], f"acme-wait-{i:03d}", gpus=8, replicas=2)
    platform.loop.run_once()
    tab = browser(app)
    sign_in(tab, OPERATOR_TOKEN)
    first = tab.get("/ui/queue").text
    second = tab.get("/ui/queue?page=2").text
    assert "129 pending" in first and "page 1 of 2" in first  # one of them runs
    names = re.findall(r">(acme-wait-\d+)</a>", first) + re.findall(r">(acme-wait-\d+)</a>", second)
    assert names == sorted(names) and len(set(names)) == 129
    positions = re.findall(r'<td class="n">(\d+)</td>\s*<td><a href="/ui/jobs/', first + second)
    assert [int(p) for p in positions] == list(range(1, 130))


def test_what_a_tenant_names_is_escaped_everywhere(app, api, platform):
    tokens = seed(api)
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    job = submit(api, tokens["acme"], hostile, gpus=8, replicas=2)
    platform.loop.run_once()
    tab = browser(app)
    sign_in(tab, OPERATOR_TOKEN)
    for path in ("/ui/queue", "/ui/jobs", f"/ui/jobs/{job['id']}", "/ui/"):
        text = tab.get(path).text
        assert "<script>alert" not in text, path
        assert "<img src=x" not in text, path
    page = tab.get(f"/ui/jobs/{job['id']}")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_pages_carry_their_server_time_and_static_assets_are_cached(app):
    tab = browser(app)
    sign_in(tab, OPERATOR_TOKEN)
    r = tab.get("/ui/jobs")
    assert re.fullmatch(r"app;dur=\d+\.\d, cpu;dur=\d+\.\d", r.headers["server-timing"])
    js = tab.get("/ui/static/app.js", headers={"Accept-Encoding": "gzip"})
    assert js.status_code == 200
    assert "max-age" in js.headers["cache-control"]
    assert js.headers.get("content-encoding") == "gzip"


def test_root_and_docs_work_offline_from_the_package(app):
    tab = browser(app)
    assert tab.get("/").headers["location"] == "/ui/"
    docs = tab.get("/docs")
    assert docs.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert sources and all(s.startswith("/") for s in sources), sources
    for source in sources:
        assert tab.get(source).status_code == 200, source
    assert tab.get("/docs/oauth2-redirect").status_code == 200
    paths = tab.get("/openapi.json").json()["paths"]
    assert not any(p.startswith("/ui") or p in ("/", "/docs") for p in paths)


def test_an_unknown_dashboard_page_is_an_html_404_and_api_404s_stay_json(app):
    tab = browser(app)
    sign_in(tab, OPERATOR_TOKEN)
    r = tab.get("/ui/nope")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    r = tab.get("/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not-found"
    assert csrf_of(tab.get("/ui/").text)


@pytest.mark.parametrize(
    ("path", "want_field"),
    [
        ("/ui/queue?page=0", "page"),
        ("/ui/usage?days=1000", "days"),
        ("/ui/jobs/0", "job_id"),
        ("/ui/jobs?limit=abc", "limit"),
    ],
)
def test_a_bad_parameter_is_a_422_naming_it(app, path, want_field):
    tab = browser(app)
    sign_in(tab, OPERATOR_TOKEN)
    r = tab.get(path)
    assert r.status_code == 422
    assert f"{want_field}:" in r.text
