"""Token prices on the rate card: credits per million prompt and completion tokens per
model (``*`` for a model the card does not name), each from a time on. Pure and integer:
rates are micro-credits per million tokens, so a token costs ``rate / 10⁶`` micro-credits.

The gateway meters tokens per (key, model, minute) and stores each minute in several
flushes. A minute's charge is defined cumulatively, like a replica's run: its tokens so far
cost ``floor((prompt × prompt_rate + completion × completion_rate) / 10⁶)`` micro-credits
at the rate in force when the minute began, and each flush charges the difference from
what the minute was charged already. However often a minute is flushed, its charges add
up to the floor of its exact cost: the ledger is below ``tokens × rate`` by less than one
micro-credit per (key, model, minute).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mosu.core.credits import MICRO

ANY_MODEL = "*"
"""Rate-card name of the token rate for a model the card does not name."""
TOKENS_PER_RATE = 1_000_000
"""Token rates are per million tokens."""
MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class TokenRate:
    """One model's token prices from ``effective_ms`` on, until a later line for it."""

    model: str
    effective_ms: int
    prompt_micro_per_m: int
    """Micro-credits per million prompt tokens (= credits per token)."""
    completion_micro_per_m: int


def token_cost_micro(rate: TokenRate | None, prompt: int, completion: int) -> int:
    """The cost of these tokens, rounded down to a micro-credit (0 without a rate)."""
    if rate is None:
        return 0
    exact = prompt * rate.prompt_micro_per_m + completion * rate.completion_micro_per_m
    return exact // TOKENS_PER_RATE


class TokenRateCard:
    """Token rates over time per model; a model without a line in force (its own or
    ``*``) costs nothing."""

    def __init__(self, rates: Iterable[TokenRate]) -> None:
        by_model: dict[str, list[TokenRate]] = {}
        for r in sorted(rates, key=lambda r: (r.model, r.effective_ms)):
            by_model.setdefault(r.model, []).append(r)
        self._rates = by_model

    @property
    def empty(self) -> bool:
        return not self._rates

    def rate(self, model: str, t_ms: int) -> TokenRate | None:
        """The line in force at ``t_ms``: the model's own once it has one, else ``*``."""
        for name in (model, ANY_MODEL):
            found = None
            for r in self._rates.get(name, []):
                if r.effective_ms > t_ms:
                    break
                found = r
            if found is not None:
                return found
        return None

    def minute_rate(self, model: str, minute: int) -> TokenRate | None:
        """A minute's tokens are priced at the rate in force when it began, so a rate
        applies from the first whole minute at or after its time (never before it)."""
        return self.rate(model, minute * MINUTE_MS)

    def minute_charge(
        self, model: str, minute: int, before: tuple[int, int], after: tuple[int, int]
    ) -> int:
        """What a flush that takes a minute's (prompt, completion) totals from ``before``
        to ``after`` is charged: the difference of the rounded cumulative costs."""
        rate = self.minute_rate(model, minute)
        return token_cost_micro(rate, *after) - token_cost_micro(rate, *before)


def per_million(credits_per_m: float) -> int:
    """Credits per million tokens (as typed) to micro-credits per million, rounded."""
    return round(credits_per_m * MICRO)
