"""Request and response models of model services and gateway keys, shared by the API,
the client and the CLI. A service spec is a job spec of ``kind: service``: the replica's
resources and command, plus how many replicas, how they scale and how they are checked."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from mosu.core.api import (
    NAME_PATTERN,
    PRIORITY_CLASSES,
    EnvName,
    GpuTypeName,
    InputModel,
    JobSpec,
    Line,
    Memory,
    OutputModel,
    Text,
)
from mosu.core.models import JobKind

MODEL_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._:/-]{0,126}[A-Za-z0-9])?$"
KEY_MODEL_PATTERN = r"^(\*|[A-Za-z0-9]([A-Za-z0-9._:/-]{0,126}[A-Za-z0-9])?)$"
"""A model a key may call; ``*`` is every model the key's tenant may call."""
MAX_SERVICE_REPLICAS = 64


class ReplicaRange(InputModel):
    min: Annotated[int, Field(ge=0, le=MAX_SERVICE_REPLICAS)] = 1
    max: Annotated[int, Field(ge=1, le=MAX_SERVICE_REPLICAS)] = 1

    @model_validator(mode="after")
    def _order(self) -> ReplicaRange:
        if self.max < self.min:
            raise ValueError("max must be at least min")
        return self


class Scaling(InputModel):
    target_inflight: Annotated[float, Field(gt=0, le=10_000)] = 4
    """In-flight requests per replica the autoscaler aims for."""
    metric: Annotated[Line, Field(min_length=1, max_length=128)] | None = None
    """A gauge read from each replica's Prometheus ``/metrics`` (e.g.
    ``vllm:num_requests_waiting``), summed over replicas."""
    metric_target: Annotated[float, Field(gt=0, le=1_000_000)] | None = None
    """The metric's value per replica the autoscaler aims for."""
    up_delay: Annotated[float, Field(ge=0, le=86_400)] = 10
    """Seconds the load must stay above what the replicas serve before one is added."""
    down_delay: Annotated[float, Field(ge=0, le=86_400)] = 120
    """Seconds the load must stay below before a replica is removed."""

    @model_validator(mode="after")
    def _metric(self) -> Scaling:
        if (self.metric is None) != (self.metric_target is None):
            raise ValueError("metric and metric_target go together")
        return self


class Readiness(InputModel):
    path: Annotated[Line, Field(min_length=1, max_length=1024, pattern=r"^/")] = "/health"
    timeout: Annotated[float, Field(gt=0, le=86_400)] = 600
    """Seconds a started replica has to answer 200 before it is replaced."""


class ServiceSpec(InputModel):
    """A model served by 0 or more replicas, each scheduled like a one-replica job."""

    kind: Literal["service"]
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
    model: Annotated[str, Field(pattern=MODEL_PATTERN, max_length=128)]
    """The name clients pass as ``model``; unique in the cluster."""
    command: (
        Annotated[Text, Field(min_length=1, max_length=1 << 16)]
        | Annotated[list[Annotated[Text, Field(max_length=1 << 16)]], Field(max_length=4096)]
    )
    port: Literal["auto"] = "auto"
    """mosu picks a free port for each replica and sets ``$PORT``; the server listens on it."""
    replicas: ReplicaRange = Field(default_factory=ReplicaRange)
    scaling: Scaling = Field(default_factory=Scaling)
    readiness: Readiness = Field(default_factory=Readiness)
    drain_grace: Annotated[float, Field(ge=0, le=3600)] = 30
    """Seconds a replica removed from routing keeps serving its in-flight requests."""
    public: bool = False
    description: Annotated[Text, Field(max_length=2000)] = ""
    audit_prompts: bool = False
    """Keep visitors' prompts in the showcase's audit record (off: only times and sizes)."""
    priority: int | str = "normal"
    gpus: Annotated[float, Field(ge=0, le=64)] = 1
    gpu_type: GpuTypeName | list[GpuTypeName] | None = None
    cpu: Annotated[float, Field(ge=0, le=4096)] = 0
    memory: Memory = 0
    env: dict[EnvName, Annotated[Text, Field(max_length=1 << 16)]] = Field(default_factory=dict)
    secrets: Annotated[list[EnvName], Field(max_length=64)] = Field(default_factory=list)
    workdir: Annotated[Line, Field(min_length=1, max_length=4096)] | None = None

    @model_validator(mode="after")
    def _checks(self) -> ServiceSpec:
        if "PORT" in self.env:
            raise ValueError("env.PORT is set by mosu for each replica; leave it out")
        if isinstance(self.priority, str) and self.priority not in PRIORITY_CLASSES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITY_CLASSES)}")
        return self

    def replica_spec(self, index: int, port: int) -> JobSpec:
        """The job one replica runs: the service's resources and command, with ``$PORT``."""
        return JobSpec(
            name=f"{self.name}-r{index}"[:128],
            kind=JobKind.INFERENCE,
            priority=self.priority,
            replicas=1,
            gpus=self.gpus,
            gpu_type=self.gpu_type,
            cpu=self.cpu,
            memory=self.memory,
            command=self.command,
            env={**self.env, "PORT": str(port)},
            secrets=list(self.secrets),
            workdir=self.workdir,
        )


class ServiceScale(InputModel):
    min: Annotated[int, Field(ge=0, le=MAX_SERVICE_REPLICAS)] | None = None
    max: Annotated[int, Field(ge=1, le=MAX_SERVICE_REPLICAS)] | None = None
    replicas: Annotated[int, Field(ge=0, le=MAX_SERVICE_REPLICAS)] | None = None
    """Replicas wanted now (kept within min and max; the autoscaler may change it)."""


class ShowcaseApproval(InputModel):
    approved: bool


class ReplicaOut(OutputModel):
    job_id: int
    state: str
    job_state: str
    endpoint: str
    inflight: int = 0


class ServiceOut(OutputModel):
    name: str
    tenant: str
    model: str
    min_replicas: int
    max_replicas: int
    desired: int
    ready: int
    public: bool
    approved: bool
    description: str
    inflight: int = 0
    created_at: datetime
    replicas: list[ReplicaOut] = Field(default_factory=list)
    spec: dict[str, Any] = Field(default_factory=dict)


class ServiceList(OutputModel):
    services: list[ServiceOut]


class KeyCreate(InputModel):
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)] = "default"
    models: Annotated[
        list[Annotated[str, Field(pattern=KEY_MODEL_PATTERN, max_length=128)]],
        Field(min_length=1, max_length=64),
    ]
    rpm: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    tpm: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None
    showcase: bool = False
    """Operator only: the key the public showcase page calls models with."""


class KeyOut(OutputModel):
    id: int
    name: str
    tenant: str | None
    prefix: str
    models: list[str]
    rpm: int | None
    tpm: int | None
    showcase: bool
    created_at: datetime
    revoked_at: datetime | None = None
    key: str | None = None
    """The secret key itself: returned once, when the key is created."""


class KeyList(OutputModel):
    keys: list[KeyOut]


class TokenUsageOut(OutputModel):
    key_id: int
    model: str
    owner: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


class TokenUsageList(OutputModel):
    usage: list[TokenUsageOut]
