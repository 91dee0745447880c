"""A job spec is normalized once: every unit the platform reads after the API edge."""

from __future__ import annotations

import pytest

from mosu.core.api import JobSpec
from mosu.core.models import JobKind, Shape, Topology, requested_gpus
from mosu.core.submission import Submission


@pytest.mark.parametrize(
    ("gpus", "devices", "milli", "written_back"),
    [
        (0.5, 1, 500, 0.5),
        (0.25, 1, 250, 0.25),
        (0.3334, 1, 333, 0.333),
        (0.9999, 1, 1000, 1.0),
        (1, 1, 1000, 1.0),
        (4, 4, 1000, 4.0),
        (0, 0, 0, 0.0),
    ],
)
def test_gpus_become_devices_and_thousandths_and_back(
    gpus: float, devices: int, milli: int, written_back: float
) -> None:
    shape = Shape.of_gpus(gpus)
    assert (shape.gpus, shape.gpu_milli) == (devices, milli)
    assert shape.requested_gpus == requested_gpus(devices, milli) == written_back


def test_a_spec_is_normalized_into_the_units_the_store_engine_and_executors_read() -> None:
    spec = JobSpec(
        name="pretrain",
        kind=JobKind.FINETUNE,
        priority="high",
        replicas=2,
        gpus=4,
        gpu_type=["H800", "A100"],
        cpu=2.5,
        memory="16Gi",
        topology=Topology.SAME_RACK,
        estimate="2h",
        max_runtime="1d",
        checkpoint_every=600,
        checkpoint_signal="SIGUSR1",
        checkpoint_grace="5m",
        command="python3 train.py --lr 0.1",
        env={"LR": "0.1"},
        secrets=["WANDB_KEY"],
        workdir="/work",
    )
    job = Submission.of(spec)
    assert job == Submission(
        name="pretrain",
        kind=JobKind.FINETUNE,
        priority=100,
        replicas=2,
        gpus=4.0,
        shape=Shape(gpus=4, gpu_milli=1000, cpu_milli=2500, mem_mib=16384),
        gpu_types=("H800", "A100"),
        topology=Topology.SAME_RACK,
        estimate_s=7200.0,
        max_runtime_s=86400.0,
        checkpoint_every_s=600.0,
        checkpoint_signal="SIGUSR1",
        checkpoint_grace_s=300.0,
        argv=("/bin/sh", "-c", "python3 train.py --lr 0.1"),
        env={"LR": "0.1"},
        secrets=("WANDB_KEY",),
        workdir="/work",
        spec={},
    )
    assert job.total_gpu_milli == 8000
    # What is stored and shown back is the spec as written.
    assert (job.spec["memory"], job.spec["estimate"], job.spec["priority"]) == (
        "16Gi",
        "2h",
        "high",
    )


def test_a_share_and_a_list_command() -> None:
    job = Submission.of(JobSpec(name="eval", gpus=0.5, command=["python3", "eval.py"]))
    assert (job.shape, job.gpus, job.total_gpu_milli) == (Shape(1, 500), 0.5, 500)
    assert (job.priority, job.argv, job.estimate_s) == (50, ("python3", "eval.py"), None)
