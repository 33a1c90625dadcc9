"""The model-usage ledger: tokens and spend per user, per UTC day, per model endpoint.

One row per (user, day, model), added to whenever a generation run books its usage (in the
same transaction as the job's own totals), so the operator's spend reports survive restarts
and agree with the jobs. Money is integer micro-dollars: exact, and summable in SQL on SQLite
and PostgreSQL alike.
"""

from __future__ import annotations

import uuid

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class ModelUsage(Model):
    # What one user's runs spent on one model endpoint on one UTC day.

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="model_usage", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID  # set by Tortoise; declared for type checkers
    day = fields.DateField()
    model = fields.CharField(max_length=100)
    calls = fields.BigIntField(default=0)
    tokens_in = fields.BigIntField(default=0)
    tokens_out = fields.BigIntField(default=0)
    cost_micros = fields.BigIntField(default=0)

    class Meta:
        table = "model_usage"
        unique_together = (("user", "day", "model"),)
        indexes = (Index(fields=("day",), name="ix_model_usage_day"),)
