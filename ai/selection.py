"""Choosing the model for the next attempt of a call, and waiting when that is the only option.

Filters come first, cheapest first: static ones (this call's exclusions, bad keys, tier,
capability, context fit), then the budget (one read), the breaker (one read per model) and rate
cooldowns. The survivors are ranked by `ai.scoring`. Two rules shape retries:
- after a health failure, prefer any *other* eligible model at once (switch instead of
  waiting); back off with full jitter only when the failed model is the only one left;
- when every model is merely rate-limited, wait for the earliest to come back if that fits in
  the deadline, else give up now rather than sleep into a timeout.
Every choice is logged with the scores and the reasons others were passed over.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from ai.budget import BudgetLimits
from ai.config import ModelEndpoint, Task
from ai.errors import AIUnavailable, BudgetExceeded, InvalidOutput
from ai.pricing import estimate_prompt_tokens, output_cap, worst_case_cost
from ai.scoring import rank
from ai.writer import Requester

if TYPE_CHECKING:
    from ai.router import Router

logger = logging.getLogger("coursegen.ai")

Message = dict[str, str]


@dataclass
class CallState:
    """What one router call has learnt so far; it dies with the call."""

    messages: list[Message]
    deadline: float  # loop time
    attempts: int = 0
    excluded: dict[str, str] = field(default_factory=dict)  # model → why, for this call only
    min_context: int = 0  # after a context overflow: only larger windows
    avoid: str | None = None  # failed last time: take another model if there is one
    health_failures: int = 0  # backoff exponent
    reask: tuple[str, list[Message]] | None = None  # (model, messages) for the one re-ask
    reasked: set[str] = field(default_factory=set)
    last_error: Exception | None = None

    def messages_for(self, model: str) -> list[Message]:
        if self.reask is not None and self.reask[0] == model:
            return self.reask[1]
        self.reask = None  # the re-ask belonged to a model we moved away from
        return self.messages

    def messages_for_estimate(self, model: str) -> list[Message]:
        """The prompt this model would get, without dropping a pending re-ask."""
        return self.reask[1] if self.reask and self.reask[0] == model else self.messages


class Selector:
    def __init__(self, router: Router, rng: random.Random) -> None:
        self.router = router
        self.rng = rng

    def _static_reject(
        self,
        m: ModelEndpoint,
        capabilities: frozenset[str],
        requester: Requester,
        call: CallState,
        needed: int,
    ) -> str | None:
        if m.name in call.excluded:
            return call.excluded[m.name]
        if self.router.health.disabled(m.name):
            return "auth_disabled"
        if not m.allows_tier(requester.tier):
            return "tier"
        if any(not getattr(m.capabilities, c, False) for c in capabilities):
            return "capability"
        if needed > m.context_window or m.context_window < call.min_context:
            return "context"
        return None

    async def choose(
        self, task: Task, capabilities: frozenset[str], requester: Requester, call: CallState
    ) -> ModelEndpoint:
        router, policy = self.router, self.router.policy
        if policy.require_json_mode:
            capabilities = capabilities | {"json_mode"}
        limits = BudgetLimits.from_tier(policy.budget_for(requester.tier))
        while True:
            remaining = await router.budget.remaining(str(requester.user_id), limits)
            rejected: dict[str, str] = {}
            eligible: list[ModelEndpoint] = []
            costs: dict[str, Decimal] = {}
            waits: list[float] = []
            for m in router.models.values():
                prompt = estimate_prompt_tokens(call.messages_for_estimate(m.name))
                max_tokens = output_cap(m, policy.max_tokens[task])
                reason = self._static_reject(m, capabilities, requester, call, prompt + max_tokens)
                if reason is None:
                    costs[m.name] = worst_case_cost(m, prompt, max_tokens)
                    if remaining is not None and costs[m.name] > remaining:
                        reason = "budget"
                if reason is None:
                    state = await router.breaker.state(m.name)
                    reason = None if state.available else f"breaker_{state.value}"
                if reason is None:
                    wait = router.health.wait_for(m.name, prompt + max_tokens)
                    if wait > 0:
                        reason = "rate_limited"
                        waits.append(wait)
                if reason is None:
                    eligible.append(m)
                else:
                    rejected[m.name] = reason
            if eligible:
                return await self._pick(task, requester, call, eligible, costs, rejected)
            if waits:
                await self._wait_for_rate(min(waits), call, rejected)
                continue
            raise self._nothing_left(rejected)

    async def _pick(
        self,
        task: Task,
        requester: Requester,
        call: CallState,
        eligible: list[ModelEndpoint],
        costs: dict[str, Decimal],
        rejected: dict[str, str],
    ) -> ModelEndpoint:
        router, policy = self.router, self.router.policy
        pinned = call.reask[0] if call.reask else None
        if pinned is not None and any(m.name == pinned for m in eligible):
            return router.models[pinned]
        pool = [m for m in eligible if m.name != call.avoid] or eligible
        if call.avoid is not None and pool == [router.models[call.avoid]]:
            await self._backoff(call)  # the failed model is the only one: wait, then retry it
        call.avoid = None
        health = router.health
        ranked = rank(
            pool,
            task=task,
            complexity=policy.complexity.get(task, 0.5),
            quality_bias=policy.quality_bias(requester.tier),
            costs=costs,
            latencies={m.name: health.get(m.name).latency_s for m in pool},
            error_rates={m.name: health.get(m.name).error_rate for m in pool},
        )
        chosen = ranked[0]
        logger.info(
            "ai model chosen",
            extra={
                "ai_task": task,
                "ai_tier": requester.tier,
                "ai_model": chosen.model.name,
                "ai_attempt": call.attempts + 1,
                "ai_scores": {s.model.name: {"score": s.score, **s.parts} for s in ranked},
                "ai_rejected": rejected,
            },
        )
        return chosen.model

    async def _backoff(self, call: CallState) -> None:
        retry = self.router.policy.retry
        cap = min(retry.backoff_max, retry.backoff_base * 2 ** max(0, call.health_failures - 1))
        await asyncio.sleep(self.rng.uniform(0, cap))  # full jitter: no thundering herd

    async def _wait_for_rate(self, delay: float, call: CallState, rejected: dict[str, str]) -> None:
        left = call.deadline - asyncio.get_running_loop().time()
        if delay > left:
            raise AIUnavailable("every model is rate-limited beyond the call's deadline", rejected)
        logger.info("ai waiting for rate limit", extra={"ai_wait_s": round(delay, 3)})
        await asyncio.sleep(delay)

    @staticmethod
    def _nothing_left(rejected: dict[str, str]) -> Exception:
        reasons = set(rejected.values())
        if any(r.startswith("breaker") for r in reasons):
            return AIUnavailable("every usable model's circuit is open", rejected)
        if "budget" in reasons:
            return BudgetExceeded("no model fits the remaining budget")
        if reasons - {"tier", "capability", "context"} == {"invalid_output"}:
            return InvalidOutput("no model produced a valid answer")
        return AIUnavailable("no model can serve this call", rejected)
