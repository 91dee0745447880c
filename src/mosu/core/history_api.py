"""API models of the platform's history export and what-if replays, shared by the API,
the client and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from mosu.core.api import InputModel, Line, OutputModel
from mosu.core.credits_api import RateLine


class HistoryExportOut(OutputModel):
    """A window of history in mosu's native trace format: ``files`` maps ``jobs.csv``,
    ``tenants.csv`` and ``nodes.csv`` to their text (and ``rates.csv``, the rate card
    on the trace clock, when the platform has one). ``origin`` is the epoch second of
    trace time 0; ``counts`` the jobs per way they ended (``exit``, ``cancelled``,
    ``max-runtime``, ``running``, ``pending``) and ``jobs`` in all; ``profile`` the
    scheduling profile the platform runs
    (and its override of the profile's minimum runtime before a preemption). The tenants
    and nodes are those in force at trace time 0; ``changes`` counts the quota and node
    changes made after it in the window, in ``changes.csv`` when there are any."""

    origin: float
    since: float | None = None
    until: float
    profile: str
    min_runtime_s: float | None = None
    counts: dict[str, int]
    changes: int = 0
    files: dict[str, str]


Change = Annotated[Line, Field(min_length=1, max_length=200)]
Changes = Annotated[list[Change], Field(max_length=64)]


class WhatIfRequest(InputModel):
    """A what-if over the jobs submitted in [``since``, ``until``) (epoch seconds; default:
    all history up to now). Each change has the syntax of the ``mosu whatif`` option of
    its name: ``set_guarantee`` ``TENANT=TYPE:GPUS``, ``set_limit`` the same or
    ``TENANT=TYPE:none``, ``set_weight`` ``TENANT=WEIGHT``, ``cohort`` ``TENANT=COHORT``,
    ``add_nodes`` ``COUNTxGPUS:TYPE``, ``remove_node`` a node name; ``rates`` a rate card
    (in force over the whole window) to charge the changed replay at."""

    since: Annotated[float, Field(ge=0, le=1e11)] | None = None
    until: Annotated[float, Field(ge=0, le=1e11)] | None = None
    set_guarantee: Changes = Field(default_factory=list)
    set_limit: Changes = Field(default_factory=list)
    set_weight: Changes = Field(default_factory=list)
    cohort: Changes = Field(default_factory=list)
    profile: Annotated[Line, Field(min_length=1, max_length=64)] | None = None
    placement: Annotated[Line, Field(min_length=1, max_length=64)] | None = None
    add_nodes: Changes = Field(default_factory=list)
    remove_node: Changes = Field(default_factory=list)
    rates: Annotated[list[RateLine], Field(max_length=256)] = Field(default_factory=list)
    tick_s: Annotated[float, Field(ge=0, le=3600)] = 0
    """> 0: replay on scheduler ticks of this many seconds (faster; see ``mosu whatif``)."""


class WhatIfTaskOut(OutputModel):
    """A what-if task: ``state`` queued, running, succeeded, failed or cancelled;
    ``progress`` 0..1 over both replays (``phase``: the one running); ``report`` once it
    succeeded (the JSON of ``mosu whatif --output json``); ``plot`` the URL of the PNG of
    waits per tenant before and after."""

    id: str
    state: str
    progress: float
    phase: str = ""
    jobs: int = 0
    changes: list[str] = Field(default_factory=list)
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    report: dict[str, Any] | None = None
    plot: str | None = None


class WhatIfTaskList(OutputModel):
    tasks: list[WhatIfTaskOut]
