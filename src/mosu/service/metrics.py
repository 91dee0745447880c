"""Prometheus metrics through ``prometheus_client``.

Two kinds: what a process counts as it goes (API requests and their latency, scheduling
cycles and their phases: ``Counter`` and ``Histogram`` in ``ProcessMetrics``), and what
the store says at scrape time (jobs by state, pending by reason, queue depth per tenant,
GPUs allocated; ``mosu.service.services.metrics``), a collector asked at each scrape.

With ``PROMETHEUS_MULTIPROC_DIR`` set (several server processes on one store), the
counted metrics live in that directory's files and a scrape of any process sums every
process's (``MultiProcessCollector``); without it each app keeps them in its own
registry (tests build several apps in one process).
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import prometheus_client
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CYCLE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The ``*_created`` timestamps would double the samples of every counter and histogram
# for a value no dashboard of ours reads.
prometheus_client.disable_created_metrics()


def without_framework_telemetry() -> dict[str, Any]:
    """``FastAPI(**without_framework_telemetry())``: no OpenTelemetry spans, metrics or logs
    from the framework itself. What mosu reports is here, through Prometheus; the
    framework's own would go to whatever OpenTelemetry providers the process happens to
    have, and looking them up is paid on every request even when there are none. Versions
    of the framework without it take nothing."""
    if "telemetry" not in inspect.signature(FastAPI).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


class ProcessMetrics:
    """What this process counts: requests by route template, method and status, their
    latency, and each scheduling cycle's duration and phases."""

    def __init__(self) -> None:
        # In multiprocess mode the values live in files, the registry only names them.
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "mosu_http_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "mosu_http_request_duration_seconds",
            "Time from a request's arrival to its last response byte.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.cycle_seconds = Histogram(
            "mosu_scheduler_cycle_seconds",
            "Time one scheduling cycle took to decide and record its decisions.",
            buckets=CYCLE_BUCKETS,
            registry=reg,
        )
        self.phase_seconds = Histogram(
            "mosu_scheduler_phase_seconds",
            "Time each phase of a scheduling cycle took: load (the snapshot), engine, "
            "apply (the decisions), launch (starts and stop signals).",
            ["phase"],
            buckets=CYCLE_BUCKETS,
            registry=reg,
        )

    def observe_cycle(self, seconds: float) -> None:
        self.cycle_seconds.observe(seconds)

    def observe_phases(self, phases: Mapping[str, float]) -> None:
        for phase, seconds in phases.items():
            self.phase_seconds.labels(phase=phase).observe(seconds)


class ScrapeCollector(Collector):
    """Families computed when scraped (the store's counts, whether this server leads)."""

    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families()


def exposition(process: ProcessMetrics, at_scrape: Callable[[], Iterable[Metric]]) -> bytes:
    """The text a scrape returns: this process's (or with ``PROMETHEUS_MULTIPROC_DIR``,
    every process's) counted metrics, then the families read at scrape time."""
    registry = CollectorRegistry()
    where = multiprocess_dir()
    if where is not None:
        MultiProcessCollector(registry, path=where)
    else:
        registry.register(_Forward(process.registry))
    registry.register(ScrapeCollector(at_scrape))
    return generate_latest(registry)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class MetricsMiddleware:
    """Plain ASGI middleware (a ``BaseHTTPMiddleware`` would add a task per request).
    Routes are labelled by template (``/v1/jobs/{job_id}``), so label sets stay bounded;
    a request no route matched is ``unmatched``. A stream is timed until it ends."""

    def __init__(self, app: Any, metrics: ProcessMetrics) -> None:
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
            self.metrics.requests.labels(method=method, route=path, status=str(status)).inc()
            self.metrics.latency.labels(method=method, route=path).observe(time.perf_counter() - t0)
