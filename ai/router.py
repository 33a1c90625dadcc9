"""The router: for each call, choose a model, try it, and retry, switch or give up.

One call has one deadline (`timeouts.total`) and one attempt budget (`retry.max_attempts`)
shared by retries and fallbacks. Each turn of the loop:
1. choose (`ai.selection`): filter the models (capability, tier, context fit, this call's
   exclusions, bad keys, remaining budget, breaker, rate cooldowns) and rank the rest;
2. serve from the cache if this exact prompt was answered and validated before;
3. otherwise run the attempt through the coalescer (`ai.attempt`), so identical concurrent
   calls share one upstream request;
4. on failure, let the error's type decide: 401/403 and other 4xx set the model aside for the
   call, a context overflow asks for a larger window, 429 cools the model down, 5xx/timeouts/
   broken streams make the next turn prefer another model (or back off when there is none),
   and invalid output earns exactly one re-ask on the same model quoting the errors.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import openai
from pydantic import BaseModel, ValidationError

import keyspace
from ai.attempt import AttemptRunner
from ai.breaker import MemoryBreaker, RedisBreaker
from ai.budget import BudgetStore, MemoryBudget, RedisBudget
from ai.config import ModelEndpoint, RouterConfig, Task
from ai.errors import (
    AIUnavailable,
    AttemptError,
    AuthFailed,
    BadRequest,
    ContextOverflow,
    DeadlineExceeded,
    InvalidOutput,
    NotAttempted,
    OutputRejected,
    RateLimited,
    UpstreamFailure,
)
from ai.health import HealthBook
from ai.pricing import output_cap
from ai.response_cache import Coalescer, MemoryCache, RedisCache, ResponseCache, cache_key
from ai.selection import CallState, Selector
from ai.upstream import make_client
from ai.writer import Requester, Usage

logger = logging.getLogger("coursegen.ai")

M = TypeVar("M", bound=BaseModel)
Message = dict[str, str]


@dataclass(frozen=True)
class CallSpec(Generic[M]):
    """What to ask: the task (steers choice), the prompt, the schema the answer must meet."""

    task: Task
    messages: list[Message]
    schema: type[M]
    capabilities: frozenset[str] = field(default_factory=frozenset)


_REASK = (
    "Your previous answer could not be used because it failed validation:\n{errors}\n"
    "Reply again with one JSON object that satisfies the requested shape. JSON only, no prose."
)


class Router:
    def __init__(
        self,
        config: RouterConfig,
        *,
        breaker: MemoryBreaker | RedisBreaker,
        budget: BudgetStore,
        cache: ResponseCache,
        clients: dict[str, openai.AsyncOpenAI] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.policy = config.policy
        self.models: dict[str, ModelEndpoint] = {m.name: m for m in config.models}
        self.health = HealthBook(config.models)
        self.breaker = breaker
        self.budget = budget
        self.cache = cache
        self.coalescer = Coalescer()
        self.clients = clients or {
            m.name: make_client(m, self.policy.timeouts) for m in config.models
        }
        self.selector = Selector(self, rng or random.Random())
        self.runner = AttemptRunner(self)

    @classmethod
    def from_config(cls, config: RouterConfig, redis: Any | None = None) -> Router:
        """Shared state in Redis when a client is given, in this process otherwise."""
        p = config.policy
        probe_ttl = p.timeouts.total  # a probe cannot outlive the call that carries it
        # A hold outlives its call only when the worker died before settling it.
        hold = p.timeouts.total + 60
        if redis is not None:
            prefix = p.redis_prefix or keyspace.key("ai")
            return cls(
                config,
                breaker=RedisBreaker(redis, p.breaker, probe_ttl=probe_ttl, prefix=prefix),
                budget=RedisBudget(redis, prefix=prefix, reservation_seconds=hold),
                cache=RedisCache(redis, prefix=prefix),
            )
        return cls(
            config,
            breaker=MemoryBreaker(p.breaker, probe_ttl=probe_ttl),
            budget=MemoryBudget(reservation_seconds=hold),
            cache=MemoryCache(p.cache_max_entries),
        )

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.close()

    async def complete(self, spec: CallSpec[M], requester: Requester, usage: Usage) -> M:
        """A validated answer, or a typed `AIError` (budget, unavailable, deadline, invalid)."""
        total = self.policy.timeouts.total
        call = CallState(messages=spec.messages, deadline=asyncio.get_running_loop().time() + total)
        deadline = asyncio.timeout(total)
        try:
            async with deadline:
                return await self._loop(spec, requester, usage, call)
        except TimeoutError:
            if not deadline.expired():  # not ours: let it through as it is
                raise
            raise DeadlineExceeded(f"no valid answer within {total:g}s") from call.last_error

    async def _loop(
        self, spec: CallSpec[M], requester: Requester, usage: Usage, call: CallState
    ) -> M:
        max_attempts = self.policy.retry.max_attempts
        while True:
            if call.attempts >= max_attempts:
                if isinstance(call.last_error, OutputRejected):
                    raise InvalidOutput(
                        f"no valid answer after {call.attempts} attempts"
                    ) from call.last_error
                raise AIUnavailable(
                    f"no valid answer after {call.attempts} attempts", call.excluded
                ) from call.last_error
            model = await self.selector.choose(spec.task, spec.capabilities, requester, call)
            messages = call.messages_for(model.name)
            max_tokens = output_cap(model, self.policy.max_tokens[spec.task])
            key = cache_key(
                endpoint=model.name,
                base_url=model.base_url,
                model=model.model,
                messages=messages,
                max_tokens=max_tokens,
                temperature=self.policy.temperature,
                json_mode=model.capabilities.json_mode,
                schema=spec.schema.__name__,
            )
            if (cached := await self._cached(key, spec.schema, model.name)) is not None:
                return cached
            call.attempts += 1
            joined = self.coalescer.has(key)  # no await until `run`: still true there
            try:
                attempt = partial(
                    self.runner.run, model, messages, max_tokens, spec.schema, requester, usage, key
                )
                text, _ = await self.coalescer.run(key, attempt)
                return spec.schema.model_validate_json(text)
            except NotAttempted as exc:
                call.attempts -= 1  # nothing was sent, so nothing spent
                # Refused for the caller that started the shared attempt (its budget, its
                # probe): a caller that only joined it tries again on its own account.
                if not joined:
                    call.excluded[model.name] = exc.reason
            except AttemptError as exc:
                call.last_error = exc
                self._after_failure(model, messages, exc, call)

    async def _cached(self, key: str, schema: type[M], model: str) -> M | None:
        if self.policy.cache_ttl_seconds <= 0:
            return None
        hit = await self.cache.get(key)
        if hit is None:
            return None
        try:
            result = schema.model_validate_json(hit)
        except ValidationError:  # written by an older schema: ignore it, it will be replaced
            return None
        logger.info("ai cache hit", extra={"ai_model": model, "ai_cache_key": key[:16]})
        return result

    def _after_failure(
        self, model: ModelEndpoint, messages: list[Message], exc: AttemptError, call: CallState
    ) -> None:
        name, retry = model.name, self.policy.retry
        logger.warning(
            "ai attempt failed",
            extra={"ai_model": name, "ai_error": exc.code, "ai_detail": exc.message},
        )
        if isinstance(exc, AuthFailed):
            call.excluded[name] = "auth"
            self.health.disable(name, retry.auth_cooldown)
        elif isinstance(exc, ContextOverflow):
            call.excluded[name] = "context_overflow"
            call.min_context = max(call.min_context, model.context_window + 1)
        elif isinstance(exc, RateLimited):
            wait = retry.default_rate_cooldown if exc.retry_after is None else exc.retry_after
            self.health.cool_down(name, wait)
        elif isinstance(exc, OutputRejected):
            if exc.reaskable and name not in call.reasked:
                call.reasked.add(name)
                call.reask = (
                    name,
                    [
                        *messages,
                        {"role": "assistant", "content": exc.answer},
                        {"role": "user", "content": _REASK.format(errors=exc.errors)},
                    ],
                )
            else:
                call.excluded[name] = "invalid_output"
                call.reask = None
        elif isinstance(exc, UpstreamFailure):
            call.avoid = name
            call.health_failures += 1
        elif isinstance(exc, BadRequest):
            call.excluded[name] = "bad_request"
        else:  # an attempt error without a rule of its own: do not repeat it on this model
            call.excluded[name] = exc.code
