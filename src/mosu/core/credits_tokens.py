"""Token prices on the rate card: credits per million prompt and completion tokens per
model (``*`` for a model the card does not name), each from a time on. Pure and integer:
rates are micro-credits per million tokens, so a token costs ``rate / 10⁶`` micro-credits.

The gateway meters tokens per (key, model, minute) and stores them about once a second,
so a minute is stored in several flushes. Tokens are priced at the rate in force when
they are stored, and a minute's charge is defined cumulatively per rate: since the rate
in force took over the minute, its tokens cost ``floor((prompt × prompt_rate +
completion × completion_rate) / 10⁶)`` micro-credits, and each flush charges the
difference from what was charged already. However often a minute is flushed, its
charges add up to the floor of its exact cost under each rate: the ledger is below
``tokens × rate`` by less than one micro-credit per (key, model, minute) and rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mosu.core.credits import MICRO

ANY_MODEL = "*"
"""Rate-card name of the token rate for a model the card does not name."""
TOKENS_PER_RATE = 1_000_000
"""Token rates are per million tokens."""


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


def rate_line(rate: TokenRate | None) -> str:
    """A name for the line a minute is priced at ("" for none)."""
    return "" if rate is None else f"{rate.model}@{rate.effective_ms}"


@dataclass(frozen=True, slots=True)
class MinuteCharge:
    """What one (key, model, minute) was charged for so far."""

    prompt: int = 0
    completion: int = 0
    amount_micro: int = 0
    line: str = ""
    """The rate line the tokens since ``base_*`` are priced at."""
    base_prompt: int = 0
    base_completion: int = 0
    base_micro: int = 0
    """The totals and the amount when that line took over the minute."""

    def charge_to(
        self, rate: TokenRate | None, prompt: int, completion: int
    ) -> tuple[MinuteCharge, int]:
        """Charge the minute up to these totals at ``rate`` (the one in force when they
        are stored): the new state and the micro-credits to charge now. The same totals
        again charge nothing; a new rate prices only the tokens after it."""
        base = (self.base_prompt, self.base_completion, self.base_micro)
        if rate_line(rate) != self.line:
            base = (self.prompt, self.completion, self.amount_micro)
        total = base[2] + token_cost_micro(rate, prompt - base[0], completion - base[1])
        state = MinuteCharge(prompt, completion, total, rate_line(rate), *base)
        return state, total - self.amount_micro


def per_million(credits_per_m: float) -> int:
    """Credits per million tokens (as typed) to micro-credits per million, rounded."""
    return round(credits_per_m * MICRO)
