"""The operator's surface, without GraphQL: who is an operator, and the health of the model
endpoints. (Spend per user and day: services/model_usage.py. Queue depth and dead letters:
generation/dead_letters.py, which services may not import.)

An operator is a user whose role is `admin`. Every admin field is refused with FORBIDDEN for
anyone else, before any lookup: the surface is in the published schema anyway, so saying
"not yours" discloses nothing, while NOT_FOUND would only make a permission problem look like
a typo. `manage.py grant-admin <email>` makes an operator (the role is read on every request,
so it takes effect at the next one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ai.breaker import BreakerState
from models import User, UserRole
from services.accounts import Viewer
from services.errors import DomainError, ErrorCode, forbidden, not_found


def require_admin(viewer: Viewer | None) -> Viewer:
    """The viewer if an operator; UNAUTHENTICATED without one, FORBIDDEN otherwise."""
    if viewer is None:
        raise DomainError(ErrorCode.UNAUTHENTICATED, "Log in to do this.")
    if viewer.role is not UserRole.ADMIN:
        raise forbidden("Only operators (role admin) may use the operations surface.")
    return viewer


async def set_role(email: str, role: UserRole) -> User:
    """Give the user with this email the role (grant-admin / revoke-admin)."""
    user = await User.get_or_none(email=email.strip().lower())
    if user is None:
        raise not_found("user with that email", field="email")
    if user.role is not role:
        user.role = role
        await user.save(update_fields=["role", "updated_at"])
    return user


@dataclass(frozen=True)
class EndpointHealth:
    """What this process knows about one model endpoint; the breaker is shared (Redis)."""

    name: str
    model: str
    breaker: BreakerState
    # Takes calls now: breaker closed (or a probe slot free), not cooling down, key not bad.
    available: bool
    latency_ms: float
    error_rate: float
    cooldown_seconds: float
    disabled_seconds: float


async def model_health(writer: Any) -> list[EndpointHealth]:
    """Every endpoint the course writer may call, with its breaker and measured health.

    The offline writer (no endpoints configured) is one always-available endpoint.
    """
    router = getattr(writer, "router", None)
    if router is None:
        name = str(getattr(writer, "name", "offline"))
        return [EndpointHealth(name, name, BreakerState.CLOSED, True, 0.0, 0.0, 0.0, 0.0)]
    now = router.health.now()
    endpoints = []
    for name, endpoint in router.models.items():
        health = router.health.get(name)
        state = await router.breaker.state(name)
        cooldown = max(0.0, health.cooldown_until - now)
        disabled = max(0.0, health.disabled_until - now)
        endpoints.append(
            EndpointHealth(
                name=name,
                model=endpoint.model,
                breaker=state,
                available=state.available and cooldown == 0 and disabled == 0,
                latency_ms=round(health.latency_s * 1000, 1),
                error_rate=round(health.error_rate, 4),
                cooldown_seconds=round(cooldown, 3),
                disabled_seconds=round(disabled, 3),
            )
        )
    return endpoints
