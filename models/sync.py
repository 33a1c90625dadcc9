"""Sync bookkeeping: scope versions and their change entries, client groups and clients,
stored mutation results, and the log of rejected or conflicting intents."""

from __future__ import annotations

import uuid

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class SyncScope(Model):
    """A unit of sync (`user:<id>` or `course:<id>`) with its version counter.

    Every write locks the row, bumps `version` once and stamps the entries it changes with it.
    `gc_version`: the highest version of a tombstone garbage-collected from this scope; a client
    whose cookie is older must reset the scope.
    """

    key = fields.CharField(max_length=64, primary_key=True)
    version = fields.BigIntField(default=0)
    gc_version = fields.BigIntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "sync_scopes"


class SyncEntry(Model):
    """The latest state of one row of a scope, as sync sends it: PUT (data) or DEL (tombstone)."""

    id = fields.BigIntField(primary_key=True)
    scope = fields.CharField(max_length=64)
    type = fields.CharField(max_length=16)
    entity_id = fields.CharField(max_length=36)
    version = fields.BigIntField()
    op = fields.CharField(max_length=3)
    data = fields.TextField(null=True)  # JSON text of the row (PUT)
    clocks = fields.TextField(default="{}")  # JSON {field: hlc} of per-field last writers
    changed_at = fields.DatetimeField()

    class Meta:
        table = "sync_entries"
        unique_together = (("scope", "type", "entity_id"),)
        indexes = (
            Index(fields=("scope", "version", "type", "entity_id"), name="ix_sync_entries_order"),
            Index(fields=("op", "changed_at"), name="ix_sync_entries_tombstones"),
        )


class SyncClientGroup(Model):
    """One local database on one device, bound to its user on first use."""

    id = fields.CharField(max_length=64, primary_key=True)
    user: fields.ForeignKeyRelation = fields.ForeignKeyField(
        "models.User", related_name="sync_client_groups", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID  # set by Tortoise; declared for type checkers
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "sync_client_groups"


class SyncClient(Model):
    """One writer of a group, with the id of its last processed mutation."""

    id = fields.UUIDField(primary_key=True)
    group: fields.ForeignKeyRelation[SyncClientGroup] = fields.ForeignKeyField(
        "models.SyncClientGroup", related_name="clients", on_delete=fields.CASCADE
    )
    group_id: str  # set by Tortoise; declared for type checkers
    client_id = fields.CharField(max_length=64)
    last_mutation_id = fields.BigIntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "sync_clients"
        unique_together = (("group", "client_id"),)


class SyncMutationResult(Model):
    """The result of a processed mutation, returned again (DUPLICATE) when it is retried."""

    id = fields.BigIntField(primary_key=True)
    client: fields.ForeignKeyRelation[SyncClient] = fields.ForeignKeyField(
        "models.SyncClient", related_name="results", on_delete=fields.CASCADE
    )
    client_id: uuid.UUID  # set by Tortoise; declared for type checkers
    mutation_id = fields.BigIntField()
    result = fields.TextField()  # JSON
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "sync_mutation_results"
        unique_together = (("client", "mutation_id"),)


class SyncRejection(Model):
    """A rejected intent or a conflict (kept, never silently dropped)."""

    id = fields.BigIntField(primary_key=True)
    user_id = fields.UUIDField()
    group_id = fields.CharField(max_length=64)
    client_id = fields.CharField(max_length=64)
    mutation_id = fields.BigIntField()
    name = fields.CharField(max_length=64)
    args = fields.TextField()  # JSON
    kind = fields.CharField(max_length=16)  # rejected | conflict
    code = fields.CharField(max_length=64)
    message = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "sync_rejections"
        indexes = (Index(fields=("user_id", "created_at"), name="ix_sync_rejections_user"),)
