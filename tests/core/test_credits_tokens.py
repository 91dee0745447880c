"""Token cost arithmetic: micro-credits, rounded down, cumulative per minute."""

from __future__ import annotations

import itertools

import pytest

from mosu.core.credits_tokens import TokenRate, TokenRateCard, per_million, token_cost_micro

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


def test_flushes_of_a_minute_add_up_to_the_floor_of_its_total():
    card = TokenRateCard([TINY])
    steps = [(0, 0), (1, 0), (2, 1), (3, 1), (3, 2), (101, 57)]
    charged = [card.minute_charge("tiny", 5, a, b) for a, b in itertools.pairwise(steps)]
    assert charged == [0, 2, 1, 1, 132]  # cumulative floors 0, 0, 2, 3, 4, 136
    assert sum(charged) == token_cost_micro(TINY, 101, 57) == 136


def test_rates_apply_from_the_first_whole_minute_and_fall_back_to_any_model():
    card = TokenRateCard(
        [
            TokenRate("*", 0, per_million(1), per_million(1)),
            TokenRate("tiny", 90_000, per_million(2), per_million(4)),  # from 1.5 min on
        ]
    )
    assert card.minute_rate("tiny", 0).prompt_micro_per_m == 1_000_000  # "*" only
    assert card.minute_rate("tiny", 1).prompt_micro_per_m == 1_000_000  # began before 90 s
    assert card.minute_rate("tiny", 2).completion_micro_per_m == 4_000_000
    assert card.minute_rate("other", 2).model == "*"
    assert TokenRateCard([TINY]).minute_rate("other", 2) is None
