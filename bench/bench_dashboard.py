"""The dashboard's speed and weight on a seeded store.

Seeds a store (``bench/dashboard_store.py``: by default 100 tenants, 1,000 nodes,
50,000 finished jobs over 30 days, 10,000 pending; ``--quick``: 12 tenants, 48 nodes,
2,000 finished, 400 pending), starts a real server on it in a subprocess (the API and
the dashboard, no scheduling loop, so the seeded state stays as written; queue
positions are set as a cycle would leave them), signs in as the operator, and measures:

- every page's server time (its ``Server-Timing`` header: from the request reaching the
  dashboard to the answer starting), p50 and p95 over ``--requests`` loads, plus the
  first load of the history-reading pages (the history is read once a minute, off the
  request path, except the first time: reported as ``first_ms``);
- in headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright), every page
  loaded cold: bytes transferred (compressed bodies and headers of the page, its
  scripts, styles and requests), and the time from navigation to the page's last chart
  drawn (``window.mosuChartsDrawn``);
- the same pages as a tenant, which must not contain another tenant's job names.

Prints a table and a JSON object. Goals: p95 <= 100 ms per page, <= 1 s load to last
chart for the heaviest page, <= 500 KB per page. ``--screenshots DIR`` saves a PNG of
every page.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import free_port
from dashboard_store import FULL, QUICK, seed

TOKEN = "mosu_op_bench-dashboard-operator"
CHROMIUM = os.environ.get("MOSU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---------------------------------------------------------------- the server process


class NoExecutor:
    """The bench serves pages only: nothing is ever started."""

    def start(self, launch):  # type: ignore[no-untyped-def]
        raise RuntimeError("the dashboard benchmark starts no jobs")

    def poll(self) -> list:
        return []

    def stop(self, job_id: int, grace_s: float) -> None:
        pass

    def terminate_orphans(self, job_id: int, pids: list[int], grace_s: float) -> int:
        return 0

    def shutdown(self, grace_s: float) -> None:
        pass


def serve(database_url: str, data_dir: str, port: int) -> None:
    import uvicorn
    from sqlalchemy import select

    from mosu.service.app import create_app
    from mosu.service.db.rows import JobRow
    from mosu.service.main import freeze_startup_objects
    from mosu.service.platform import Platform
    from mosu.service.settings import Settings

    # The history is read once, on the first page, and kept for the whole run: pages are
    # timed without a background re-read sharing the process (its cost is measured apart).
    settings = Settings(
        data_dir=Path(data_dir),
        database_url=database_url,
        operator_token=TOKEN,
        port=port,
        dashboard_history_s=86400,
    )
    platform = Platform(settings, NoExecutor())
    platform.open()
    with platform.sessions() as s:
        order = s.execute(
            select(JobRow.id)
            .where(JobRow.state == "pending")
            .order_by(JobRow.priority.desc(), JobRow.submitted_at, JobRow.id)
        ).scalars()
        platform.loop.queue_positions = {job_id: i + 1 for i, job_id in enumerate(order)}
    app = create_app(platform)
    freeze_startup_objects()  # as ``mosu server`` does
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Server:
    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, __file__, "--serve", database_url, str(data_dir), str(self.port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOSU_")}
        self.log = data_dir / "server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit("server did not come up in 120 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- measurements


def sign_in(client: httpx.Client, token: str) -> None:
    form = client.get("/ui/signin")
    nonce = client.cookies.get("mosu_signin")
    r = client.post("/ui/signin", data={"token": token, "csrf": nonce})
    if r.status_code != 303 or "mosu_session" not in client.cookies:
        raise SystemExit(f"sign-in failed: {r.status_code} {r.text[:200]} {form.status_code}")


def server_timing(response: httpx.Response, metric: str = "app") -> float:
    """``app``: the wall time until the answer started; ``cpu``: the server process's CPU
    time meanwhile (requests are sent one at a time, so it is this request's)."""
    for part in response.headers.get("server-timing", "").split(","):
        name, _, rest = part.strip().partition(";dur=")
        if name == metric:
            return float(rest)
    raise SystemExit(f"no Server-Timing {metric} on {response.request.url}")


def pages_for(info: dict) -> dict[str, str]:
    first = info["first_pending_job"]
    tenant = info["tenant_names"][0]
    return {
        "overview": "/ui/",
        "tenants": "/ui/tenants",
        "tenant": f"/ui/tenants/{tenant}",
        "queue": "/ui/queue",
        "queue filtered": f"/ui/queue?kind=train&gpu_type=H800&tenant={tenant}",
        "jobs": "/ui/jobs",
        "job": f"/ui/jobs/{first}",
        "nodes": "/ui/nodes",
        "usage": "/ui/usage",
        "usage 30 d": "/ui/usage?days=30",
    }


def time_pages(url: str, pages: dict[str, str], requests: int) -> dict[str, dict]:
    out = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        sign_in(client, TOKEN)
        for name, path in pages.items():
            first = client.get(path)
            if first.status_code != 200:
                raise SystemExit(f"{path}: {first.status_code} {first.text[:300]}")
            times, cpu = [], []
            for _ in range(requests):
                r = client.get(path)
                times.append(server_timing(r))
                cpu.append(server_timing(r, "cpu"))
            out[name] = {
                "path": path,
                "first_ms": round(server_timing(first), 1),
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(percentile(times, 0.95), 1),
                "cpu_p50_ms": round(statistics.median(cpu), 1),
                "cpu_p95_ms": round(percentile(cpu, 0.95), 1),
                "html_bytes": len(first.content),
            }
    return out


def browse(
    url: str,
    pages: dict[str, str],
    token: str,
    screenshots: Path | None,
    forbidden: list[str],
    loads: int = 1,
) -> dict[str, dict]:
    """Each page loaded cold ``loads`` times in headless Chromium: the bytes the first load
    transferred and the time to its last chart (median and slowest load). Also checks
    that no response of a first load contains any of ``forbidden``."""
    from playwright.sync_api import sync_playwright

    out: dict[str, dict] = {}
    leaks: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            signin = browser.new_context(viewport={"width": 1440, "height": 900})
            page = signin.new_page()
            page.goto(f"{url}/ui/signin")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/ui/")
            cookies = signin.cookies()
            signin.close()
            for name, path in pages.items():
                drawn, transferred, warm = [], 0, 0.0
                for attempt in range(loads):
                    # A fresh context per load: an empty cache, as a first visit.
                    context = browser.new_context(viewport={"width": 1440, "height": 900})
                    context.add_cookies(cookies)
                    tab = context.new_page()
                    responses: list = []

                    def keep(response, into: list = responses) -> None:  # type: ignore[no-untyped-def]
                        into.append(response)

                    tab.on("response", keep)
                    tab.goto(f"{url}{path}", wait_until="load")
                    tab.wait_for_function(
                        "() => window.mosuChartsDrawn !== undefined", timeout=30_000
                    )
                    drawn.append(tab.evaluate("window.mosuChartsDrawn"))
                    if attempt == 0:
                        transferred = _transferred(responses)
                        leaks += _leaks(path, tab, responses, forbidden)
                        if screenshots is not None:
                            screenshots.mkdir(parents=True, exist_ok=True)
                            slug = name.replace(" ", "-")
                            tab.screenshot(path=str(screenshots / f"{slug}.png"))
                    if attempt == loads - 1:
                        # Again in the same browser: scripts and styles from its cache, as
                        # when moving between pages.
                        tab.goto(f"{url}{path}", wait_until="load")
                        tab.wait_for_function(
                            "() => window.mosuChartsDrawn !== undefined", timeout=30_000
                        )
                        warm = tab.evaluate("window.mosuChartsDrawn")
                    context.close()
                out[name] = {
                    "transferred_bytes": transferred,
                    "load_to_last_chart_ms": round(statistics.median(drawn)),
                    "load_to_last_chart_max_ms": round(max(drawn)),
                    "warm_load_to_last_chart_ms": round(warm),
                }
        finally:
            browser.close()
    if leaks:
        raise SystemExit(f"another tenant's job names leaked: {leaks[:5]}")
    return out


def _transferred(responses: list) -> int:
    """Compressed bodies and headers received (the page's event stream left out)."""
    total = 0
    for r in responses:
        if "/events/stream" not in r.url:
            sizes = r.request.sizes()
            total += sizes["responseBodySize"] + sizes["responseHeadersSize"]
    return total


def _leaks(path: str, tab, responses: list, forbidden: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    if not forbidden:
        return []
    found = [f"{path}: DOM" for word in forbidden if word in tab.content()]
    for r in responses:
        if "/events/stream" not in r.url:
            body = r.body()
            found += [f"{path}: {r.url}" for word in forbidden if word.encode() in body]
    return found


def read_history_cpu_s(db_url: str) -> float:
    """CPU seconds to read the history once (what a server spends once a minute)."""
    from mosu.service.db.session import make_engine, session_factory
    from mosu.web.history_cache import read

    engine = make_engine(db_url)
    try:
        began = time.process_time()
        read(session_factory(engine), time.time())
        return round(time.process_time() - began, 2)
    finally:
        engine.dispose()


def run(args: argparse.Namespace) -> dict:
    size = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="mosu-bench-dash-"))
    db_url = args.database_url or f"sqlite:///{work / 'mosu.db'}"
    began = time.perf_counter()
    info = seed(db_url, size)
    seeded_s = time.perf_counter() - began
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as conn:
        info["first_pending_job"] = conn.execute(
            text("SELECT min(id) FROM jobs WHERE state = 'pending'")
        ).scalar_one()
        tenant = info["tenant_names"][0]
    engine.dispose()
    history_cpu_s = read_history_cpu_s(db_url)
    load_before = os.getloadavg()
    server = Server(db_url, work)
    try:
        pages = pages_for(info)
        timings = time_pages(server.url, pages, args.requests)
        # A tenant token, issued through the API like any other.
        r = httpx.post(
            f"{server.url}/v1/tenants/{tenant}/tokens",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        tenant_token = r.json()["token"]
        browser: dict[str, dict] = {}
        tenant_pages: dict[str, dict] = {}
        if shutil.which(CHROMIUM) or Path(CHROMIUM).exists():
            browser = browse(server.url, pages, TOKEN, args.screenshots, [], loads=args.loads)
            other = info["tenant_names"][1]
            tenant_view = {k: v for k, v in pages.items() if k in ("overview", "queue", "jobs")}
            tenant_view["usage"] = "/ui/usage"
            tenant_pages = browse(server.url, tenant_view, tenant_token, None, [f"{other}-"])
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    rows = {name: {**timings[name], **browser.get(name, {})} for name in timings}
    heaviest = max(rows, key=lambda n: rows[n].get("load_to_last_chart_ms", 0)) if browser else None
    return {
        "size": {k: v for k, v in info.items() if k not in ("tenant_names",)},
        "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
        "history_read_cpu_s": history_cpu_s,
        "seeded_s": round(seeded_s, 1),
        "database": "postgresql" if db_url.startswith("postgresql") else "sqlite",
        "requests_per_page": args.requests,
        "pages": rows,
        "tenant_pages": tenant_pages,
        "browser": CHROMIUM if browser else "not found: browser figures skipped",
        "heaviest_page": heaviest,
        "goals": {
            "p95_ms": 100,
            "load_to_last_chart_ms": 1000,
            "transferred_bytes": 500_000,
        },
        "max_p95_ms": max(r["p95_ms"] for r in rows.values()),
        "max_cpu_p95_ms": max(r["cpu_p95_ms"] for r in rows.values()),
        "max_transferred_bytes": max(
            (r.get("transferred_bytes", 0) for r in rows.values()), default=None
        ),
        "max_load_to_last_chart_ms": max(
            (r.get("load_to_last_chart_ms", 0) for r in rows.values()), default=None
        ),
        "slowest_load_to_last_chart_ms": max(
            (r.get("load_to_last_chart_max_ms", 0) for r in rows.values()), default=None
        ),
        "max_warm_load_to_last_chart_ms": max(
            (r.get("warm_load_to_last_chart_ms", 0) for r in rows.values()), default=None
        ),
    }


def table(result: dict) -> str:
    head = (
        f"{'page':16} {'first ms':>9} {'p50 ms':>8} {'p95 ms':>8} {'cpu p50':>8} "
        f"{'cpu p95':>8} {'KB sent':>8} {'chart ms':>9} {'max ms':>7} {'warm ms':>8}"
    )
    lines = [head]
    for name, r in result["pages"].items():
        kb = r.get("transferred_bytes")
        lines.append(
            f"{name:16} {r['first_ms']:9.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
            f"{r['cpu_p50_ms']:8.1f} {r['cpu_p95_ms']:8.1f} "
            f"{(kb or 0) / 1000:8.1f} {r.get('load_to_last_chart_ms', float('nan')):9.0f} "
            f"{r.get('load_to_last_chart_max_ms', float('nan')):7.0f} "
            f"{r.get('warm_load_to_last_chart_ms', float('nan')):8.0f}"
        )
    for name, r in result["tenant_pages"].items():
        lines.append(
            f"{'tenant ' + name:16} {'':9} {'':8} {'':8} {'':8} {'':8} "
            f"{r['transferred_bytes'] / 1000:8.1f} {r['load_to_last_chart_ms']:9.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small store (CI)")
    parser.add_argument("--requests", type=int, default=None, help="loads per page timed")
    parser.add_argument("--database-url", default=None, help="seed this database (empty)")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="seed a fresh database on MOSU_TEST_POSTGRES_URL's server",
    )
    parser.add_argument("--screenshots", type=Path, default=None, help="save PNGs here")
    parser.add_argument("--keep", action="store_true", help="keep the seeded store")
    parser.add_argument("--loads", type=int, default=None, help="cold browser loads per page")
    args = parser.parse_args()
    if args.requests is None:
        args.requests = 10 if args.quick else 40
    if args.loads is None:
        args.loads = 2 if args.quick else 3
    if args.postgres:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        base = os.environ["MOSU_TEST_POSTGRES_URL"]
        url = make_url(base).set(drivername="postgresql+psycopg")
        name = f"mosu_bench_dash_{uuid.uuid4().hex[:10]}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        args.database_url = url.set(database=name).render_as_string(hide_password=False)
        try:
            result = run(args)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    else:
        result = run(args)
    print(table(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
