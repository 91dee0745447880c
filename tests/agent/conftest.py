"""Fixtures for executor tests with real supervisors and real processes.

Replicas run as the tenant's own Unix user when the tests run as root (as CI does);
their homes live in a shared directory that user can reach. Every test gets a store
instance of its own, so cgroups and markers never meet another test's, and every
supervisor a test started is gone when it ends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mosu.agent.executors.local import LocalExecutor
from mosu.agent.sandbox import SandboxConfig
from mosu.core.api import JobLaunch, ReplicaLaunch
from tests.jobs import JOB_PYTHON, shared_dir, stop_leftover_replicas

ROOT = os.geteuid() == 0


@pytest.fixture
def work() -> Iterator[Path]:
    """Where replicas may write (sticky, world-writable); tenants' homes live in it."""
    with shared_dir() as path:
        yield path


@pytest.fixture
def box(work: Path) -> SandboxConfig:
    mode = "users" if ROOT else "none"
    return SandboxConfig(mode=mode, home_root=str(work / "homes"))


@pytest.fixture
def instance() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_executor(
    box: SandboxConfig, instance: str, tmp_path: Path
) -> Iterator[Callable[..., LocalExecutor]]:
    made: list[LocalExecutor] = []

    def make(cgroup: str = "auto") -> LocalExecutor:
        ex = LocalExecutor(instance=instance, sandbox=box, cgroup=cgroup)
        made.append(ex)
        return ex

    yield make
    stop_leftover_replicas(tmp_path)
    for ex in made:
        ex.shutdown(grace_s=0.0)


def launch(
    tmp: Path,
    code: str,
    *,
    job_id: int = 1,
    attempt: int = 1,
    tenant: str = "acme",
    gpus: tuple[tuple[int, ...], ...] = ((0, 1),),
    milli: int = 1000,
    env: dict[str, str] | None = None,
    workdir: str | None = None,
    vendor: str = "nvidia",
) -> JobLaunch:
    """One attempt running ``code`` with the job interpreter, one replica per ``gpus``."""
    return JobLaunch(
        job_id=job_id,
        attempt=attempt,
        tenant=tenant,
        argv=[JOB_PYTHON, "-c", code],
        env={"GREETING": "hi"} if env is None else env,
        workdir=workdir,
        replicas=[
            ReplicaLaunch(
                replica=k,
                node="n0",
                gpu_indices=list(g),
                gpu_milli=milli,
                vendor=vendor,
                log_path=str(tmp / "logs" / str(job_id) / f"replica-{k}.log"),
                run_dir=str(tmp / "logs" / str(job_id) / "run" / f"{attempt}.{k}"),
            )
            for k, g in enumerate(gpus)
        ],
    )
