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
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from mosu.core.credits import CreditPolicy
from mosu.core.models import JobKind, NodeState, Topology
from mosu.core.reasons import PendingReason, StopReason

MAX_GPUS_PER_REPLICA = 1024
MAX_REPLICAS = 4096
NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
NAME_RULE = (
    "1 to 63 characters of lowercase letters, digits, '.', '_' and '-', "
    "beginning and ending with a letter or digit"
)
"""``NAME_PATTERN`` in words, for error messages."""
PRIORITY_CLASSES = {"low": 0, "normal": 50, "high": 100}
MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a request body may have (a job spec needs 3)."""
MAX_BODY_BYTES = 1 << 20
"""Largest request body the API reads."""
MAX_EVENT_ID = 2**63 - 1
"""Event ids are 64-bit: a cursor above this is refused, not passed to the store."""
MAX_JOB_ID = 2**31 - 1


class InputModel(BaseModel):
    """Strict: a boolean is not a number and a string is not one either (``gpus: true`` and
    ``gpus: "2"`` are errors, not 1 and 2); NaN and infinities are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# ---------------------------------------------------------------- text fields
#
# Control characters are refused in every string a client sends: NUL cannot be stored in
# a PostgreSQL text column (one such string used to fail a whole batch of submissions), and
# the others only serve to spoof what a log or a terminal shows. Text that may span lines
# (a command, an environment value) keeps tab, newline and carriage return.

_LINE_FORBIDDEN = "\x00-\x1f\x7f-\x9f"
_TEXT_FORBIDDEN = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_LINE_BAD = re.compile(f"[{_LINE_FORBIDDEN}]")
_TEXT_BAD = re.compile(f"[{_TEXT_FORBIDDEN}]")
LINE_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
"""``Line`` as a JSON Schema pattern (what the OpenAPI document promises)."""
TEXT_PATTERN = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"


def _refuse(bad: re.Pattern[str], value: str) -> str:
    found = bad.search(value)
    if found is not None:
        raise ValueError(f"control character U+{ord(found.group()):04X} is not allowed")
    return value


def _line(value: str) -> str:
    return _refuse(_LINE_BAD, value)


def _text(value: str) -> str:
    return _refuse(_TEXT_BAD, value)


Line = Annotated[str, AfterValidator(_line), Field(json_schema_extra={"pattern": LINE_PATTERN})]
"""One line of text: no control characters at all."""
Text = Annotated[str, AfterValidator(_text), Field(json_schema_extra={"pattern": TEXT_PATTERN})]
"""Text that may span lines: tab, newline and carriage return are its only control
characters."""
GpuTypeName = Annotated[Line, Field(min_length=1, max_length=64)]
ENV_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"
_ENV_NAME = re.compile(ENV_NAME_PATTERN)
RESERVED_ENV = ("MOSU_", "CUDA_VISIBLE_DEVICES")


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid environment variable name")
    if value.startswith(RESERVED_ENV[0]) or value == RESERVED_ENV[1]:
        raise ValueError(f"{value} is set by mosu and cannot be overridden")
    return value


ENV_NAME_SCHEMA_PATTERN = "^(?!MOSU_)(?!CUDA_VISIBLE_DEVICES$)[A-Za-z_][A-Za-z0-9_]*$"
"""``EnvName`` for the OpenAPI document (pydantic's own regex engine has no look-ahead,
so ``_env_name`` checks it)."""
EnvName = Annotated[
    str,
    Field(min_length=1, max_length=255, json_schema_extra={"pattern": ENV_NAME_SCHEMA_PATTERN}),
    AfterValidator(_env_name),
]
"""An environment variable a job may set: letters, digits and ``_``, not a digit first;
``MOSU_*`` and ``CUDA_VISIBLE_DEVICES`` are mosu's."""


def _keys_by_property_names(schema: dict[str, Any]) -> None:
    # pydantic describes a dict whose keys have a pattern with ``patternProperties``, which
    # lets other keys through; ``propertyNames`` says what the API enforces: no other key.
    patterns = schema.pop("patternProperties", None)
    if patterns:
        (pattern, values), *_ = patterns.items()
        names = schema.setdefault("propertyNames", {})
        names["pattern"] = pattern
        names.setdefault("maxLength", 255)
        schema["additionalProperties"] = values


Name = Annotated[str, Field(pattern=NAME_PATTERN)]
"""A tenant, node, cohort, token or similar name (``NAME_RULE``)."""


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
DURATION_PATTERN = "^ *[0-9]+([.][0-9]+)? *[smhd]? *$"
MAX_DURATION_S = 366 * 86400
_DURATION_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?B?\s*$")
MEMORY_PATTERN = "^ *[0-9]+([.][0-9]+)? *(Ki|Mi|Gi|Ti|K|M|G|T)?B? *$"
MAX_MEMORY_MIB = 64 * 1024 * 1024
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
    if not 0 < seconds <= MAX_DURATION_S:
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
    if not 0 <= mib <= MAX_MEMORY_MIB:
        raise ValueError("must be between 0 and 64Ti")
    return round(mib)


def _check_duration(value: float | str | None) -> float | str | None:
    parse_duration_s(value)
    return value


def _check_memory(value: float | str) -> float | str:
    parse_memory_mib(value)
    return value


Duration = Annotated[
    Annotated[float, Field(gt=0, le=MAX_DURATION_S)]
    | Annotated[str, Field(max_length=32, pattern=DURATION_PATTERN)]
    | None,
    AfterValidator(_check_duration),
]
"""Seconds, or a number with a unit: ``90``, ``"30m"``, ``"2h"``, ``"1d"``; at most a year."""
Memory = Annotated[
    Annotated[int, Field(ge=0, le=MAX_MEMORY_MIB)]
    | Annotated[float, Field(ge=0, le=MAX_MEMORY_MIB)]
    | Annotated[str, Field(max_length=32, pattern=MEMORY_PATTERN)],
    AfterValidator(_check_memory),
]
"""MiB, or a number with a unit: ``4096``, ``"512Mi"``, ``"16Gi"``; at most 64Ti."""


# ---------------------------------------------------------------- job spec

CHECKPOINT_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGHUP", "SIGINT")
"""Signals a job may name as its ``checkpoint_signal``: never SIGTERM (the stop itself),
nor one it cannot handle (SIGKILL, SIGSTOP)."""
CheckpointSignal = Literal["SIGUSR1", "SIGUSR2", "SIGHUP", "SIGINT"]
DEFAULT_CHECKPOINT_GRACE_S = 120.0
"""How long a preemption waits for an asked-for checkpoint when the spec does not say."""
MAX_CHECKPOINT_GRACE_S = 1800.0


def _priority(value: Any) -> Any:
    if isinstance(value, str):
        if value not in PRIORITY_CLASSES:
            names = ", ".join(PRIORITY_CLASSES)
            raise ValueError(f"unknown priority class {value!r}; use one of {names} or 0..1000")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 1000:
            raise ValueError("must be between 0 and 1000")
    else:
        raise ValueError("expected low, normal, high or a number from 0 to 1000")
    return value


class JobSpec(InputModel):
    """What a tenant submits. Sizes are per replica; ``gpus`` below 1 shares one GPU."""

    name: Annotated[Line, Field(min_length=1, max_length=128)]
    kind: Annotated[JobKind, Field(strict=False)] = JobKind.TRAIN
    priority: Annotated[
        int | str,
        BeforeValidator(_priority),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 0, "maximum": 1000},
                    {"enum": list(PRIORITY_CLASSES)},
                ]
            }
        ),
    ] = "normal"
    replicas: Annotated[int, Field(ge=1, le=MAX_REPLICAS)] = 1
    gpus: Annotated[float, Field(ge=0, le=MAX_GPUS_PER_REPLICA)] = 1
    gpu_type: GpuTypeName | Annotated[list[GpuTypeName], Field(max_length=16)] | None = None
    cpu: Annotated[float, Field(ge=0, le=4096)] = 0
    memory: Memory = 0
    topology: Annotated[Topology, Field(strict=False)] = Topology.NONE
    estimate: Duration = None
    max_runtime: Duration = None
    checkpoint_every: Duration = None
    checkpoint_signal: CheckpointSignal | None = None
    """The signal that asks the job to save a checkpoint now: sent to its replicas before
    a preemption stops them (needs ``checkpoint_every``)."""
    checkpoint_grace: Duration = None
    """How long a preemption waits for the checkpoint it asked for before stopping the
    job (``DEFAULT_CHECKPOINT_GRACE_S``; at most ``MAX_CHECKPOINT_GRACE_S``)."""
    command: (
        Annotated[Text, Field(min_length=1, max_length=1 << 16)]
        | Annotated[list[Annotated[Text, Field(max_length=1 << 16)]], Field(max_length=4096)]
    )
    env: Annotated[
        dict[EnvName, Annotated[Text, Field(max_length=1 << 16)]],
        Field(max_length=256, json_schema_extra=_keys_by_property_names),
    ] = Field(default_factory=dict)
    secrets: Annotated[list[EnvName], Field(max_length=64)] = Field(default_factory=list)
    """Names of the tenant's secrets to set, each as the environment variable of its name."""
    workdir: Annotated[Line, Field(min_length=1, max_length=4096)] | None = None

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

    @field_validator("checkpoint_signal")
    @classmethod
    def _checkpoint_signal(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("checkpoint_every") is None:
            raise ValueError(
                "needs checkpoint_every: only a job that saves checkpoints can be asked for one"
            )
        return value

    @field_validator("checkpoint_grace")
    @classmethod
    def _checkpoint_grace(cls, value: float | str | None, info: ValidationInfo) -> Any:
        if value is None:
            return value
        if info.data.get("checkpoint_signal") is None:
            raise ValueError("is only read with checkpoint_signal")
        if (parse_duration_s(value) or 0) > MAX_CHECKPOINT_GRACE_S:
            raise ValueError(f"must be at most {MAX_CHECKPOINT_GRACE_S / 60:g}m")
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        if isinstance(value, list) and (not value or not value[0]):
            raise ValueError("must not be empty")
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: list[str], info: ValidationInfo) -> list[str]:
        env = info.data.get("env") or {}
        seen: set[str] = set()
        for name in value:
            if name in seen:
                raise ValueError(f"{name} is named twice")
            if name in env:
                raise ValueError(f"{name} is set both in env and as a secret; keep one")
            seen.add(name)
        return value

    # The platform reads a spec normalized: ``core.submission.Submission.of``.


def argv_of(command: str | list[str]) -> list[str]:
    """A job's command as the argv its replicas run: a string runs under ``/bin/sh -c``."""
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


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
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": f"({NAME_PATTERN})|^$"}, {"type": "null"}]}
    ),
    Field(
        description="Cohort name (tenants of one cohort lend idle guaranteed GPUs to each "
        "other); null or an empty string means no cohort: the default cohort."
    ),
]
"""A cohort name, spelled like a tenant name; ``None`` (or ``""`` on input) is the
default cohort every tenant without a cohort shares."""


Quotas = Annotated[
    dict[GpuTypeName, QuotaSpec],
    Field(max_length=64, json_schema_extra=_keys_by_property_names),
]
"""A quota per GPU type (``"*"`` for any type without its own)."""


class TenantCreate(InputModel):
    name: Name
    quotas: Quotas = Field(default_factory=dict)
    weight: Annotated[float, Field(gt=0, le=1000)] = 1.0
    cohort: CohortName = None
    on_credits_exhausted: Annotated[CreditPolicy | None, Field(strict=False)] = None
    """What happens once its credits are used up (``hold`` when not set)."""


class TenantUpdate(InputModel):
    """A partial update of a tenant (``PATCH /v1/tenants/{name}``): a field left out is
    kept; ``cohort`` set to null or ``""`` moves the tenant to the default cohort."""

    weight: Annotated[float | None, Field(gt=0, le=1000)] = None
    cohort: CohortName = None
    on_credits_exhausted: Annotated[CreditPolicy | None, Field(strict=False)] = None

    @property
    def sets_cohort(self) -> bool:
        """Whether the request names a cohort (a name, null or ``""``) at all."""
        return "cohort" in self.model_fields_set


class QuotaUpdate(InputModel):
    quotas: Quotas
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
    warnings: list[str] = Field(default_factory=list)
    """Guarantees the cluster cannot honour (a GPU type it lacks, more than it has)."""


class TenantQuotasOut(TenantOut):
    """A tenant after a quota change, with what the cluster cannot honour of it."""

    warnings: list[str] = Field(default_factory=list)


class TokenCreate(InputModel):
    """A new API token. A tenant's token creates tokens of its tenant; the operator's
    creates one for ``tenant``, or an operator token when ``tenant`` is left out."""

    name: Name | None = None
    """Unique among the owner's live tokens; ``token-<id>`` when left out."""
    tenant: Name | None = None
    expires_in: Duration = None
    """Seconds or ``"30d"`` (at most a year); none: until revoked."""


class TokenInfo(OutputModel):
    """What is known about a token; never the token itself (only its hash is stored)."""

    id: int
    name: str
    tenant: str | None
    """None for an operator token."""
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    """To the minute: a token's use is recorded at most once a minute per server."""
    revoked_at: datetime | None = None
    current: bool = False
    """Whether this is the token the request was made with."""


class TokenOut(OutputModel):
    """A newly issued token: shown once, here."""

    token: str
    info: TokenInfo | None = None


class TokenList(OutputModel):
    tokens: list[TokenInfo]


class SecretSet(InputModel):
    value: Annotated[Text, Field(max_length=1 << 16)]


class SecretOut(OutputModel):
    """A stored secret's name and times; its value never leaves the server."""

    name: str
    tenant: str
    created_at: datetime
    updated_at: datetime


class SecretList(OutputModel):
    secrets: list[SecretOut]


_TOPOLOGY_PART = "[^/\\u0000-\\u001f\\u007f-\\u009f]+"
TOPOLOGY_PATTERN = f"^({_TOPOLOGY_PART}(/{_TOPOLOGY_PART}){{0,2}})?$"


class NodeCreate(InputModel):
    name: Name
    gpu_type: GpuTypeName
    gpus: Annotated[int, Field(ge=0, le=1024)]
    gpu_vendor: Annotated[Line, Field(max_length=32)] | None = None
    """Who makes the GPUs: ``nvidia``, ``huawei``, ``amd`` or ``cambricon``. Omitted: the
    vendor of the type in the table of known models (docs/accelerators.md), else NVIDIA.
    A vendor that contradicts the table is refused."""
    cpu: Annotated[float, Field(ge=0, le=65536)] = 0
    memory: Memory = 0
    gpu_memory: Memory = 0
    topology: Annotated[str, Field(max_length=255, pattern=TOPOLOGY_PATTERN)] = ""
    """``zone/rack/node`` path (up to three non-empty parts); empty puts the node in
    zone-0/rack-0."""


class NodeOut(OutputModel):
    name: str
    gpu_type: str
    vendor: str
    """Who makes its GPUs (``nvidia``, ``huawei``, ``amd``, ``cambricon``); it decides
    which variable shows a replica its devices."""
    gpus: int
    gpu_memory_mib: int = 0
    """Memory of one GPU (0: not known)."""
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
    vendor: str
    nodes: int
    gpus: int
    allocated: float
    free: float
    guaranteed: float = 0.0
    """The sum of every tenant's guarantee of this type."""
    overcommitted: float = 0.0
    """GPUs guaranteed beyond the type's capacity (0 when the guarantees fit)."""


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
    stop_requested: StopReason | None = None
    pending_reason: PendingReason | None = None
    pending_message: str | None = None
    estimated_start: datetime | None = None
    """A pending job's likely start; None: unknown."""
    estimated_start_late: datetime | None = None
    """Its late bound: it starts before this nine times in ten."""
    last_checkpoint_at: datetime | None = None
    """When the job last reported a saved checkpoint (``MOSU_CHECKPOINT_FILE``): the
    oldest of its replicas' latest reports; None while none has."""
    allocations: list[AllocationOut] = Field(default_factory=list)
    spec: dict[str, Any] = Field(default_factory=dict)


class JobList(OutputModel):
    jobs: list[JobOut]


class JobWhy(OutputModel):
    id: int
    state: JobState
    reason: PendingReason | StopReason | None
    """Why it waits while pending; why it is being stopped while active."""
    sentence: str
    position: int | None = None
    estimated_start: datetime | None = None
    estimated_start_late: datetime | None = None


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
    reason: PendingReason | None
    message: str | None
    estimated_start: datetime | None
    estimated_start_late: datetime | None = None


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
    gpu_milli: int
    """The share of each of its GPUs in thousandths (``GPU_MILLI``: whole devices)."""
    vendor: str = "nvidia"
    """Who makes the node's GPUs: which variable shows the replica ``gpu_indices``."""
    log_path: str
    run_dir: str = ""
    """Where the replica's supervisor keeps its state (recorded in the store before the
    start, so a new server finds it); empty lets the executor choose."""


class JobLaunch(OutputModel):
    """Everything an executor needs to run one attempt of a job. ``env`` holds the
    tenant's decrypted secrets: it is left out of ``repr`` so that logging a launch cannot
    print them; never log it."""

    job_id: int
    attempt: int
    tenant: str
    argv: list[str]
    env: dict[str, str] = Field(repr=False)
    workdir: str | None
    replicas: list[ReplicaLaunch]
    estimate_s: float | None = None
    """The job's own run-time estimate (the simulated executor runs it for that long)."""


class CheckpointReport(OutputModel):
    """An executor's view of the checkpoints one attempt reported (``MOSU_CHECKPOINT_FILE``)."""

    attempt: int
    at: float | None = None
    """When the gang last saved a checkpoint (seconds since the epoch): the oldest of the
    latest reports of the replicas that report at all; None while none has."""
    requested: bool = False
    """A checkpoint was asked for (the job's ``checkpoint_signal`` was delivered)."""
    answered: bool = False
    """Every replica that reports has reported a checkpoint since it was asked for one."""


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
    checkpoint: CheckpointReport | None = None
    """The attempt's checkpoint reports as they stood when it ended (executors that
    declare ``Capability.CHECKPOINTS``); None when it reported none and was asked none."""
