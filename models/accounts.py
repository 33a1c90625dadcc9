"""Users and their login sessions (a session is one refresh-token family)."""

from __future__ import annotations

import uuid
from enum import StrEnum

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class UserTier(StrEnum):
    FREE = "free"
    STANDARD = "standard"
    PREMIUM = "premium"


class UserRole(StrEnum):
    USER = "user"
    ADMIN = "admin"


class User(Model):
    id = fields.UUIDField(primary_key=True)
    email = fields.CharField(max_length=254, unique=True)  # stored lower-cased
    password_hash = fields.CharField(max_length=255)
    display_name = fields.CharField(max_length=100)
    tier = fields.CharEnumField(UserTier, default=UserTier.FREE, max_length=16)
    role = fields.CharEnumField(UserRole, default=UserRole.USER, max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "users"


class AuthSession(Model):
    # One login: every access token names it (`sid`) so logging out revokes them all.

    id = fields.UUIDField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="sessions", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID  # set by Tortoise; declared for type checkers
    created_at = fields.DatetimeField(auto_now_add=True)
    revoked_at = fields.DatetimeField(null=True)
    revoked_reason = fields.CharField(max_length=32, null=True)

    class Meta:
        table = "auth_sessions"
        indexes = (Index(fields=("user_id",), name="ix_auth_sessions_user"),)


class RefreshToken(Model):
    # An opaque refresh token, stored only as its SHA-256; rotated on every use.

    id = fields.UUIDField(primary_key=True)
    session: fields.ForeignKeyRelation[AuthSession] = fields.ForeignKeyField(
        "models.AuthSession", related_name="refresh_tokens", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID  # set by Tortoise; declared for type checkers
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "refresh_tokens"
        indexes = (Index(fields=("session_id",), name="ix_refresh_tokens_session"),)
