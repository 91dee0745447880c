"""A replica's environment, built from nothing: the one place it is made, for the local
and the Ray executor alike.

It holds exactly: the job's own ``env``; ``PATH`` and ``LANG`` (defaults the job's env
may override); ``HOME`` (the tenant's home in the sandbox); and the contract below,
which the job cannot override. Nothing of the server's environment is copied (no
``MOSU_TOKEN``, no database URL, no ``RAY_*``).

| variable | value |
|---|---|
| the vendor's visibility variable | the engine's GPU indices on the node (empty: no GPU): |
| | ``CUDA_VISIBLE_DEVICES`` (NVIDIA), ``ASCEND_RT_VISIBLE_DEVICES`` (Huawei), |
| | ``HIP_VISIBLE_DEVICES`` (AMD), ``MLU_VISIBLE_DEVICES`` (Cambricon); never another's |
| ``MOSU_DEVICES``, ``MOSU_ACCELERATOR_VENDOR`` | the same indices, and whose devices they are |
| ``MOSU_GPU_FRACTION`` | the share of its one GPU, only when below 1 |
| ``MOSU_JOB_ID``, ``MOSU_ATTEMPT`` | which job, which attempt |
| ``MOSU_REPLICA``, ``MOSU_NUM_REPLICAS`` | which replica, of how many |
| ``MOSU_NODE``, ``MOSU_GPUS_PER_REPLICA`` | the node's name, this replica's GPU count |
| ``MOSU_INSTANCE`` | the store that started it (with the ids above: the replica's mark) |
| ``MOSU_CHECKPOINT_FILE`` | a file to write or touch after each checkpoint saved |
| | (``mosu.agent.checkpoints``) |
| ``MASTER_ADDR``, ``MASTER_PORT`` | replica 0's node address and a port free there |
| ``RANK``, ``NODE_RANK`` / ``WORLD_SIZE``, ``NNODES`` | the replica index / the gang size |
| ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` | ``0``, ``1`` (one torch "node" per replica) |

The distributed variables are the same for every vendor: ``torch.distributed``'s
``env://`` rendezvous reads them whatever the backend (NCCL, HCCL, RCCL, CNCL). A job's
``env`` may set no variable that selects devices for any runtime
(``DEVICE_SELECTION_VARIABLES``), so a replica never sees another vendor's variable.

Stdlib only: the supervisor imports this and starts without site-packages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from mosu.core.accelerators import (
    CONTRACTS,
    DEVICE_SELECTION_VARIABLES,
    MOSU_ACCELERATOR_VENDOR,
    MOSU_DEVICES,
    Vendor,
    visibility_env,
)
from mosu.core.models import GPU_MILLI

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_LANG = "C.UTF-8"

CONTRACT_KEYS = frozenset(
    {
        "HOME",
        MOSU_DEVICES,
        MOSU_ACCELERATOR_VENDOR,
        "MOSU_GPU_FRACTION",
        "MOSU_JOB_ID",
        "MOSU_ATTEMPT",
        "MOSU_REPLICA",
        "MOSU_NUM_REPLICAS",
        "MOSU_NODE",
        "MOSU_GPUS_PER_REPLICA",
        "MOSU_INSTANCE",
        "MOSU_CHECKPOINT_FILE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "RANK",
        "NODE_RANK",
        "WORLD_SIZE",
        "NNODES",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
    }
)
"""Set by mosu for every replica whatever its vendor (with ``contract_keys``, the
vendor's visibility variable too); a job's own ``env`` cannot override them."""

RESERVED_KEYS = CONTRACT_KEYS | DEVICE_SELECTION_VARIABLES
"""What a job's ``env`` may not set: the contract and every device-selecting variable."""


def contract_keys(vendor: Vendor | str) -> frozenset[str]:
    """Every variable mosu sets for a replica on ``vendor``'s devices."""
    return CONTRACT_KEYS | frozenset(CONTRACTS[Vendor(vendor)].variables)


@dataclass(frozen=True, slots=True)
class ReplicaContract:
    """What mosu tells one replica about itself and its gang."""

    instance: str
    job_id: int
    attempt: int
    replica: int
    num_replicas: int
    node: str
    gpu_indices: tuple[int, ...]
    gpu_milli: int
    """The share of each GPU in thousandths (``GPU_MILLI``: whole devices)."""
    master_addr: str
    master_port: int
    vendor: str = Vendor.NVIDIA.value
    """Whose devices ``gpu_indices`` are (a contract written before vendors: NVIDIA)."""

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ReplicaContract:
        fields = dict(data)
        fields["gpu_indices"] = tuple(int(g) for g in fields["gpu_indices"])  # type: ignore[attr-defined]
        if "gpu_fraction" in fields:  # written before shares were kept in thousandths
            fields["gpu_milli"] = round(float(fields.pop("gpu_fraction")) * GPU_MILLI)  # type: ignore[arg-type]
        fields["job_id"] = int(fields["job_id"])  # type: ignore[call-overload]
        return cls(**fields)  # type: ignore[arg-type]

    def markers(self) -> list[str]:
        """``NAME=value`` entries that mark this replica's processes."""
        return marker_entries(self.instance, self.job_id, self.attempt, self.replica)


@dataclass(frozen=True, slots=True)
class ReplicaSlot:
    """Where one replica of a gang runs: what each executor knows of its placement."""

    replica: int
    node: str
    gpu_indices: tuple[int, ...]
    gpu_milli: int
    vendor: str = Vendor.NVIDIA.value


def gang_contracts(
    *,
    instance: str,
    job_id: int,
    attempt: int,
    slots: Sequence[ReplicaSlot],
    master_addr: str,
    master_port: int,
) -> list[ReplicaContract]:
    """The contract of every replica of one attempt, the same way for every executor; an
    executor only says where replica 0 listens (``master_addr``, ``master_port``)."""
    return [
        ReplicaContract(
            instance=instance,
            job_id=job_id,
            attempt=attempt,
            replica=s.replica,
            num_replicas=len(slots),
            node=s.node,
            gpu_indices=tuple(s.gpu_indices),
            gpu_milli=s.gpu_milli,
            master_addr=master_addr,
            master_port=master_port,
            vendor=s.vendor,
        )
        for s in slots
    ]


def marker_entries(instance: str, job_id: int, attempt: int, replica: int) -> list[str]:
    return [
        f"MOSU_INSTANCE={instance}",
        f"MOSU_JOB_ID={job_id}",
        f"MOSU_ATTEMPT={attempt}",
        f"MOSU_REPLICA={replica}",
    ]


def build_env(
    contract: ReplicaContract,
    *,
    job_env: Mapping[str, str],
    home: str,
    checkpoint_file: str = "",
) -> dict[str, str]:
    """The complete environment of one replica (``checkpoint_file``: where it reports
    its checkpoints, ``mosu.agent.checkpoints.checkpoint_file``)."""
    env = {"PATH": DEFAULT_PATH, "LANG": DEFAULT_LANG}
    env.update({k: v for k, v in job_env.items() if k not in RESERVED_KEYS})
    c = contract
    env.update(visibility_env(Vendor(c.vendor), c.gpu_indices))
    env.update(
        HOME=home,
        MOSU_JOB_ID=str(c.job_id),
        MOSU_ATTEMPT=str(c.attempt),
        MOSU_REPLICA=str(c.replica),
        MOSU_NUM_REPLICAS=str(c.num_replicas),
        MOSU_NODE=c.node,
        MOSU_GPUS_PER_REPLICA=str(len(c.gpu_indices)),
        MOSU_INSTANCE=c.instance,
        MASTER_ADDR=c.master_addr,
        MASTER_PORT=str(c.master_port),
        RANK=str(c.replica),
        NODE_RANK=str(c.replica),
        WORLD_SIZE=str(c.num_replicas),
        NNODES=str(c.num_replicas),
        LOCAL_RANK="0",
        LOCAL_WORLD_SIZE="1",
    )
    if checkpoint_file:
        env["MOSU_CHECKPOINT_FILE"] = checkpoint_file
    if c.gpu_indices and c.gpu_milli < GPU_MILLI:
        env["MOSU_GPU_FRACTION"] = f"{c.gpu_milli / GPU_MILLI:g}"
    return env
