"""Charging the tokens the gateway meters: the tenant that owns a model pays its token
rate in force when the tokens are stored, on the same ledger as GPU time. Runs inside
the transaction that stores the gateway's batch of token counts
(``Meter(on_flush=charge_tokens)``), so usage and charge commit together or not at all."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from mosu.core.credits import GrantState, draw, to_ms
from mosu.core.credits_tokens import MinuteCharge, TokenRate, TokenRateCard
from mosu.service.db.credit_rows import (
    CreditEntryRow,
    CreditTokenMinuteRow,
    CreditTokenRateRow,
)
from mosu.service.db.gateway_rows import TokenUsageRow
from mosu.service.services.credits_meter import grant_states


class MeteredBucket(Protocol):
    """A (key, model, minute) the gateway stored tokens for (its ``TokenCharge``)."""

    @property
    def minute(self) -> int: ...
    @property
    def key_id(self) -> int: ...
    @property
    def model(self) -> str: ...
    @property
    def owner(self) -> str: ...


TOKEN_NOTE = "tokens"
"""The note of a token charge entry (GPU charges name their interval instead)."""


def load_token_card(session: Session) -> TokenRateCard:
    return TokenRateCard(
        TokenRate(
            model=r.model,
            effective_ms=to_ms(r.effective_at),
            prompt_micro_per_m=r.prompt_micro_per_m,
            completion_micro_per_m=r.completion_micro_per_m,
        )
        for r in session.execute(
            select(
                CreditTokenRateRow.model,
                CreditTokenRateRow.effective_at,
                CreditTokenRateRow.prompt_micro_per_m,
                CreditTokenRateRow.completion_micro_per_m,
            )
        )
    )


def charge_tokens(
    session: Session, charges: Sequence[MeteredBucket], *, now: float | None = None
) -> int:
    """Charge each (key, model, minute) up to the totals stored for it; returns the
    micro-credits charged. The totals are read from ``token_usage`` (already updated in
    this transaction), not added from the batch: charging the same batch again finds
    nothing new to charge."""
    if not charges:
        return 0
    # Minutes are tracked even while nothing is priced, so a rate set later prices only
    # the tokens stored after it.
    card = load_token_card(session)
    at = time.time() if now is None else now
    at_ms = to_ms(at)
    owners = {c.owner for c in charges}
    grants: dict[str, list[GrantState]] | None = None  # read once, when something costs
    left: dict[int, int] = {}
    total = 0
    for bucket in sorted({(c.key_id, c.model, c.minute, c.owner) for c in charges}):
        key_id, model, minute, owner = bucket
        usage = session.execute(
            select(TokenUsageRow.prompt_tokens, TokenUsageRow.completion_tokens).where(
                TokenUsageRow.minute == minute,
                TokenUsageRow.key_id == key_id,
                TokenUsageRow.model == model,
            )
        ).one_or_none()
        if usage is None:
            continue
        prompt, completion = int(usage[0]), int(usage[1])
        row = session.scalar(
            select(CreditTokenMinuteRow).where(
                CreditTokenMinuteRow.key_id == key_id,
                CreditTokenMinuteRow.model == model,
                CreditTokenMinuteRow.minute == minute,
            )
        )
        if row is None:
            row = CreditTokenMinuteRow(
                key_id=key_id,
                model=model,
                minute=minute,
                tenant=owner,
                prompt_tokens=0,
                completion_tokens=0,
                amount_micro=0,
                rate_line="",
                base_prompt_tokens=0,
                base_completion_tokens=0,
                base_amount_micro=0,
            )
            session.add(row)
            session.flush()  # a second gateway inserting the same minute fails here
        if (prompt, completion) == (row.prompt_tokens, row.completion_tokens):
            continue
        was = MinuteCharge(
            row.prompt_tokens,
            row.completion_tokens,
            row.amount_micro,
            row.rate_line,
            row.base_prompt_tokens,
            row.base_completion_tokens,
            row.base_amount_micro,
        )
        state, amount = was.charge_to(card.rate(model, at_ms), prompt, completion)
        row.prompt_tokens, row.completion_tokens = state.prompt, state.completion
        row.amount_micro, row.rate_line = state.amount_micro, state.line
        row.base_prompt_tokens = state.base_prompt
        row.base_completion_tokens = state.base_completion
        row.base_amount_micro = state.base_micro
        if amount <= 0:
            continue
        if grants is None:
            grants = grant_states(session, owners)
            left = {g.id: g.remaining_micro for gs in grants.values() for g in gs}
        states = [
            GrantState(g.id, left[g.id], g.effective_ms, g.expires_ms, g.priority)
            for g in grants.get(row.tenant, [])
        ]
        for i, (grant_id, part) in enumerate(draw(amount, states, at_ms)):
            if grant_id is not None:
                left[grant_id] -= part
            session.add(
                CreditEntryRow(
                    tenant=row.tenant,
                    kind="charge",
                    amount_micro=-part,
                    at=at,
                    grant_id=grant_id,
                    # Once per state of the minute: the same totals are never charged twice.
                    key=f"tokens:{row.id}:{prompt}:{completion}:{i}",
                    note=f"{TOKEN_NOTE} {model}",
                )
            )
        total += amount
    session.flush()
    return total
