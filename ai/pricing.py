"""Token estimates and costs, in Decimal so sums of many small calls do not drift.

The estimate (~4 characters a token) is deliberately rough: it only has to be good enough to
pick a model whose context fits, to reserve a worst case before a call, and to book an answer
that came without `usage` (flagged as estimated, never booked as zero).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING, Decimal

from ai.config import ModelEndpoint

MICROS = Decimal(1_000_000)
_PER_MESSAGE_OVERHEAD = 4  # role and separators, as chat formats add them


def estimate_tokens(text: str) -> int:
    return max(1, -(-len(text) // 4))  # ceil(len / 4)


def estimate_prompt_tokens(messages: Iterable[Mapping[str, str]]) -> int:
    return sum(estimate_tokens(m.get("content", "")) + _PER_MESSAGE_OVERHEAD for m in messages)


def cost_usd(model: ModelEndpoint, tokens_in: int, tokens_out: int) -> Decimal:
    return (
        Decimal(tokens_in) * model.price_input_per_mtok
        + Decimal(tokens_out) * model.price_output_per_mtok
    ) / MICROS


def output_cap(model: ModelEndpoint, requested: int) -> int:
    """max_tokens actually sent: what the task asks, within what the model can produce."""
    return min(requested, model.max_output_tokens)


def worst_case_cost(model: ModelEndpoint, prompt_tokens: int, max_tokens: int) -> Decimal:
    """What a call can cost at most: the whole prompt plus every allowed output token."""
    return cost_usd(model, prompt_tokens, output_cap(model, max_tokens))


def to_micros(amount: Decimal) -> int:
    """USD → integer micro-dollars, rounded up (a reservation must never undershoot)."""
    return int((amount * MICROS).to_integral_value(rounding=ROUND_CEILING))


def from_micros(micros: int) -> Decimal:
    return Decimal(micros) / MICROS
