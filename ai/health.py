"""What this process has measured about each model: latency and error rate (EWMA), rate-limit
cooldowns (429 / Retry-After, rpm/tpm windows) and keys found bad (401/403).

These are per-process on purpose: they are hints for scoring and short cooldowns, cheap to
lose on restart. The shared, correctness-relevant state (breakers, budgets, cache) lives in
Redis when there is one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ai.config import ModelEndpoint

_ALPHA = 0.2  # EWMA weight of the newest sample: ~the last 10 calls matter
_MINUTE = 60.0


@dataclass
class ModelHealth:
    latency_s: float
    error_rate: float = 0.0
    cooldown_until: float = 0.0  # 429 / Retry-After
    disabled_until: float = 0.0  # bad key
    requests: deque[tuple[float, int]] = field(default_factory=deque)  # (when, tokens)


class HealthBook:
    def __init__(
        self, models: list[ModelEndpoint], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._models = {m.name: m for m in models}
        self._health = {m.name: ModelHealth(latency_s=m.expected_latency_ms / 1000) for m in models}

    def get(self, name: str) -> ModelHealth:
        return self._health[name]

    def record_success(self, name: str, latency_s: float) -> None:
        h = self._health[name]
        h.latency_s += _ALPHA * (latency_s - h.latency_s)
        h.error_rate += _ALPHA * (0.0 - h.error_rate)

    def record_failure(self, name: str) -> None:
        h = self._health[name]
        h.error_rate += _ALPHA * (1.0 - h.error_rate)

    def cool_down(self, name: str, seconds: float) -> None:
        h = self._health[name]
        h.cooldown_until = max(h.cooldown_until, self._clock() + seconds)

    def disable(self, name: str, seconds: float) -> None:
        h = self._health[name]
        h.disabled_until = max(h.disabled_until, self._clock() + seconds)

    def note_request(self, name: str, tokens: int) -> None:
        self._health[name].requests.append((self._clock(), tokens))

    def disabled(self, name: str) -> bool:
        return self._health[name].disabled_until > self._clock()

    def wait_for(self, name: str, tokens: int) -> float:
        """Seconds until the model may be called (0: now): the later of its 429 cooldown and
        the moment its rpm/tpm minute window has room for `tokens`."""
        now = self._clock()
        h, model = self._health[name], self._models[name]
        while h.requests and h.requests[0][0] <= now - _MINUTE:
            h.requests.popleft()
        ready = max(now, h.cooldown_until)
        if model.rpm is not None and len(h.requests) >= model.rpm:
            ready = max(ready, h.requests[len(h.requests) - model.rpm][0] + _MINUTE)
        if model.tpm is not None:
            used = sum(t for _, t in h.requests)
            for when, spent in h.requests:  # oldest first: wait until enough has left
                if used + tokens <= model.tpm:
                    break
                used -= spent
                ready = max(ready, when + _MINUTE)
        return ready - now

    def now(self) -> float:
        return self._clock()
