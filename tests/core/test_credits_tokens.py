"""Token cost arithmetic: micro-credits, rounded down, cumulative per minute and rate."""

from __future__ import annotations

import pytest

from mosu.core.credits_tokens import (
    MinuteCharge,
    TokenRate,
    TokenRateCard,
    per_million,
    token_cost_micro,
)

# 0.5 credits per 1M prompt tokens = 0.5 micro-credits per token; 1.5 per 1M completion.
TINY = TokenRate("tiny", 0, per_million(0.5), per_million(1.5))


@pytest.mark.parametrize(
    ("prompt", "completion", "micro"),
    [
        (0, 0, 0),
        (1, 0, 0),  # 0.5 micro-credit rounds down
        (2, 0, 1),
        (0, 1, 1),  # 1.5 rounds down
        (1, 1, 2),  # 0.5 + 1.5 exactly
        (3, 3, 6),
        (1_000_000, 0, 500_000),  # 0.5 credit
        (1_000_000, 1_000_000, 2_000_000),
        (7, 5, 11),  # 3.5 + 7.5 = 11 exactly
        (7, 4, 9),  # 3.5 + 6 = 9.5 → 9
    ],
)
def test_token_cost_is_floor_of_exact_micro_credits(prompt: int, completion: int, micro: int):
    assert token_cost_micro(TINY, prompt, completion) == micro


def test_no_rate_costs_nothing():
    assert token_cost_micro(None, 10**9, 10**9) == 0


def _flushes(
    steps: list[tuple[TokenRate | None, int, int]],
) -> tuple[list[int], MinuteCharge]:
    state, charged = MinuteCharge(), []
    for rate, prompt, completion in steps:
        state, amount = state.charge_to(rate, prompt, completion)
        charged.append(amount)
    return charged, state


def test_flushes_of_a_minute_add_up_to_the_floor_of_its_total():
    totals = [(1, 0), (2, 1), (3, 1), (3, 2), (101, 57), (101, 57)]
    charged, state = _flushes([(TINY, p, c) for p, c in totals])
    # cumulative floors 0, 2, 3, 4, 136, 136: the same totals again charge nothing
    assert charged == [0, 2, 1, 1, 132, 0]
    assert sum(charged) == state.amount_micro == token_cost_micro(TINY, 101, 57) == 136


def test_a_new_rate_prices_only_the_tokens_stored_after_it():
    dear = TokenRate("tiny", 30_000, per_million(10), per_million(0))
    charged, state = _flushes([(None, 5, 5), (TINY, 7, 6), (TINY, 9, 6), (dear, 10, 6)])
    # unpriced, then 2p 1c at 0.5/1.5 (2.5 → 2), then 4p 1c (3.5 → 3), then 1p at 10
    assert charged == [0, 2, 1, 10]
    assert (state.base_prompt, state.base_completion, state.base_micro) == (9, 6, 3)


def test_rates_fall_back_to_any_model_until_the_model_has_its_own():
    card = TokenRateCard(
        [
            TokenRate("*", 0, per_million(1), per_million(1)),
            TokenRate("tiny", 90_000, per_million(2), per_million(4)),
        ]
    )
    assert card.rate("tiny", 89_999).model == "*"
    assert card.rate("tiny", 90_000).completion_micro_per_m == 4_000_000
    assert card.rate("other", 90_000).model == "*"
    assert TokenRateCard([TINY]).rate("other", 90_000) is None
