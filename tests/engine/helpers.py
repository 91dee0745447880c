"""Small builders for table-style engine tests."""

from __future__ import annotations

from mosu.core.models import GPU_MILLI, Job, Node, Shape, Topology


def node(
    name: str,
    gpus: int = 8,
    *,
    gpu_type: str = "A100",
    rack: str = "r0",
    cpu: int = 96_000,
    mem: int = 1_048_576,
) -> Node:
    return Node(name=name, gpu_type=gpu_type, gpus=gpus, cpu_milli=cpu, mem_mib=mem, rack=rack)


def job(
    job_id: str,
    gpus: float = 1,
    *,
    replicas: int = 1,
    tenant: str = "t",
    t: float = 0.0,
    priority: int = 0,
    gpu_types: tuple[str, ...] = (),
    topology: Topology = Topology.NONE,
    cpu: int = 0,
    mem: int = 0,
    estimate: float | None = None,
) -> Job:
    if gpus >= 1:
        shape = Shape(gpus=int(gpus), cpu_milli=cpu, mem_mib=mem)
    elif gpus == 0:
        shape = Shape(gpus=0, gpu_milli=0, cpu_milli=cpu, mem_mib=mem)
    else:
        shape = Shape(gpus=1, gpu_milli=round(gpus * GPU_MILLI), cpu_milli=cpu, mem_mib=mem)
    return Job(
        id=job_id,
        tenant=tenant,
        shape=shape,
        replicas=replicas,
        submit_s=t,
        priority=priority,
        gpu_types=gpu_types,
        topology=topology,
        estimate_s=estimate,
    )
