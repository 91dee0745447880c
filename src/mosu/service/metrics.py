"""Prometheus metrics in the plain text exposition format (version 0.0.4).

Two kinds: what this process counts as it goes (API requests and their latency,
scheduling cycles: ``Counter`` and ``Histogram`` below, thread-safe), and what the store
says at scrape time (jobs by state, pending by reason, GPUs allocated), read by
``mosu.service.services.metrics``.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CYCLE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    pairs = (*labels, extra) if extra is not None else labels
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> str:
    """One metric family: HELP, TYPE and its samples."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples]
    return "\n".join(lines) + "\n"


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._lock = threading.Lock()
        self._values: dict[Labels, float] = defaultdict(float)

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] += amount

    def value(self, labels: Labels = ()) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> str:
        with self._lock:
            samples = sorted(self._values.items())
        return family(self.name, "counter", self.help, samples)


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help = name, help_text
        self.buckets = buckets
        self._lock = threading.Lock()
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = defaultdict(float)

    def observe(self, value: float, labels: Labels = ()) -> None:
        with self._lock:
            counts = self._counts.get(labels)
            if counts is None:
                counts = self._counts[labels] = [0] * (len(self.buckets) + 1)
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
            self._sums[labels] += value

    def render(self) -> str:
        with self._lock:
            rows = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, counts, total in rows:
            running = 0
            for bound, n in zip((*self.buckets, float("inf")), counts, strict=True):
                running += n
                le = ("le", _number(bound))
                lines.append(f"{self.name}_bucket{_labels(labels, le)} {running}")
            lines.append(f"{self.name}_sum{_labels(labels)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(labels)} {running}")
        return "\n".join(lines) + "\n"


class ApiMetrics:
    """What the HTTP layer counts: requests by route template, method and status, and
    their latency by route template and method."""

    def __init__(self) -> None:
        self.requests = Counter("mosu_http_requests_total", "HTTP requests answered.")
        self.latency = Histogram(
            "mosu_http_request_duration_seconds",
            "Time from a request's arrival to its last response byte.",
            LATENCY_BUCKETS,
        )

    def render(self) -> str:
        return self.requests.render() + self.latency.render()


class MetricsMiddleware:
    """Plain ASGI middleware (a ``BaseHTTPMiddleware`` would add a task per request).
    Routes are labelled by template (``/v1/jobs/{job_id}``), so label sets stay bounded;
    a request no route matched is ``unmatched``. A stream is timed until it ends."""

    def __init__(self, app: Any, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            labels = (("method", method), ("route", path))
            self.metrics.requests.inc((*labels, ("status", str(status))))
            self.metrics.latency.observe(time.perf_counter() - t0, labels)
