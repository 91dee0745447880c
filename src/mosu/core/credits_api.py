"""Request and response models of the credit ledger and the rate card (API, client, CLI).
Amounts cross the API in credits (floats, rounded to the micro-credit on the way in) and
also as exact integer micro-credits on the way out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from mosu.core.api import InputModel, Line, Name, OutputModel
from mosu.core.credits import CreditPolicy

MAX_CREDITS = 1e12
Moment = Annotated[datetime, Field(strict=False)]
"""An ISO 8601 time (UTC when it names no zone); strict models would take only objects."""
Credits = Annotated[float, Field(ge=0, le=MAX_CREDITS)]
ResourceName = Annotated[Line, Field(min_length=1, max_length=64)]


class GrantCreate(InputModel):
    tenant: Name
    amount: Annotated[float, Field(gt=0, le=MAX_CREDITS)]
    effective_at: Moment | None = None
    """Default: now."""
    expires_at: Moment | None = None
    priority: Annotated[int, Field(ge=0, le=1000)] = 0
    """Among grants expiring together, the lower number is drawn first."""
    note: Annotated[Line, Field(max_length=256)] = ""


class GrantOut(OutputModel):
    id: int
    tenant: str
    amount: float
    amount_micro: int
    remaining_micro: int
    effective_at: datetime
    expires_at: datetime | None
    priority: int
    note: str


class BalanceOut(OutputModel):
    tenant: str
    balance: float
    balance_micro: int
    granted: float
    """Granted amount in force now (effective, not expired)."""
    granted_micro: int
    reserved_micro: int = 0
    """Estimated cost still to come of the tenant's running jobs."""
    on_credits_exhausted: CreditPolicy
    exhausted: bool
    grants: list[GrantOut] = Field(default_factory=list)


class BalanceList(OutputModel):
    balances: list[BalanceOut]


class RateLine(InputModel):
    resource: ResourceName
    """A GPU type, ``*`` for any other GPU type, ``cpu`` (per core) or ``mem`` (per GiB)."""
    per_hour: Credits
    borrowed_per_hour: Credits | None = None


class TokenRateLine(InputModel):
    model: Annotated[Line, Field(min_length=1, max_length=128)]
    """A model name clients call, or ``*`` for any model without a line of its own."""
    prompt_per_m: Credits
    """Credits per million prompt tokens."""
    completion_per_m: Credits
    """Credits per million completion tokens."""


class RateSet(InputModel):
    rates: Annotated[list[RateLine], Field(max_length=256)] = Field(default_factory=list)
    tokens: Annotated[list[TokenRateLine], Field(max_length=256)] = Field(default_factory=list)
    """Token rates per model; a request sets GPU rates, token rates or both (not neither)."""
    effective_at: Moment | None = None
    """Default: now. Never in the past: a rate change is not retroactive."""


class RateOut(OutputModel):
    resource: str
    per_hour: float
    borrowed_per_hour: float | None
    effective_at: datetime


class TokenRateOut(OutputModel):
    model: str
    prompt_per_m: float
    completion_per_m: float
    effective_at: datetime


class RateList(OutputModel):
    rates: list[RateOut]
    tokens: list[TokenRateOut] = Field(default_factory=list)


class StatementLine(OutputModel):
    tenant: str
    kind: str
    """grant, charge (GPU time), tokens (a model's tokens), refund, expiry or adjustment."""
    gpu_type: str | None = None
    borrowed: bool | None = None
    gpu_hours: float = 0.0
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    amount: float
    amount_micro: int
    note: str = ""


class StatementTotals(OutputModel):
    tenant: str
    granted_micro: int
    charged_micro: int
    refunded_micro: int
    expired_micro: int
    net_micro: int
    gpu_hours: float


class StatementOut(OutputModel):
    month: str | None
    lines: list[StatementLine]
    totals: list[StatementTotals]
