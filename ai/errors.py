"""Typed errors of the AI router, each with a stable `code`.

Two families. Call-level errors (`AIError` subclasses raised out of the router) are what the
generation pipeline sees and maps to job errors: `BUDGET_EXCEEDED`, `AI_UNAVAILABLE`,
`AI_TIMEOUT`, `AI_INVALID_OUTPUT`. Attempt-level errors (`AttemptError` subclasses) describe why
one upstream attempt failed; the router uses their class to decide what happens next (retry the
same model, switch, cool the model down, or never touch it again in this call). Keeping the
decision in the type, not in string matching spread over the router, makes the policy testable.
"""

from __future__ import annotations

import email.utils
import time
from datetime import UTC


class AIError(Exception):
    """Base of everything the router raises; `code` is stable and safe to show a client."""

    code = "AI_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BudgetExceeded(AIError):
    """No allowed model fits the user's remaining daily or monthly budget."""

    code = "BUDGET_EXCEEDED"


class AIUnavailable(AIError):
    """No model could answer: all excluded, circuit-open, rate-limited past the deadline, or the
    attempt budget ran out. `reasons` says why each model was passed over (for logs only)."""

    code = "AI_UNAVAILABLE"

    def __init__(self, message: str, reasons: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reasons = dict(reasons or {})


class DeadlineExceeded(AIError):
    """The call's single deadline passed (covers every retry and fallback)."""

    code = "AI_TIMEOUT"


class InvalidOutput(AIError):
    """Every model that answered gave output that failed validation, even after a re-ask."""

    code = "AI_INVALID_OUTPUT"


class ConfigError(AIError):
    """The model configuration cannot be used; the message says what to fix."""

    code = "AI_CONFIG"


# --- attempt-level errors --------------------------------------------------------------------


class AttemptError(Exception):
    """One attempt on one model failed. `health` says whether it counts against the model's
    circuit breaker (server/network trouble) or not (our request, our key, our rate)."""

    code = "AI_ATTEMPT_FAILED"
    health = False

    def __init__(self, model: str, message: str) -> None:
        super().__init__(f"{model}: {message}")
        self.model = model
        self.message = message


class NotAttempted(AttemptError):
    """Nothing was sent: the breaker refused (another caller holds the probe) or the atomic
    budget reservation failed. The router tries another model without spending an attempt."""

    code = "AI_NOT_ATTEMPTED"

    def __init__(self, model: str, message: str, *, reason: str) -> None:
        super().__init__(model, message)
        self.reason = reason  # "breaker" | "budget"


class AuthFailed(AttemptError):
    """401/403: retrying the same key cannot help; the model is set aside, fallbacks are fine."""

    code = "AI_AUTH"


class BadRequest(AttemptError):
    """Another 4xx: this request is wrong for this model; do not repeat it there."""

    code = "AI_BAD_REQUEST"


class ContextOverflow(AttemptError):
    """The prompt does not fit: only a model with a larger context window can help."""

    code = "AI_CONTEXT_OVERFLOW"


class RateLimited(AttemptError):
    """429: the model is healthy but busy. A cooldown, not a breaker failure."""

    code = "AI_RATE_LIMITED"

    def __init__(self, model: str, message: str, retry_after: float | None) -> None:
        super().__init__(model, message)
        self.retry_after = retry_after


class UpstreamFailure(AttemptError):
    """5xx, connection refused/reset: a health failure of the endpoint."""

    code = "AI_UPSTREAM"
    health = True


class UpstreamTimeout(UpstreamFailure):
    """Connect, first-token or idle timeout: a health failure."""

    code = "AI_UPSTREAM_TIMEOUT"


class StreamBroken(UpstreamFailure):
    """A stream ended without a finish_reason (cut mid-way): a failure, never a short answer."""

    code = "AI_STREAM_BROKEN"


class OutputRejected(AttemptError):
    """The answer arrived but is not valid JSON for the schema. `errors` is quoted in the
    re-ask; `reaskable` is False when a re-ask cannot help (the answer was truncated)."""

    code = "AI_OUTPUT_REJECTED"

    def __init__(self, model: str, errors: str, answer: str, *, reaskable: bool = True) -> None:
        super().__init__(model, errors)
        self.errors = errors
        self.answer = answer
        self.reaskable = reaskable


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value: delta-seconds or an HTTP date. None if absent
    or unparseable; never negative."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
