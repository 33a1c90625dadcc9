"""Course-generation jobs and their accounting."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class GenerationJob(Model):
    id = fields.UUIDField(primary_key=True)
    course: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Course", related_name="generation_jobs", on_delete=fields.CASCADE
    )
    course_id: uuid.UUID  # set by Tortoise; declared for type checkers
    requester: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="generation_jobs", on_delete=fields.CASCADE
    )
    requester_id: uuid.UUID  # set by Tortoise; declared for type checkers
    status = fields.CharEnumField(JobStatus, default=JobStatus.QUEUED, max_length=16)
    stage = fields.CharField(max_length=32, null=True)
    progress = fields.FloatField(default=0.0)
    attempts = fields.IntField(default=0)
    error_code = fields.CharField(max_length=64, null=True)
    error_message = fields.TextField(null=True)
    request: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    models_used: fields.JSONField[list[str]] = fields.JSONField(default=list)
    tokens_in = fields.IntField(default=0)
    tokens_out = fields.IntField(default=0)
    cost_usd = fields.DecimalField(max_digits=12, decimal_places=6, default=0)
    idempotency_key = fields.CharField(max_length=128, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "generation_jobs"
        unique_together = (("requester", "idempotency_key"),)
        indexes = (
            Index(fields=("course_id",), name="ix_generation_jobs_course"),
            Index(fields=("requester_id", "created_at"), name="ix_generation_jobs_requester"),
            Index(fields=("status", "created_at"), name="ix_generation_jobs_status"),
        )
