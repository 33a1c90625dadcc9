"""The model endpoints and router policy, parsed from `settings.models` (JSON or a JSON file).

Example (prices are USD per million tokens; quality is 0..1 per task)::

    {"models": [{"name": "big", "model": "gpt-4.1", "base_url": "https://api.openai.com/v1",
                 "api_key_env": "OPENAI_API_KEY",
                 "price_input_per_mtok": 2.0, "price_output_per_mtok": 8.0,
                 "quality": {"outline": 0.95, "topic": 0.9}, "context_window": 128000,
                 "max_output_tokens": 16000, "rpm": 500, "tpm": 200000,
                 "capabilities": {"json_mode": true, "streaming": true},
                 "tiers": ["standard", "premium"]}],
     "policy": {"budgets": {"free": {"daily_usd": 0.05, "monthly_usd": 1.0}}}}

Everything is validated up front (unknown keys are errors) so a typo in production fails at
start-up, not at the first generation.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ai.errors import ConfigError

Task = Literal["outline", "topic"]
TASKS: tuple[Task, ...] = ("outline", "topic")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Capabilities(_Strict):
    json_mode: bool = False  # accepts response_format={"type": "json_object"}
    streaming: bool = True  # accepts stream=True (+ stream_options.include_usage)
    stream_usage: bool = True  # honours stream_options.include_usage


class ModelEndpoint(_Strict):
    """One OpenAI-compatible endpoint serving one model; `name` is the router's key for it."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-/]+$")
    model: str = Field(min_length=1)  # the model id sent upstream
    base_url: str = Field(min_length=1)
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    price_input_per_mtok: Decimal = Field(ge=0)
    price_output_per_mtok: Decimal = Field(ge=0)
    quality: dict[Task, float] = Field(default_factory=dict)
    context_window: int = Field(gt=0)
    max_output_tokens: int = Field(default=4096, gt=0)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    capabilities: Capabilities = Capabilities()
    # Empty: every tier may use it.
    tiers: frozenset[str] = frozenset()
    # A prior for the latency score until measurements exist.
    expected_latency_ms: float = Field(default=2000.0, gt=0)
    # Newer OpenAI models want max_completion_tokens; most compatible servers want max_tokens.
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"

    def resolve_api_key(self) -> str:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            value = os.environ.get(self.api_key_env)
            if not value:
                raise ConfigError(f"model {self.name}: environment {self.api_key_env} is not set")
            return value
        # Local servers (vLLM, Ollama) accept any key; the client insists on one.
        return "unused"

    def quality_for(self, task: Task) -> float:
        return self.quality.get(task, 0.5)

    def allows_tier(self, tier: str) -> bool:
        return not self.tiers or tier in self.tiers


class Timeouts(_Strict):
    """Seconds. `total` is the one deadline of a router call, retries and fallbacks included."""

    connect: float = Field(default=5.0, gt=0)
    first_token: float = Field(default=30.0, gt=0)
    idle: float = Field(default=20.0, gt=0)
    write: float = Field(default=10.0, gt=0)
    pool: float = Field(default=5.0, gt=0)
    total: float = Field(default=180.0, gt=0)


class RetryPolicy(_Strict):
    max_attempts: int = Field(default=4, ge=1, le=20)  # retries and fallbacks together
    backoff_base: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=8.0, ge=0)
    # A 429 without Retry-After cools the model down this long.
    default_rate_cooldown: float = Field(default=5.0, ge=0)
    # A 401/403 sets the model aside for every call this long (a bad key will not heal soon).
    auth_cooldown: float = Field(default=300.0, ge=0)


class BreakerPolicy(_Strict):
    window_seconds: float = Field(default=60.0, gt=0)
    min_calls: int = Field(default=5, ge=1)
    error_rate: float = Field(default=0.5, gt=0, le=1)
    cooldown_seconds: float = Field(default=30.0, gt=0)


class TierBudget(_Strict):
    """USD per user; None means no limit on that period."""

    daily_usd: Decimal | None = Field(default=None, ge=0)
    monthly_usd: Decimal | None = Field(default=None, ge=0)


class TierWeights(_Strict):
    """How much a tier leans to quality (1) or to cost (0) when scoring models."""

    quality_bias: float = Field(default=0.5, ge=0, le=1)


def _default_tiers() -> dict[str, TierWeights]:
    return {
        "free": TierWeights(quality_bias=0.1),
        "standard": TierWeights(quality_bias=0.5),
        "premium": TierWeights(quality_bias=0.9),
    }


def _default_complexity() -> dict[Task, float]:
    return {"outline": 0.9, "topic": 0.4}


def _default_max_tokens() -> dict[Task, int]:
    return {"outline": 4000, "topic": 3000}


class RouterPolicy(_Strict):
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    cache_ttl_seconds: float = Field(default=3600.0, ge=0)  # 0 disables the response cache
    cache_max_entries: int = Field(default=1000, ge=1)  # in-process LRU only
    # Tier → limits. A tier not listed falls back to "default", else it is unlimited.
    budgets: dict[str, TierBudget] = Field(default_factory=dict)
    tiers: dict[str, TierWeights] = Field(default_factory=_default_tiers)
    # Complexity per task, 0..1: outlines need structure and judgement, topics less so.
    complexity: dict[Task, float] = Field(default_factory=_default_complexity)
    max_tokens: dict[Task, int] = Field(default_factory=_default_max_tokens)
    temperature: float = Field(default=0.4, ge=0, le=2)
    stream: bool = True  # stream when the model can: first-token and idle timeouts need it
    require_json_mode: bool = False  # True: models without json_mode are never chosen
    # None: `<REDIS_NAMESPACE>:ai`.
    redis_prefix: str | None = None

    @field_validator("complexity", "max_tokens", mode="before")
    @classmethod
    def _fill_tasks(cls, value: Any, info: ValidationInfo) -> Any:
        # A config that sets only "outline" keeps the default for "topic".
        if not isinstance(value, dict):
            return value
        if info.field_name == "complexity":
            return {**_default_complexity(), **value}
        return {**_default_max_tokens(), **value}

    def budget_for(self, tier: str) -> TierBudget:
        return self.budgets.get(tier) or self.budgets.get("default") or TierBudget()

    def quality_bias(self, tier: str) -> float:
        weights = self.tiers.get(tier)
        return weights.quality_bias if weights else 0.5


class RouterConfig(_Strict):
    models: list[ModelEndpoint] = Field(min_length=1)
    policy: RouterPolicy = RouterPolicy()

    @model_validator(mode="after")
    def _unique_names(self) -> RouterConfig:
        names = [m.name for m in self.models]
        if len(names) != len(set(names)):
            raise ValueError("model names must be unique")
        return self


def load_config(raw: str) -> RouterConfig:
    """Parse `settings.models`: inline JSON (starts with `{`) or a path to a JSON file."""
    text = raw.strip()
    if not text.startswith("{"):
        path = Path(text).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"COURSEGEN_MODELS: cannot read {path}: {exc.strerror}") from exc
    try:
        return RouterConfig.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"COURSEGEN_MODELS is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"COURSEGEN_MODELS is invalid: {exc}") from exc
