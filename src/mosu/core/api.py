"""Request and response models shared by the API, the HTTP client and the CLI.

Input models (``*Create``, ``*Update``, ``JobSpec``) forbid unknown fields so a
typo is an error, not a silently ignored option; output models ignore extra
fields so an older client keeps working against a newer server.

Nomenclature: a *job* is what a tenant submits (a gang of replicas); a
*replica* is one process of it; an *allocation* is where one replica of a
running job sits (node, GPU indices and the share of each GPU).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mosu.core.models import JobKind, NodeState, Topology

MAX_GPUS_PER_REPLICA = 1024
MAX_REPLICAS = 4096
NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
NAME_RULE = (
    "1 to 63 characters of lowercase letters, digits, '.', '_' and '-', "
    "beginning and ending with a letter or digit"
)
"""``NAME_PATTERN`` in words, for error messages."""
PRIORITY_CLASSES = {"low": 0, "normal": 50, "high": 100}


class InputModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutputModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class JobState(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


ACTIVE_STATES = (JobState.STARTING, JobState.RUNNING)


# ---------------------------------------------------------------- durations and sizes

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_DURATION_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?B?\s*$")
_MEMORY_UNIT_MIB = {
    None: 1,
    "Mi": 1,
    "M": 1,
    "Gi": 1024,
    "G": 1024,
    "Ti": 1024 * 1024,
    "T": 1024 * 1024,
    "Ki": 1 / 1024,
    "K": 1 / 1024,
}


def parse_duration_s(value: Any) -> float | None:
    """``90``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"`` → seconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90, '30m' or '2h'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"{value!r} is not a duration; use e.g. 90, '30m', '2h' or '1d'")
        seconds = float(match.group(1)) * _DURATION_UNIT[match.group(2)]
    if not 0 < seconds <= 366 * 86400:
        raise ValueError("must be more than 0 and at most a year")
    return seconds


def parse_memory_mib(value: Any) -> int:
    """``4096`` (MiB), ``"16Gi"``, ``"512Mi"`` → MiB."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 4096 (MiB) or '16Gi'")
    if isinstance(value, int | float):
        mib = float(value)
    else:
        match = _MEMORY.match(str(value))
        if match is None:
            raise ValueError(f"{value!r} is not a size; use e.g. 4096 (MiB), '512Mi' or '16Gi'")
        mib = float(match.group(1)) * _MEMORY_UNIT_MIB[match.group(2)]
    if not 0 <= mib <= 64 * 1024 * 1024:
        raise ValueError("must be between 0 and 64Ti")
    return round(mib)


# ---------------------------------------------------------------- job spec


class JobSpec(InputModel):
    """What a tenant submits. Sizes are per replica; ``gpus`` below 1 shares one GPU."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    kind: JobKind = JobKind.TRAIN
    priority: int | str = "normal"
    replicas: Annotated[int, Field(ge=1, le=MAX_REPLICAS)] = 1
    gpus: Annotated[float, Field(ge=0, le=MAX_GPUS_PER_REPLICA)] = 1
    gpu_type: str | list[str] | None = None
    cpu: Annotated[float, Field(ge=0, le=4096)] = 0
    memory: int | float | str = 0
    topology: Topology = Topology.NONE
    estimate: float | str | None = None
    max_runtime: float | str | None = None
    checkpoint_every: float | str | None = None
    command: list[str] | str
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: int | str) -> int | str:
        if isinstance(value, str):
            if value not in PRIORITY_CLASSES:
                names = ", ".join(PRIORITY_CLASSES)
                raise ValueError(f"unknown priority class {value!r}; use one of {names} or 0..1000")
            return value
        if not 0 <= value <= 1000:
            raise ValueError("must be between 0 and 1000")
        return value

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, value: float, info: ValidationInfo) -> float:
        if 0 < value < 1 and info.data.get("replicas", 1) > 1:
            raise ValueError("a fractional GPU share is only allowed for a single replica")
        if value > 1 and value != int(value):
            raise ValueError("a fractional GPU count is only allowed below 1 (e.g. 0.5)")
        if 0 < value < 1 and round(value * 1000) < 1:
            raise ValueError("a GPU share must be at least 0.001")
        return value

    @field_validator("gpu_type")
    @classmethod
    def _gpu_type(cls, value: str | list[str] | None) -> str | list[str] | None:
        names = [value] if isinstance(value, str) else (value or [])
        for name in names:
            if not name or len(name) > 64:
                raise ValueError("a GPU type name must be 1 to 64 characters")
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: int | float | str) -> int | float | str:
        parse_memory_mib(value)
        return value

    @field_validator("estimate", "max_runtime", "checkpoint_every")
    @classmethod
    def _duration(cls, value: float | str | None) -> float | str | None:
        parse_duration_s(value)
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        if isinstance(value, list) and (not value or not value[0]):
            raise ValueError("must not be empty")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if key.startswith("MOSU_") or key == "CUDA_VISIBLE_DEVICES":
                raise ValueError(f"{key} is set by mosu and cannot be overridden")
        return value

    # Normalized views used by the service.
    @property
    def priority_value(self) -> int:
        return PRIORITY_CLASSES[self.priority] if isinstance(self.priority, str) else self.priority

    @property
    def gpu_types(self) -> tuple[str, ...]:
        if self.gpu_type is None:
            return ()
        return (self.gpu_type,) if isinstance(self.gpu_type, str) else tuple(self.gpu_type)

    @property
    def memory_mib(self) -> int:
        return parse_memory_mib(self.memory)

    @property
    def argv(self) -> list[str]:
        return ["/bin/sh", "-c", self.command] if isinstance(self.command, str) else self.command


# ---------------------------------------------------------------- tenants and nodes


class QuotaSpec(InputModel):
    guaranteed: Annotated[float, Field(ge=0, le=1_000_000)] = 0
    limit: Annotated[float | None, Field(ge=0, le=1_000_000)] = None

    @model_validator(mode="after")
    def _limit(self) -> QuotaSpec:
        if self.limit is not None and self.limit < self.guaranteed:
            raise ValueError("limit must be at least the guarantee")
        return self


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


CohortName = Annotated[
    Annotated[str, Field(pattern=NAME_PATTERN)] | None,
    BeforeValidator(_blank_is_none),
    Field(
        description="Cohort name (tenants of one cohort lend idle guaranteed GPUs to each "
        "other); null or an empty string means no cohort: the default cohort."
    ),
]
"""A cohort name, spelled like a tenant name; ``None`` (or ``""`` on input) is the
default cohort every tenant without a cohort shares."""


class TenantCreate(InputModel):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    quotas: dict[str, QuotaSpec] = Field(default_factory=dict)
    weight: Annotated[float, Field(gt=0, le=1000)] = 1.0
    cohort: CohortName = None


class TenantUpdate(InputModel):
    """A partial update of a tenant (``PATCH /v1/tenants/{name}``): a field left out is
    kept; ``cohort`` set to null or ``""`` moves the tenant to the default cohort."""

    weight: Annotated[float | None, Field(gt=0, le=1000)] = None
    cohort: CohortName = None

    @property
    def sets_cohort(self) -> bool:
        """Whether the request names a cohort (a name, null or ``""``) at all."""
        return "cohort" in self.model_fields_set


class QuotaUpdate(InputModel):
    quotas: dict[str, QuotaSpec]
    weight: Annotated[float | None, Field(gt=0, le=1000)] = None


class Quota(OutputModel):
    gpu_type: str
    guaranteed: float
    limit: float | None


class TenantOut(OutputModel):
    name: str
    weight: float
    cohort: str | None = None
    """``None``: the default cohort."""
    quotas: list[Quota]
    allocated: dict[str, float] = Field(default_factory=dict)
    """GPUs held right now, per GPU type."""
    created_at: datetime


class TenantCreated(OutputModel):
    tenant: TenantOut
    token: str


class TokenOut(OutputModel):
    token: str


class NodeCreate(InputModel):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    gpu_type: Annotated[str, Field(min_length=1, max_length=64)]
    gpus: Annotated[int, Field(ge=0, le=1024)]
    cpu: Annotated[float, Field(ge=0, le=65536)] = 0
    memory: int | str = 0
    gpu_memory: int | str = 0
    topology: Annotated[str, Field(max_length=255)] = ""
    """``zone/rack/node`` path; empty puts the node in zone-0/rack-0."""

    @field_validator("memory", "gpu_memory")
    @classmethod
    def _memory(cls, value: int | str) -> int | str:
        parse_memory_mib(value)
        return value


class NodeOut(OutputModel):
    name: str
    gpu_type: str
    gpus: int
    cpu: float
    memory_mib: int
    zone: str
    rack: str
    state: NodeState
    allocated_gpus: float
    """GPUs in use (fractions summed)."""
    sandbox: str | None = None
    """How replicas run there, as its executor reports it: ``users`` (a Unix user per
    tenant), ``bwrap`` (a user and mount namespace), ``none`` (as the server's user);
    None while unknown."""


class GpuTypeSummary(OutputModel):
    gpu_type: str
    nodes: int
    gpus: int
    allocated: float
    free: float


class ClusterOut(OutputModel):
    gpu_types: list[GpuTypeSummary]
    jobs_pending: int
    jobs_running: int


# ---------------------------------------------------------------- jobs


class AllocationOut(OutputModel):
    replica: int
    node: str
    gpu_indices: list[int]
    gpu_fraction: float
    pid: int | None = None


class JobOut(OutputModel):
    id: int
    name: str
    tenant: str
    kind: JobKind
    state: JobState
    priority: int
    replicas: int
    gpus: float
    gpu_types: list[str]
    submitted_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    exit_code: int | None = None
    message: str = ""
    stop_requested: str | None = None
    pending_reason: str | None = None
    pending_message: str | None = None
    estimated_start: datetime | None = None
    allocations: list[AllocationOut] = Field(default_factory=list)
    spec: dict[str, Any] = Field(default_factory=dict)


class JobList(OutputModel):
    jobs: list[JobOut]


class JobWhy(OutputModel):
    id: int
    state: JobState
    reason: str | None
    sentence: str
    position: int | None = None
    estimated_start: datetime | None = None


class EventOut(OutputModel):
    id: int
    at: datetime
    job_id: int | None
    tenant: str | None
    kind: str
    from_state: str | None = None
    to_state: str | None = None
    reason: str | None = None
    message: str = ""


class EventList(OutputModel):
    events: list[EventOut]


class LogChunk(OutputModel):
    job_id: int
    replica: int
    offset: int
    next_offset: int
    data: str
    finished: bool


class QueueEntry(OutputModel):
    position: int | None
    job_id: int
    name: str
    tenant: str
    gpus: float
    replicas: int
    priority: int
    submitted_at: datetime
    reason: str | None
    message: str | None
    estimated_start: datetime | None


class QueueOut(OutputModel):
    entries: list[QueueEntry]


class UsageRecord(OutputModel):
    tenant: str
    gpu_type: str
    day: str
    gpu_seconds: float


class UsageOut(OutputModel):
    records: list[UsageRecord]


class ErrorDetail(OutputModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(OutputModel):
    error: ErrorDetail


class Health(OutputModel):
    status: str
    version: str
    scheduler: str = ""
    """``leader`` if this server runs the scheduling loop, ``standby`` if it waits for the
    leader lease held by another server sharing the store, empty if it runs no loop."""


# ---------------------------------------------------------------- executor hand-off


class ReplicaLaunch(OutputModel):
    replica: int
    node: str
    gpu_indices: list[int]
    gpu_fraction: float
    log_path: str
    run_dir: str = ""
    """Where the replica's supervisor keeps its state (recorded in the store before the
    start, so a new server finds it); empty lets the executor choose."""


class JobLaunch(OutputModel):
    """Everything an executor needs to run one attempt of a job. ``env`` is the job's
    own environment (secrets included): never log it."""

    job_id: int
    attempt: int
    tenant: str
    argv: list[str]
    env: dict[str, str] = Field(repr=False)
    workdir: str | None
    replicas: list[ReplicaLaunch]


class JobExit(OutputModel):
    """An executor's report that every process of one job attempt has exited."""

    job_id: int
    attempt: int
    exit_code: int | None
    """0 when every replica exited 0; otherwise the first failing code (None if killed)."""
    message: str = ""
    lost: bool = False
    """A replica's node or supervisor vanished without an exit record: the attempt says
    nothing about the job, which is requeued rather than failed."""
