"""One attempt on one model: breaker admission, budget reservation, the request, billing,
validation, caching; and, whatever happens, the reservation settled and the breaker told.

It runs inside the coalescer's shared task, so when several identical calls share it, the call
that started it pays (its user's budget is reserved, its job's `Usage` is booked); the others
get the answer as they would a cache hit. Cleanup in `finally` is shielded: a cancellation
(the last caller gone, the deadline) must not skip releasing money or a probe lease.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ai.breaker import Admission, Outcome
from ai.budget import BudgetLimits, Reservation
from ai.config import ModelEndpoint
from ai.errors import AttemptError, NotAttempted, OutputRejected
from ai.json_output import parse_answer
from ai.pricing import cost_usd, estimate_prompt_tokens, estimate_tokens, worst_case_cost
from ai.upstream import Completion, call
from ai.writer import Requester, Usage
from observability import metrics

if TYPE_CHECKING:
    from ai.router import Router

logger = logging.getLogger("coursegen.ai")


def bill(
    model: ModelEndpoint, messages: list[dict[str, str]], completion: Completion
) -> tuple[int, int, Decimal, bool]:
    """(tokens in, tokens out, cost, estimated): what the provider reported, or an estimate
    flagged as such when it reported nothing; never zero for an answer that was produced."""
    if completion.tokens_in is not None and completion.tokens_out is not None:
        tin, tout, estimated = completion.tokens_in, completion.tokens_out, False
    else:
        tin = estimate_prompt_tokens(messages)
        tout = estimate_tokens(completion.text)
        estimated = True
    return tin, tout, cost_usd(model, tin, tout), estimated


def observe_call(
    model: str,
    outcome: str,
    seconds: float,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost: Decimal = Decimal(0),
) -> None:
    """Prometheus: one upstream call (never a cache hit or a shared, coalesced call)."""
    metrics.MODEL_CALLS.labels(model, outcome).inc()
    metrics.MODEL_LATENCY.labels(model).observe(seconds)
    if tokens_in or tokens_out:
        metrics.MODEL_TOKENS.labels(model, "in").inc(tokens_in)
        metrics.MODEL_TOKENS.labels(model, "out").inc(tokens_out)
    if cost:
        metrics.MODEL_COST.labels(model).inc(float(cost))


class AttemptRunner:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def run(
        self,
        model: ModelEndpoint,
        messages: list[dict[str, str]],
        max_tokens: int,
        schema: type[BaseModel],
        requester: Requester,
        usage: Usage,
        key: str,
    ) -> str:
        """The validated answer as JSON text; an `AttemptError` otherwise."""
        router, name = self.router, model.name
        admission = await router.breaker.admit(name)
        if admission is Admission.DENY:
            raise NotAttempted(name, "circuit open, probe in flight", reason="breaker")
        probe = admission is Admission.PROBE
        outcome = Outcome.RELEASE
        reservation: Reservation | None = None
        try:
            prompt_tokens = estimate_prompt_tokens(messages)
            limits = BudgetLimits.from_tier(router.policy.budget_for(requester.tier))
            worst = worst_case_cost(model, prompt_tokens, max_tokens)
            reservation = await router.budget.reserve(str(requester.user_id), limits, worst)
            if reservation is None:
                raise NotAttempted(name, "budget reservation refused", reason="budget")
            usage.attempts += 1
            router.health.note_request(name, prompt_tokens + max_tokens)
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                completion = await call(
                    router.clients[name],
                    model,
                    messages,
                    max_tokens=max_tokens,
                    temperature=router.policy.temperature,
                    stream=router.policy.stream,
                    timeouts=router.policy.timeouts,
                )
            except AttemptError as exc:
                observe_call(name, exc.code, loop.time() - started)
                if exc.health:
                    outcome = Outcome.FAILURE
                    router.health.record_failure(name)
                raise
            outcome = Outcome.SUCCESS  # the endpoint worked, whatever the answer is worth
            elapsed = loop.time() - started
            router.health.record_success(name, elapsed)
            tin, tout, cost, estimated = bill(model, messages, completion)
            usage.add(name, tin, tout, cost, estimated=estimated)
            cut = completion.finish_reason == "length"
            observe_call(name, "truncated" if cut else "ok", elapsed, tin, tout, cost)
            if estimated:
                logger.warning("ai usage estimated", extra={"ai_model": name, "ai_cost": str(cost)})
            settled, reservation = reservation, None
            await asyncio.shield(router.budget.settle(settled, cost))
            if completion.finish_reason == "length":
                raise OutputRejected(
                    name, "- (root): answer cut off at max_tokens", completion.text, reaskable=False
                )
            text = parse_answer(completion.text, schema, model=name).model_dump_json()
            await router.cache.set(key, text, router.policy.cache_ttl_seconds)
            return text
        finally:
            if reservation is not None:  # nothing billed: give it all back
                await asyncio.shield(router.budget.settle(reservation, Decimal(0)))
            if probe or outcome is not Outcome.RELEASE:
                await asyncio.shield(router.breaker.record(name, outcome, probe=probe))
