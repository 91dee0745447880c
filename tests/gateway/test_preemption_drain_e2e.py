"""A service's borrowed replicas are reclaimed by another tenant's guaranteed training
job like any borrowed work: the preempted replicas leave routing and finish what they
serve, so steady non-streaming traffic sees no failed request."""

from __future__ import annotations

import threading
import time

import openai
import pytest

from mosu.client.services import ServicesApi
from mosu.core.api import JobSpec, JobState
from tests.e2e.conftest import wait_for
from tests.gateway.conftest import Platform, mock_service

pytestmark = pytest.mark.timeout(240)


def test_reclaimed_replicas_drain_without_failed_requests(platform: Platform) -> None:
    # 4 GPUs: acme is guaranteed 2 (limit 4), beta 2. Four replicas: two borrowed.
    spec = mock_service(
        "wide", "acme-wide", "--ttft", "0.1", "--max-tokens", "4", replicas={"min": 4, "max": 4}
    )
    with platform.client("acme") as c:
        ServicesApi(c).create(spec)
    platform.wait_ready("acme", "wide", 4, timeout=60)
    key = platform.key("acme", "acme-wide")
    failures: list[str] = []
    served = [0]
    done = threading.Event()
    with openai.OpenAI(base_url=platform.base_url, api_key=key, max_retries=0) as client:

        def load() -> None:
            while not done.is_set():
                try:
                    client.completions.create(model="acme-wide", prompt="steady")
                    served[0] += 1
                except Exception as exc:
                    failures.append(repr(exc))

        workers = [threading.Thread(target=load) for _ in range(6)]
        for w in workers:
            w.start()
        try:
            time.sleep(1.0)
            with platform.client("beta") as beta:
                train = beta.submit(
                    JobSpec(name="train", gpus=2, command=["sleep", "60"], kind="train")
                )
                wait_for(
                    lambda: beta.get_job(train.id).state == JobState.RUNNING,
                    timeout=40,
                    what="beta's training job running on reclaimed GPUs",
                )
            time.sleep(1.0)
        finally:
            done.set()
            for w in workers:
                w.join(30)
    assert failures == []
    assert served[0] > 20
    with platform.client("acme") as c:
        shown = ServicesApi(c).show("wide")
        assert shown.ready == 2
        preempted = [
            r.job_id
            for r in shown.replicas
            if "preempted" in [e.to_state for e in c.job_events(r.job_id) if e.kind == "state"]
        ]
    assert len(preempted) == 2
