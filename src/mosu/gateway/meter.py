"""The token meter: requests and tokens per key, model and minute, summed in memory and
written to the store about once a second (one row per key, model and minute).

Charging hook: ``TokenCharge`` callbacks receive each flushed batch with the tenant that
owns the model, so a credits ledger can charge tokens at a per-model rate on the same
ledger as GPU time (``Meter(on_flush=...)``); nothing is charged without one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mosu.service.db.gateway_rows import TokenUsageRow

log = logging.getLogger("mosu.gateway")


@dataclass(frozen=True, slots=True)
class TokenCharge:
    minute: int
    key_id: int
    model: str
    owner: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


ChargeHook = Callable[[Session, list[TokenCharge]], None]
"""Called inside the transaction that stores the batch: a charge commits with its usage."""


class Meter:
    def __init__(self, sessions: sessionmaker[Session], on_flush: ChargeHook | None = None):
        self.sessions = sessions
        self.on_flush = on_flush
        self._pending: dict[tuple[int, int, str, str], list[int]] = {}

    def add(
        self, *, now: float, key_id: int, model: str, owner: str, prompt: int, completion: int
    ) -> None:
        bucket = self._pending.setdefault((int(now // 60), key_id, model, owner), [0, 0, 0])
        bucket[0] += 1
        bucket[1] += prompt
        bucket[2] += completion

    def take(self) -> dict[tuple[int, int, str, str], list[int]]:
        """What was metered since the last take; called on the thread that meters."""
        batch, self._pending = self._pending, {}
        return batch

    def merge(self, batch: dict[tuple[int, int, str, str], list[int]]) -> None:
        """Put a batch the store refused back, for the next flush (the metering thread)."""
        for bucket_key, (r, p, c) in batch.items():
            bucket = self._pending.setdefault(bucket_key, [0, 0, 0])
            bucket[0] += r
            bucket[1] += p
            bucket[2] += c

    def store(self, batch: dict[tuple[int, int, str, str], list[int]]) -> bool:
        """Write a taken batch (any thread); False if the store refused it."""
        if not batch:
            return True
        charges = [
            TokenCharge(minute, key_id, model, owner, r, p, c)
            for (minute, key_id, model, owner), (r, p, c) in batch.items()
        ]
        try:
            with self.sessions.begin() as s:
                for ch in charges:
                    row = s.scalar(
                        select(TokenUsageRow).where(
                            TokenUsageRow.minute == ch.minute,
                            TokenUsageRow.key_id == ch.key_id,
                            TokenUsageRow.model == ch.model,
                        )
                    )
                    if row is None:
                        s.add(
                            TokenUsageRow(
                                minute=ch.minute,
                                key_id=ch.key_id,
                                model=ch.model,
                                owner=ch.owner,
                                requests=ch.requests,
                                prompt_tokens=ch.prompt_tokens,
                                completion_tokens=ch.completion_tokens,
                            )
                        )
                    else:
                        row.requests += ch.requests
                        row.prompt_tokens += ch.prompt_tokens
                        row.completion_tokens += ch.completion_tokens
                if self.on_flush is not None:
                    self.on_flush(s, charges)
        except Exception:
            log.exception("token meter flush failed; kept for the next one")
            return False
        return True

    def flush(self) -> None:
        """Take and store at once (when nothing meters concurrently: at shutdown)."""
        batch = self.take()
        if not self.store(batch):
            self.merge(batch)
