"""Per-key limits over a sliding minute: requests per minute and tokens per minute.

Pure bookkeeping on times passed in (no clock here). Tokens are known only after an
answer, so a key may overshoot its token limit by one request; the next one waits."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

WINDOW_S = 60.0


@dataclass(slots=True)
class _Window:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0

    def expire(self, now: float) -> None:
        edge = now - WINDOW_S
        while self.requests and self.requests[0] <= edge:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= edge:
            self.token_sum -= self.tokens.popleft()[1]


class KeyLimits:
    def __init__(self) -> None:
        self._windows: dict[int, _Window] = {}

    def admit(self, key_id: int, rpm: int | None, tpm: int | None, now: float) -> float | None:
        """Count a request if the key may make it now; otherwise the seconds to wait."""
        window = self._windows.setdefault(key_id, _Window())
        window.expire(now)
        waits = []
        if rpm is not None and len(window.requests) >= rpm:
            waits.append(window.requests[len(window.requests) - rpm] + WINDOW_S - now)
        if tpm is not None and window.token_sum >= tpm:
            excess, freed = window.token_sum - tpm, 0
            for at, count in window.tokens:
                freed += count
                if freed > excess:
                    waits.append(at + WINDOW_S - now)
                    break
        if waits:
            return max(0.001, max(waits))
        window.requests.append(now)
        return None

    def add_tokens(self, key_id: int, tokens: int, now: float) -> None:
        if tokens <= 0:
            return
        window = self._windows.setdefault(key_id, _Window())
        window.tokens.append((now, tokens))
        window.token_sum += tokens


def retry_after(seconds: float) -> str:
    """``Retry-After`` in whole seconds, never 0."""
    return str(max(1, math.ceil(seconds)))
