"""Reasons are typed from the store to the API: the row holds the enum, the OpenAPI
document lists every value, and the service never writes a bare string."""

from __future__ import annotations

from typing import Any

import pytest

from mosu.core.reasons import PendingReason, StopReason
from mosu.service.db.rows import JobRow
from tests.service.conftest import seed, submit


def _schema(document: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]


def _enum_values(document: dict[str, Any], prop: dict[str, Any]) -> set[str]:
    """Every enum value a property may take (through ``anyOf`` and ``$ref``)."""
    out: set[str] = set()
    for member in prop.get("anyOf", [prop]):
        if "$ref" in member:
            out |= set(_schema(document, member)["enum"])
    return out


@pytest.mark.parametrize(
    ("model", "field", "values"),
    [
        ("JobOut", "pending_reason", {r.value for r in PendingReason}),
        ("JobOut", "stop_requested", {r.value for r in StopReason}),
        ("QueueEntry", "reason", {r.value for r in PendingReason}),
        ("JobWhy", "reason", {r.value for r in PendingReason} | {r.value for r in StopReason}),
    ],
)
def test_the_api_document_lists_every_reason(api, model, field, values) -> None:
    document = api.app.openapi()
    prop = document["components"]["schemas"][model]["properties"][field]
    assert _enum_values(document, prop) == values
    assert "waiting-for-preempted" in _enum_values(document, prop) or field == "stop_requested"


def test_a_job_waiting_for_preempted_capacity_reads_back_as_the_enum(api, platform, executor):
    tokens = seed(api)
    big = submit(api, tokens["b"], gpus=8)
    platform.loop.run_once()
    small = submit(api, tokens["a"], gpus=4)
    platform.loop.run_once()
    with platform.sessions() as s:
        victim, waiting = s.get(JobRow, big["id"]), s.get(JobRow, small["id"])
        assert victim is not None and waiting is not None
        assert victim.stop_reason is StopReason.PREEMPT
        assert waiting.pending_reason is PendingReason.WAITING_FOR_PREEMPTED
    got = api.get(f"/v1/jobs/{small['id']}").json()
    assert got["pending_reason"] == "waiting-for-preempted"


@pytest.mark.parametrize(
    ("reason", "requeues"),
    [
        (StopReason.PREEMPT, True),
        (StopReason.NODE_DOWN, True),
        (StopReason.DRAIN, True),
        (StopReason.CANCEL, False),
        (StopReason.MAX_RUNTIME, False),
    ],
)
def test_a_stop_not_of_the_jobs_doing_requeues_it(reason: StopReason, requeues: bool) -> None:
    assert reason.requeues is requeues
