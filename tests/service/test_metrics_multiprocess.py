"""With ``PROMETHEUS_MULTIPROC_DIR``, a scrape of one process sums what every process
counted (several server processes on one store)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

COUNT = """
from mosu.service.metrics import ProcessMetrics
m = ProcessMetrics()
m.requests.labels(method="POST", route="/v1/jobs", status="201").inc({n})
m.observe_phases({{"engine": 0.2}})
"""

SCRAPE = """
import sys
from mosu.service.metrics import ProcessMetrics, exposition
sys.stdout.write(exposition(ProcessMetrics(), lambda: []).decode())
"""


def _python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_scrape_sums_every_process(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    _python(COUNT.format(n=3), env)
    _python(COUNT.format(n=4), env)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(_python(SCRAPE, env))
        for s in fam.samples
    }
    posts = (("method", "POST"), ("route", "/v1/jobs"), ("status", "201"))
    assert samples[("mosu_http_requests_total", posts)] == 7
    assert samples[("mosu_scheduler_phase_seconds_count", (("phase", "engine"),))] == 2
