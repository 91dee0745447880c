"""What several benchmarks share: a free local port, a throwaway PostgreSQL database, and
``wrk`` as the load generator (a C client, so the load costs the shared cores little).

Benchmarks run as scripts (``python bench/bench_x.py``), so this directory is on their
import path and ``import benchkit`` finds this module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_database(base: str, prefix: str) -> tuple[str, str, str]:
    """Create ``<prefix>_<random>`` beside ``base``'s database; (admin URL, its name,
    its URL), all with the psycopg driver."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(base).set(drivername="postgresql+psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    admin_url = url.render_as_string(hide_password=False)
    return admin_url, name, url.set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


WRK_SUMMARY = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"non2xx\\": %d, "
    .. "\\"socket_errors\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, \\"max_us\\": %d}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""
"""wrk's summary as one JSON line (``WRK_JSON {...}``) that ``run_wrk`` reads."""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, script: str, seconds: float, connections: int) -> dict[str, float]:
    """Drive ``url`` with wrk (one thread, ``connections`` keep-alive connections) for
    ``seconds`` with the Lua ``script`` (its requests); the count, wall time and latency
    percentiles. A script may end the run sooner by printing ``WRK_DONE`` on a line of
    its own (wrk then stops as on Ctrl-C and still prints its summary). Any non-2xx
    answer or socket error fails the benchmark."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + WRK_SUMMARY)
    try:
        cmd = ["wrk", "-t1", "--timeout", "30s", f"-c{connections}"]
        cmd += [f"-d{max(1, round(seconds))}s", "-s", f.name, url]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            lines = []
            for text in proc.stdout:
                lines.append(text)
                if text.strip() == "WRK_DONE":
                    proc.send_signal(signal.SIGINT)
            if proc.wait(timeout=60) != 0:
                raise SystemExit(f"wrk failed ({proc.returncode}):\n{''.join(lines)}")
        out = "".join(lines)
    finally:
        os.unlink(f.name)
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{out}")
    got = json.loads(line.removeprefix("WRK_JSON "))
    if got["non2xx"] or got["socket_errors"]:
        raise SystemExit(f"wrk saw failures on {url}: {got}")
    return {
        "requests": got["requests"],
        "wall_s": got["duration_us"] / 1e6,
        "p50_ms": got["p50_us"] / 1000,
        "p99_ms": got["p99_us"] / 1000,
        "max_ms": got["max_us"] / 1000,
    }
