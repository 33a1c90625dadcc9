"""A learner's own state on topics: progress, notes and bookmarks."""

from __future__ import annotations

import uuid

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class TopicProgress(Model):
    id = fields.UUIDField(primary_key=True)
    user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="progress", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID  # set by Tortoise; declared for type checkers
    topic: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Topic", related_name="progress", on_delete=fields.CASCADE
    )
    topic_id: uuid.UUID  # set by Tortoise; declared for type checkers
    completed = fields.BooleanField(default=False)
    completed_at = fields.DatetimeField(null=True)
    score = fields.IntField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "topic_progress"
        unique_together = (("user", "topic"),)
        indexes = (Index(fields=("topic_id",), name="ix_topic_progress_topic"),)


class Note(Model):
    id = fields.UUIDField(primary_key=True)
    user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="notes", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID  # set by Tortoise; declared for type checkers
    topic: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Topic", related_name="notes", on_delete=fields.CASCADE
    )
    topic_id: uuid.UUID  # set by Tortoise; declared for type checkers
    body = fields.TextField()
    version = fields.IntField(default=1)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "notes"
        indexes = (
            Index(fields=("user_id", "topic_id"), name="ix_notes_user_topic"),
            Index(fields=("topic_id",), name="ix_notes_topic"),
        )


class Bookmark(Model):
    id = fields.UUIDField(primary_key=True)
    user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="bookmarks", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID  # set by Tortoise; declared for type checkers
    topic: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.Topic", related_name="bookmarks", on_delete=fields.CASCADE
    )
    topic_id: uuid.UUID  # set by Tortoise; declared for type checkers
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "bookmarks"
        unique_together = (("user", "topic"),)
        indexes = (Index(fields=("topic_id",), name="ix_bookmarks_topic"),)
